# Slurm releases for the set-up and the local cluster. Source it after lib.sh.
#
# SLURM_RELEASE chooses the Slurm the set-up installs and the cluster runs:
#   distro          Debian's own package (the default: nothing to build)
#   24.11, 24.11.5  a release built from the Debian source archive (SLURM_SUITES:
#                   bookworm 22.05, trixie 24.11, sid 26.05),
#                   its tarball checked against the signed index's SHA-256, built
#                   once into $PREFIX/slurm/<version> and kept there
# The choice is the link $PREFIX/slurm/current (to /usr for Debian's package),
# which the cluster script, the plugins' build and `make test` follow.

SLURM_SUITES=${SLURM_SUITES:-"bookworm trixie sid"}
SLURM_CACHE=${SLURM_CACHE:-/var/cache/slurm-ckpt/slurm}
# What a built release needs beyond the set-up's packages: MUNGE's header for
# auth/munge, Lua's for the job_submit and cli_filter lua plugins, json-c's for
# serializer/json (which cli_filter/lua needs from 23.02 on: without it sbatch
# crashes).
SLURM_BUILD_PACKAGES=(libmunge-dev liblua5.1-0-dev libjson-c-dev)

# The chosen Slurm's installation prefix (bin/, sbin/, include/, lib/).
# A missing or dangling link is Debian's package.
slurm_home() { readlink -e "$PREFIX/slurm/current" 2>/dev/null || echo /usr; }

# slurm_version HOME: the release HOME's slurmctld reports, such as 24.11.5.
slurm_version() { "$1/sbin/slurmctld" -V 2>/dev/null | awk '{print $2}'; }

# How a release is configured: shared libraries only (half the compile time);
# /etc/slurm as Debian's package has it, so the cluster's configuration serves
# every release; several slurmd on one host (`slurmd -N node1`), as Debian
# builds it, for the local two-node cluster.
SLURM_CONFIGURE=(--sysconfdir=/etc/slurm --disable-static --enable-multiple-slurmd
    --with-munge --without-hdf5)
# GCC 14 (Debian 13) turned some warnings that older releases' C gives into
# errors; they stay warnings, so that an older release still builds there.
slurm_cflags() {
    local major; major=$(gcc -dumpversion 2>/dev/null | cut -d. -f1)
    if [ "${major:-0}" -ge 14 ]; then
        echo "-g -O2 -Wno-error=incompatible-pointer-types -Wno-error=implicit-function-declaration -Wno-error=int-conversion"
    fi
}
# Recorded in each build's .built, so a change of recipe builds again.
# shellcheck disable=SC2046
slurm_recipe() {
    printf '%s\n' "${SLURM_CONFIGURE[@]}" "${SLURM_BUILD_PACKAGES[@]}" $(slurm_cflags) \
        | sha256sum | cut -c1-16
}

# slurm_built RELEASE: the newest prefix of RELEASE (exact, or X.Y.*) built
# with this recipe.
slurm_built() {
    local want=$1 recipe home
    recipe=$(slurm_recipe)
    { find "$PREFIX/slurm" -mindepth 2 -maxdepth 2 -name .built -printf '%h\n' 2>/dev/null || true; } \
        | awk -F/ -v v="$want" '{n=$NF} n == v || index(n, v ".") == 1 {print}' \
        | sort -V | while read -r home; do
            if [ "$(awk '{print $2}' "$home/.built")" = "$recipe" ]; then echo "$home"; fi
        done | tail -n1
}

