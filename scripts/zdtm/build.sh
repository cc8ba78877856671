#!/usr/bin/env bash
# Build CRIU's own test suite (zdtm: its library and the static tests listed in
# tests.txt) from the source tarball of the CRIU version that is installed, for
# scripts/zdtm/contract.py.
#
# Run as root. Idempotent: the tarball is fetched only when it is not in the cache
# (and re-checked against the SHA-256 recorded from apt's signed index on every
# run); make rebuilds only what is missing.
#
#   scripts/zdtm/build.sh
#
# Environment:
#   SLURM_CKPT_PREFIX  where CRIU is installed (default /opt/slurm-ckpt)
#   CRIU_SUITES        Debian suites searched for the source (default "trixie sid")
#   ZDTM_ROOT          build folder (default /var/tmp/slurm-ckpt-zdtm)
#   ZDTM_CACHE         tarball cache (default /var/cache/slurm-ckpt/criu)
#   ZDTM_TESTS         the list of tests (default scripts/zdtm/tests.txt)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"

PREFIX=${SLURM_CKPT_PREFIX:-/opt/slurm-ckpt}
CRIU_SUITES=${CRIU_SUITES:-"trixie sid"}
ZDTM_ROOT=${ZDTM_ROOT:-/var/tmp/slurm-ckpt-zdtm}
ZDTM_CACHE=${ZDTM_CACHE:-/var/cache/slurm-ckpt/criu}
ZDTM_TESTS=${ZDTM_TESTS:-$HERE/tests.txt}
NICE=(nice -n 19)

[ "$(id -u)" -eq 0 ] || die "run as root"
[ -x "$PREFIX/sbin/criu" ] || die "no CRIU in $PREFIX/sbin/criu (run scripts/setup-system.sh criu)"

VERSION=$("$PREFIX/sbin/criu" --version | awk '/^Version:/ {print $2}')
[ -n "$VERSION" ] || die "cannot read the version of $PREFIX/sbin/criu"
TARBALL=criu_${VERSION}.orig.tar.xz
SUMS=$ZDTM_CACHE/$TARBALL.sha256

criu_apt() {
    local aptdir=$1; shift
    "$@" -o Dir::Etc::SourceList="$aptdir/sources.list" -o Dir::Etc::SourceParts=/dev/null \
        -o Dir::State::Lists="$aptdir/lists" -o Dir::Cache="$aptdir/cache" \
        -o Debug::NoLocking=1 -o APT::Sandbox::User=root
}

