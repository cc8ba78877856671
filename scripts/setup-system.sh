#!/usr/bin/env bash
# Prepare a Debian 12 or 13 machine for slurm-ckpt development, tests and the demo.
#
# Run as root. Idempotent: every step checks whether its result is already in
# place and skips itself, so a second run takes seconds.
#
#   scripts/setup-system.sh            everything
#   scripts/setup-system.sh STEP...    only these steps (packages slurm criu users venv runtime postgres plugins zdtm)
#
# Environment:
#   SLURM_RELEASE       the Slurm to install and run: distro (Debian's package, the
#                       default) or a release built from Debian's source archive,
#                       such as 24.11 (scripts/slurm.sh; README "Slurm releases")
#   SLURM_CKPT_PREFIX   where CRIU and built Slurm releases are installed (default /opt/slurm-ckpt)
#   SLURM_CKPT_VENV     the project's virtualenv (default <repo>/.venv)
#   CRIU_SUITES         Debian suites searched for a CRIU source (default "trixie sid")
#   CRIU_CACHE          where CRIU's verified source tarball is kept (default /var/cache/slurm-ckpt/criu)
#   SLURM_CKPT_CRIU_GROUP  the only group that may run criu-unpriv (default slurm-ckpt-criu;
#                       also config.toml's [criu] group, which this variable overrides)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"
# shellcheck source=scripts/slurm.sh
. "$REPO/scripts/slurm.sh"

PREFIX=${SLURM_CKPT_PREFIX:-/opt/slurm-ckpt}
VENV=${SLURM_CKPT_VENV:-$REPO/.venv}
CRIU_SUITES=${CRIU_SUITES:-"trixie sid"}
CRIU_MIN_VERSION=4.1
CRIU_CACHE=${CRIU_CACHE:-/var/cache/slurm-ckpt/criu}
CRIU_GROUP=${SLURM_CKPT_CRIU_GROUP:-slurm-ckpt-criu}
# Test users whose jobs are checkpointed: members of $CRIU_GROUP.
TEST_USERS=(ckpt-alice ckpt-bob)
# A test user outside $CRIU_GROUP: their --checkpoint jobs run without checkpoints.
OUTSIDER=ckpt-carol

# Packages from Debian 12. Slurm's lua job_submit plugin links liblua5.1;
# lua5.1 lets the tests run job_submit.lua outside slurmctld.
PACKAGES=(
    slurmctld slurmd slurm-client munge libslurm-dev lua5.1
    build-essential pkgconf libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev
    protobuf-compiler libnl-3-dev libnet1-dev libcap-dev libbsd-dev libnftables-dev
    libgnutls28-dev uuid-dev python3-protobuf libcap2-bin dpkg-dev xz-utils
    python3-venv python3-dev util-linux procps iproute2
)

[ "$(id -u)" -eq 0 ] || die "run as root: sudo $0"
[ -r /etc/debian_version ] || die "this script supports Debian 12 and 13 only"
case $(cut -d. -f1 /etc/debian_version) in
    12 | 13) ;;
    *) log "warning: Debian $(cat /etc/debian_version) is not tested (Debian 12 and 13 are)" ;;
esac

step_packages() {
    apt_install "${PACKAGES[@]}"
    log "packages: all ${#PACKAGES[@]} present"
}

# The Slurm the cluster runs (SLURM_RELEASE, scripts/slurm.sh): Debian's package,
# or a release built from the Debian source archive once and kept.
step_slurm() {
    local home
    home=$(slurm_select "${SLURM_RELEASE:-distro}") || exit 1
    log "slurm: $(slurm_version "$home") selected ($home)"
}

