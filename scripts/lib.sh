# Shared helpers for the project's shell scripts. Source it; do not run it.

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# version_ge A B: true when version A >= version B.
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }

# The first Debian archive URI configured on this machine (deb822 or
# one-line format), so the scripts use the site's own mirror.
debian_mirror() {
    local uri
    uri=$(awk '/^URIs:/ {print $2}' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | grep -v -- '-security' | head -n1 || true)
    if [ -z "$uri" ]; then
        uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | awk '$1 == "deb" && $2 !~ /security/ {print $2; exit}')
    fi
    [ -n "$uri" ] && echo "$uri"
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.5 s.
wait_for() {
    local limit=$1 what=$2; shift 2
    local deadline=$(( $(date +%s) + limit ))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || { log "timed out after ${limit}s waiting for $what"; return 1; }
        sleep 0.5
    done
}

# apt with a private configuration in $1 (sources.list, lists, cache), so the
# machine's own sources are left untouched.
criu_apt() {
    local aptdir=$1; shift
    "$@" -o Dir::Etc::SourceList="$aptdir/sources.list" -o Dir::Etc::SourceParts=/dev/null \
        -o Dir::State::Lists="$aptdir/lists" -o Dir::Cache="$aptdir/cache" \
        -o Debug::NoLocking=1 -o APT::Sandbox::User=root
}

# criu_source WANT CACHE SUITES: print the path of CRIU's upstream source tarball
# in CACHE, of upstream version WANT ("" = the newest in SUITES), checked against
# the SHA-256 of the signed Sources index apt verified. A tarball already in
# CACHE is checked against the SHA-256 recorded beside it when it was fetched.
criu_source() {
    local want=$1 cache=$2 suites=$3
    install -d -m 0755 "$cache"
    if [ -n "$want" ] && [ -f "$cache/criu_$want.orig.tar.xz" ] \
        && [ -f "$cache/criu_$want.orig.tar.xz.sha256" ]; then
        (cd "$cache" && sha256sum -c --quiet "criu_$want.orig.tar.xz.sha256") \
            || die "criu: $cache/criu_$want.orig.tar.xz does not match its .sha256; remove both and retry"
        echo "$cache/criu_$want.orig.tar.xz"
        return
    fi
    local mirror work
    mirror=$(debian_mirror) || die "criu: no Debian mirror found in /etc/apt/sources.list*; add one and retry"
    work=$(mktemp -d /var/tmp/slurm-ckpt-criu-src.XXXXXX)
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" RETURN
    mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial"
    for suite in $suites; do
        echo "deb-src $mirror $suite main" >> "$work/apt/sources.list"
    done
    log "criu: reading source indexes for $suites"
    criu_apt "$work/apt" apt-get update -qq
    # The Debian version: the newest, or the newest whose upstream part is $want.
    local version
    version=$(criu_apt "$work/apt" apt-cache showsrc criu | awk '/^Version:/ {print $2}' \
        | awk -v v="$want" '{u=$0; sub(/-[^-]*$/, "", u); sub(/^[0-9]+:/, "", u)} v == "" || u == v' \
        | sort -V | tail -n1)
    [ -n "$version" ] || die "criu: no CRIU source ${want:+of $want }in $suites"
    local upstream=${version%-*}; upstream=${upstream#*:}
    local tarball="criu_${upstream}.orig.tar.xz" sha
    # From that version's own stanza (showsrc lists one per suite and version).
    sha=$(criu_apt "$work/apt" apt-cache showsrc criu \
        | awk -v f="$tarball" -v v="$version" '
            /^Package:/ {mine=0} /^Version:/ {mine=($2 == v)}
            /^Checksums-Sha256:/ {on=1; next} /^[^ ]/ {on=0}
            mine && on && $3 == f {print $1; exit}')
    [ -n "$sha" ] || die "criu: apt lists no SHA-256 for $tarball"
    log "criu: fetching $tarball ($version)"
    # Only the upstream tarball is needed; the .dsc or .debian.tar.xz may be missing.
    (cd "$work" && criu_apt "$work/apt" apt-get source --download-only -qq "criu=$version" \
        >/dev/null 2>&1 || true)
    [ -f "$work/$tarball" ] || die "criu: download of $tarball failed"
    echo "$sha  $work/$tarball" | sha256sum -c --quiet - \
        || die "criu: $tarball does not match the SHA-256 apt lists ($sha)"
    install -m 0644 "$work/$tarball" "$cache/$tarball.tmp"
    mv -f "$cache/$tarball.tmp" "$cache/$tarball"
    echo "$sha  $tarball" > "$cache/$tarball.sha256"
    log "criu: checksum ok ($sha), $tarball kept in $cache"
    echo "$cache/$tarball"
}