# slurm_build RELEASE: print the prefix of RELEASE, built from source unless it
# is there already. The build runs as root in a scratch folder; only the install
# lands under $PREFIX/slurm/<version>, in one rename.
slurm_build() {
    local want=$1 home
    home=$(slurm_built "$want")
    if [ -n "$home" ]; then
        echo "$home"
        return
    fi
    apt_install "${SLURM_BUILD_PACKAGES[@]}"
    local tarball version
    tarball=$(debian_source slurm-wlm "$want" "$SLURM_CACHE" "$SLURM_SUITES") || exit 1
    version=$(basename "$tarball"); version=${version#slurm-wlm_}; version=${version%.orig.tar.*}
    home=$PREFIX/slurm/$version
    local work; work=$(mktemp -d /var/tmp/slurm-ckpt-slurm.XXXXXX)
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" RETURN
    # This runs inside a command substitution, where set -e does not hold: every
    # step is checked, and a failure shows its log on stderr and removes $work.
    failed() {
        tail -n 30 "$work/build.log" >&2 2>/dev/null || true
        rm -rf "$work"
        die "$1"
    }
    tar -xf "$tarball" -C "$work" || failed "slurm: cannot unpack $tarball"
    local src; src=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'slurm-*' | head -n1)
    [ -n "$src" ] || failed "slurm: $tarball holds no slurm-* folder"
    log "slurm: building $version (several minutes; kept in $home)"
    local cflags; cflags=$(slurm_cflags)
    (cd "$src" && ./configure --prefix="$home" "${SLURM_CONFIGURE[@]}" ${cflags:+CFLAGS="$cflags"} \
        >"$work/build.log" 2>&1) \
        || failed "slurm: configure of $version failed (log above)"
    make -C "$src" -j"$(nproc)" >>"$work/build.log" 2>&1 \
        || failed "slurm: build of $version failed (log above)"
    make -C "$src" install DESTDIR="$work/root" >>"$work/build.log" 2>&1 \
        || failed "slurm: install of $version failed (log above)"
    [ -f "$work/root$home/lib/slurm/auth_munge.so" ] \
        || failed "slurm: $version was built without auth/munge (is libmunge-dev installed?)"
    [ -f "$work/root$home/lib/slurm/job_submit_lua.so" ] \
        || failed "slurm: $version was built without the lua plugins (is liblua5.1-0-dev installed?)"
    [ -f "$work/root$home/lib/slurm/serializer_json.so" ] \
        || failed "slurm: $version was built without serializer/json (is libjson-c-dev installed?)"
    echo "$(sha256sum "$tarball" | cut -d' ' -f1) $(slurm_recipe)" > "$work/root$home/.built" \
        || failed "slurm: cannot write $home/.built"
    install -d -m 0755 "$PREFIX/slurm" && rm -rf "$home" && mv "$work/root$home" "$home" \
        && chmod -R a+rX "$home" || failed "slurm: cannot install $version into $home"
    log "slurm: $version built into $home"
    echo "$home"
}

# slurm_select RELEASE: make RELEASE the current Slurm; print its prefix.
slurm_select() {
    local release=$1 home
    case $release in
        distro | "") home=/usr ;;
        # A command substitution does not stop at a failure: its own die said why.
        [0-9][0-9].[0-9][0-9] | [0-9][0-9].[0-9][0-9].[0-9]*) home=$(slurm_build "$release") || exit 1 ;;
        *) die "SLURM_RELEASE=$release: use distro (Debian's package) or a release such as 24.11 or 24.11.5" ;;
    esac
    [ -n "$home" ] && [ -x "$home/sbin/slurmctld" ] || die "slurm: no slurmctld in ${home:-?}/sbin"
    install -d -m 0755 "$PREFIX/slurm" && ln -sfn "$home" "$PREFIX/slurm/.current.tmp" \
        && mv -Tf "$PREFIX/slurm/.current.tmp" "$PREFIX/slurm/current" \
        || die "slurm: cannot point $PREFIX/slurm/current at $home"
    echo "$home"
}

# slurm_selected_is RELEASE: true when RELEASE (24.11 or 24.11.5) is the major
# release of the Slurm now selected (the one the full suite ran on).
slurm_selected_is() {
    [ "$(slurm_version "$(slurm_home)" | cut -d. -f1-2)" = "$(echo "$1" | cut -d. -f1-2)" ]
}

# slurm_selection: what SLURM_RELEASE selects the current Slurm again.
slurm_selection() {
    local home; home=$(slurm_home)
    if [ "$home" = /usr ]; then echo distro; else slurm_version "$home"; fi
}

# slurm_restore SELECTION: the cluster down and SELECTION (slurm_selection's)
# selected again (an EXIT trap of the scripts that switch releases).
slurm_restore() {
    "$REPO/scripts/cluster.sh" down >/dev/null 2>&1 || true
    SLURM_RELEASE=$1 "$REPO/scripts/setup-system.sh" slurm >/dev/null 2>&1 \
        || log "slurm: could not select Slurm $1 again; run SLURM_RELEASE=$1 scripts/setup-system.sh slurm"
}

# slurm_each_release FN RELEASE...: for each RELEASE but the selected one (on which
# the caller's own run measures), the cluster down, RELEASE selected (built when
# needed), then `FN RELEASE SETUP_SECONDS`. The selection at the start is selected
# again when the calling script exits, whatever happened.
slurm_each_release() {
    local fn=$1 release t0 selection; shift
    selection=$(slurm_selection)
    # shellcheck disable=SC2064
    trap "slurm_restore '$selection'" EXIT
    for release in "$@"; do
        if slurm_selected_is "$release"; then
            log "releases: Slurm $release is the selected one: skipped here"
            continue
        fi
        t0=$(date +%s)
        # Nothing of another release may still run when the selection changes.
        "$REPO/scripts/cluster.sh" down
        SLURM_RELEASE=$release "$REPO/scripts/setup-system.sh" slurm
        "$fn" "$release" $(( $(date +%s) - t0 ))
    done
}