step_criu() {
    local bin=$PREFIX/sbin/criu have=""
    if [ -x "$bin" ]; then
        have=$("$bin" --version | awk '/^Version:/ {print $2}')
    fi
    if [ -n "$have" ] && version_ge "$have" "$CRIU_MIN_VERSION" \
        && [ -f "$PREFIX/lib/python/pycriu/rpc_pb2.py" ]; then
        criu_group
        if unpriv_ok; then
            log "criu: $have present in $PREFIX"
        else
            install_unpriv
            log "criu: $have present in $PREFIX; bin/criu-unpriv renewed"
        fi
        return
    fi

    # The newest source in CRIU_SUITES, kept in CRIU_CACHE (the zdtm suite is built
    # from the same tarball), checked against the signed index's SHA-256.
    local tarball upstream
    tarball=$(criu_source "" "$CRIU_CACHE" "$CRIU_SUITES") || exit 1
    upstream=$(basename "$tarball" .orig.tar.xz); upstream=${upstream#criu_}
    version_ge "$upstream" "$CRIU_MIN_VERSION" || die "criu: newest source is $upstream, need >= $CRIU_MIN_VERSION"
    local work; work=$(mktemp -d /var/tmp/slurm-ckpt-criu.XXXXXX)
    trap 'rm -rf "$work"' RETURN
    tar -xJf "$tarball" -C "$work"
    local src; src=$(find "$work" -maxdepth 1 -type d -name 'criu-*' | head -n1)
    log "criu: building $upstream (about a minute)"
    make -C "$src" -j"$(nproc)" >"$work/build.log" 2>&1 || { tail -n 30 "$work/build.log"; die "criu: build failed"; }
    make -C "$src" install-criu install-compel install-lib PREFIX="$PREFIX" SKIP_PIP_INSTALL=1 \
        >>"$work/build.log" 2>&1 || { tail -n 30 "$work/build.log"; die "criu: install failed"; }
    rm -rf "$PREFIX/lib/python/pycriu"
    mkdir -p "$PREFIX/lib/python"
    cp -r "$src/lib/pycriu" "$PREFIX/lib/python/pycriu"
    find "$PREFIX/lib/python/pycriu" -name '__pycache__' -prune -exec rm -rf {} +
    chmod -R a+rX "$PREFIX"
    criu_group
    install_unpriv
    log "criu: $("$bin" --version | awk '/^Version:/ {print $2}') installed in $PREFIX"
}

# The copy ordinary users run: only cap_checkpoint_restore, never
# cap_sys_ptrace or cap_sys_admin, never setuid; root:$CRIU_GROUP 0750, because
# whoever runs it can choose PIDs and squat those in another user's image.
install_unpriv() {
    local dest=$PREFIX/bin/criu-unpriv tmp
    install -d -m 0755 "$PREFIX/bin"
    tmp=$(mktemp "$PREFIX/bin/.criu-unpriv.XXXXXX")
    # chown clears file capabilities, so the capability comes last; the rename
    # means no job ever sees the copy without it.
    { cp "$PREFIX/sbin/criu" "$tmp" && chown "root:$CRIU_GROUP" "$tmp" && chmod 0750 "$tmp" \
        && setcap cap_checkpoint_restore+ep "$tmp" && mv -f "$tmp" "$dest"; } \
        || { rm -f "$tmp"; die "criu: could not install $dest"; }
    unpriv_ok || die "criu: $dest is not root:$CRIU_GROUP 0750 with cap_checkpoint_restore=ep"
}

unpriv_ok() {
    local f=$PREFIX/bin/criu-unpriv
    [ -f "$f" ] && [ ! -L "$f" ] && cmp -s "$f" "$PREFIX/sbin/criu" \
        && [ "$(stat -c '%U:%G %a' "$f")" = "root:$CRIU_GROUP 750" ] \
        && [ "$(getcap "$f" | awk '{print $2}')" = "cap_checkpoint_restore=ep" ]
}

# $CRIU_GROUP with the test users that checkpoint, never $OUTSIDER. Both the
# users and the criu steps call it, members before the copy's mode: jobs of a
# member keep their checkpoints while the copy is restricted.
criu_group() {
    local u
    if ! getent group "$CRIU_GROUP" >/dev/null; then
        groupadd --system "$CRIU_GROUP"
        log "users: created group $CRIU_GROUP"
    fi
    for u in "${TEST_USERS[@]}"; do
        id "$u" >/dev/null 2>&1 || continue
        if ! in_group "$u"; then
            usermod -a -G "$CRIU_GROUP" "$u"
            # slurmctld caches a user's groups for GroupUpdateTime.
            log "users: added $u to $CRIU_GROUP (a running slurmctld sees it within GroupUpdateTime)"
        fi
    done
    if id "$OUTSIDER" >/dev/null 2>&1 && in_group "$OUTSIDER"; then
        gpasswd -d "$OUTSIDER" "$CRIU_GROUP" >/dev/null
        log "users: removed $OUTSIDER from $CRIU_GROUP"
    fi
}

in_group() { id -nG "$1" | tr ' ' '\n' | grep -qxF "$CRIU_GROUP"; }

step_users() {
    local uid=2901
    for u in "${TEST_USERS[@]}" "$OUTSIDER"; do
        if id "$u" >/dev/null 2>&1; then
            log "users: $u exists"
        else
            while getent passwd "$uid" >/dev/null || getent group "$uid" >/dev/null; do uid=$((uid + 1)); done
            useradd --uid "$uid" --user-group --create-home --shell /bin/bash "$u"
            log "users: created $u (uid $uid)"
        fi
        uid=$((uid + 1))
    done
    criu_group
}

step_venv() {
    local py=/usr/bin/python3
    # The distribution's Python, not one under /root: job processes run as
    # ordinary users and must be able to execute the interpreter.
    if [ ! -x "$VENV/bin/python" ]; then
        log "venv: creating $VENV"
        "$py" -m venv "$VENV"
    fi
    local stamp=$VENV/.slurm-ckpt-installed want
    want=$(cat "$REPO/pyproject.toml" | sha256sum | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
        && "$VENV/bin/python" -c 'import slurm_ckpt' 2>/dev/null; then
        log "venv: project installed, dependencies unchanged"
    else
        log "venv: installing the project and its dependencies"
        local out; out=$(mktemp)
        { "$VENV/bin/pip" install -q --upgrade pip && "$VENV/bin/pip" install -q -e "$REPO[dev,postgres]"; } \
            >"$out" 2>&1 || { tail -n 30 "$out"; rm -f "$out"; die "venv: pip install failed"; }
        rm -f "$out"
        echo "$want" > "$stamp"
    fi
    # pycriu is not on PyPI: make the copy built with our CRIU importable.
    local site; site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "$PREFIX/lib/python" > "$site/slurm_ckpt_pycriu.pth"
    "$VENV/bin/python" -c 'import pycriu' || die "venv: pycriu does not import from $PREFIX/lib/python"
    log "venv: pycriu importable"
}

# The runtime install that jobs execute: the launcher runs as the job's user,
# so it lives outside any checkout (which may sit in an unreadable home) and
# is reinstalled only when the package's sources change.
step_runtime() {
    local rt=$PREFIX/venv
    if [ ! -x "$rt/bin/python" ]; then
        log "runtime: creating $rt"
        /usr/bin/python3 -m venv "$rt"
    fi
    local stamp=$rt/.slurm-ckpt-source want
    want=$( (cat "$REPO/pyproject.toml"; find "$REPO/slurm_ckpt" -name '*.py' -type f | sort | xargs cat) | sha256sum | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        log "runtime: $rt up to date"
    else
        log "runtime: installing the package into $rt"
        local build; build=$(mktemp -d /var/tmp/slurm-ckpt-build.XXXXXX)
        # Build from a copy: a build inside the checkout would leave files in it.
        cp -r "$REPO/pyproject.toml" "$REPO/README.md" "$REPO/slurm_ckpt" "$build/"
        [ -d "$REPO/db" ] && cp -r "$REPO/db" "$build/"
        "$rt/bin/pip" install -q --upgrade --force-reinstall --no-deps "$build" >"$build.log" 2>&1 \
            && "$rt/bin/pip" install -q "$build[postgres]" >>"$build.log" 2>&1 \
            || { tail -n 20 "$build.log"; rm -rf "$build" "$build.log"; die "runtime: install failed"; }
        rm -rf "$build" "$build.log"
        echo "$want" > "$stamp"
    fi
    local site; site=$("$rt/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "$PREFIX/lib/python" > "$site/slurm_ckpt_pycriu.pth"
    chmod -R a+rX "$rt"
}

step_postgres() {
    if command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; then
        log "postgres: running"
        return
    fi
    if ! command -v pg_ctlcluster >/dev/null; then
        log "postgres: installing"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    local ver; ver=$(ls /etc/postgresql | sort -V | tail -n1)
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
    for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
    pg_isready -q -h 127.0.0.1 -p 5432 || die "postgres: did not start; see /var/log/postgresql/"
    log "postgres: started"
}

# slurm-ckpt's Slurm plugins (plugins/Makefile): the SPANK plugin built against
# the current Slurm's headers, and job_submit.lua, installed under $PREFIX.
# scripts/cluster.sh puts them into the test cluster's configuration.
step_plugins() {
    local stamp=$PREFIX/lib/slurm-ckpt/.plugins-installed want home
    home=$(slurm_home)
    # Rebuilt when the sources or the current Slurm release change.
    want=$( { cd "$REPO/plugins" && cat Makefile job_submit.lua cli_filter.lua spank/*.c spank/*.h
        echo "$home $(slurm_version "$home")"; } | sha256sum | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
        && [ -f "$PREFIX/lib/slurm-ckpt/spank/slurm_ckpt.so" ] \
        && [ -f "$PREFIX/share/slurm-ckpt/job_submit.lua" ]; then
        log "plugins: installed, sources unchanged"
        return
    fi
    log "plugins: building against Slurm $(slurm_version "$home") ($home) and installing into $PREFIX"
    make -s -C "$REPO/plugins" clean >/dev/null
    make -s -C "$REPO/plugins" all install PREFIX="$PREFIX" SLURM_INCLUDE="$home/include" >/dev/null \
        || die "plugins: build failed (make -C plugins)"
    echo "$want" > "$stamp"
    log "plugins: done"
}

# CRIU's own test suite (zdtm), built from the installed CRIU's source for the
# contract test (tests/integration/test_zdtm_contract.py).
step_zdtm() {
    ZDTM_CACHE=$CRIU_CACHE CRIU_SUITES=$CRIU_SUITES "$REPO/scripts/zdtm/build.sh"
}

STEPS=("$@")
[ ${#STEPS[@]} -gt 0 ] || STEPS=(packages slurm criu users venv runtime postgres plugins zdtm)
start=$(date +%s)
for s in "${STEPS[@]}"; do
    declare -F "step_$s" >/dev/null || die "unknown step '$s' (steps: packages slurm criu users venv runtime postgres plugins zdtm)"
    "step_$s"
done
log "setup done in $(( $(date +%s) - start ))s"