# The upstream tarball of exactly $VERSION, checked against the SHA-256 of the
# signed Sources index apt verified (the same way setup-system.sh fetches CRIU).
fetch_tarball() {
    install -d -m 0755 "$ZDTM_CACHE"
    if [ -f "$ZDTM_CACHE/$TARBALL" ] && [ -f "$SUMS" ]; then
        (cd "$ZDTM_CACHE" && sha256sum -c --quiet "$SUMS") \
            || die "zdtm: $ZDTM_CACHE/$TARBALL does not match $SUMS; remove both and retry"
        log "zdtm: $TARBALL in $ZDTM_CACHE, checksum ok"
        return
    fi
    local mirror work
    mirror=$(debian_mirror) || die "zdtm: no Debian mirror found in /etc/apt/sources.list*"
    work=$(mktemp -d /var/tmp/slurm-ckpt-zdtm-src.XXXXXX)
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" RETURN
    mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial"
    for suite in $CRIU_SUITES; do
        echo "deb-src $mirror $suite main" >> "$work/apt/sources.list"
    done
    log "zdtm: reading source indexes for $CRIU_SUITES"
    criu_apt "$work/apt" apt-get update -qq
    local version
    # The Debian version whose upstream part is the installed one.
    version=$(criu_apt "$work/apt" apt-cache showsrc criu | awk '/^Version:/ {print $2}' \
        | awk -v v="$VERSION" '{u=$0; sub(/-[^-]*$/, "", u); sub(/^[0-9]+:/, "", u)} u == v' \
        | sort -V | tail -n1)
    [ -n "$version" ] || die "zdtm: no source of CRIU $VERSION in $CRIU_SUITES"
    local sha
    # In the stanza of that version (showsrc lists one stanza per suite and version).
    sha=$(criu_apt "$work/apt" apt-cache showsrc criu \
        | awk -v f="$TARBALL" -v v="$version" '
            /^Package:/ {mine=0} /^Version:/ {mine=($2 == v)}
            /^Checksums-Sha256:/ {on=1; next} /^[^ ]/ {on=0}
            mine && on && $3 == f {print $1; exit}')
    [ -n "$sha" ] || die "zdtm: apt lists no SHA-256 for $TARBALL"
    log "zdtm: fetching $TARBALL ($version)"
    # Only the upstream tarball is needed; the .dsc or .debian.tar.xz may 404.
    (cd "$work" && criu_apt "$work/apt" apt-get source --download-only -qq "criu=$version" \
        >/dev/null 2>&1 || true)
    [ -f "$work/$TARBALL" ] || die "zdtm: download of $TARBALL failed"
    echo "$sha  $work/$TARBALL" | sha256sum -c --quiet - \
        || die "zdtm: $TARBALL does not match the SHA-256 apt lists ($sha)"
    install -m 0644 "$work/$TARBALL" "$ZDTM_CACHE/$TARBALL.tmp"
    mv -f "$ZDTM_CACHE/$TARBALL.tmp" "$ZDTM_CACHE/$TARBALL"
    echo "$sha  $TARBALL" > "$SUMS"
    log "zdtm: checksum ok ($sha), $TARBALL in $ZDTM_CACHE"
}

# The tests to build: tests.txt without comments and blank lines.
tests() {
    sed -e 's/#.*//' -e 's/[[:space:]]//g' "$ZDTM_TESTS" | awk 'NF'
}

# A tiny child subreaper: zdtm tests daemonize (test_init forks, the parent exits),
# so the test's daemon is adopted by this process and stays inside the tree that is
# checkpointed. It exits when its last child has, with the status of the first one.
build_subreaper() {
    local out=$ZDTM_ROOT/bin/subreaper
    [ -x "$out" ] && [ "$out" -nt "${BASH_SOURCE[0]}" ] && return
    install -d -m 0755 "$ZDTM_ROOT/bin"
    cat > "$ZDTM_ROOT/bin/subreaper.c" <<'EOF'
#include <errno.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	pid_t first, pid;
	int status, code = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: subreaper COMMAND [ARGS...]\n");
		return 2;
	}
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) {
		perror("prctl(PR_SET_CHILD_SUBREAPER)");
		return 1;
	}
	first = fork();
	if (first < 0) {
		perror("fork");
		return 1;
	}
	if (first == 0) {
		execvp(argv[1], argv + 1);
		perror("exec");
		_exit(127);
	}
	for (;;) {
		pid = wait(&status);
		if (pid < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pid == first)
			code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	}
	return code;
}
EOF
    "${NICE[@]}" gcc -O2 -Wall -Werror -o "$out.tmp" "$ZDTM_ROOT/bin/subreaper.c"
    mv -f "$out.tmp" "$out"
}

main() {
    local started=$SECONDS
    fetch_tarball
    local src=$ZDTM_ROOT/src/criu-$VERSION
    if [ ! -f "$src/.unpacked" ]; then
        rm -rf "$src"
        install -d -m 0755 "$ZDTM_ROOT/src"
        tar -xJf "$ZDTM_CACHE/$TARBALL" -C "$ZDTM_ROOT/src"
        [ -d "$src" ] || die "zdtm: $TARBALL did not unpack to $src"
        touch "$src/.unpacked"
    fi
    local list
    mapfile -t list < <(tests)
    [ ${#list[@]} -gt 0 ] || die "zdtm: no tests in $ZDTM_TESTS"
    log "zdtm: building zdtm's lib and ${#list[@]} static tests of CRIU $VERSION"
    local buildlog=$ZDTM_ROOT/build.log
    "${NICE[@]}" make -C "$src/test/zdtm/lib" -j"$(nproc)" >"$buildlog" 2>&1 \
        || { tail -n 30 "$buildlog"; die "zdtm: building test/zdtm/lib failed"; }
    "${NICE[@]}" make -C "$src/test/zdtm/static" -j"$(nproc)" "${list[@]}" >>"$buildlog" 2>&1 \
        || { tail -n 30 "$buildlog"; die "zdtm: building the static tests failed"; }
    build_subreaper
    # The tests run as an ordinary user, from a folder of their own.
    chmod -R a+rX "$ZDTM_ROOT"
    log "zdtm: built in $((SECONDS - started)) s in $src/test/zdtm/static"
}

main "$@"
