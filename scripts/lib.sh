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

# apt_install PACKAGE...: install what is missing, without starting any daemon
# (the cluster scripts start them with our configuration, and machines without
# an init system have no service manager to start them with).
apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    log "packages: installing ${missing[*]}"
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 755 "$policy"
        created_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ $created_policy -eq 1 ] && rm -f "$policy"
    log "packages: done"
}

# apt with a private configuration in $1 (sources.list, lists, cache), so the
# machine's own sources are left untouched.
criu_apt() {
    local aptdir=$1; shift
    "$@" -o Dir::Etc::SourceList="$aptdir/sources.list" -o Dir::Etc::SourceParts=/dev/null \
        -o Dir::State::Lists="$aptdir/lists" -o Dir::Cache="$aptdir/cache" \
        -o Debug::NoLocking=1 -o APT::Sandbox::User=root
}

# debian_source PACKAGE WANT CACHE SUITES: print the path of PACKAGE's upstream
# source tarball (PACKAGE_VERSION.orig.tar.*) in CACHE, of upstream version WANT
# ("" = the newest in SUITES; "X.Y" = the newest X.Y.*), checked against the
# SHA-256 of the signed Sources index apt verified. A tarball already in CACHE is
# checked against the SHA-256 recorded beside it when it was fetched.
debian_source() {
    local pkg=$1 want=$2 cache=$3 suites=$4 kept
    install -d -m 0755 "$cache"
    if [ -n "$want" ]; then
        # The newest kept tarball of that version, or of that release series.
        kept=$(find "$cache" -maxdepth 1 -name "${pkg}_*.orig.tar.*.sha256" -printf '%f\n' \
            | sed -e "s/^${pkg}_//" -e 's/\.orig\.tar\..*//' \
            | awk -v v="$want" '$0 == v || index($0, v ".") == 1' | sort -V | tail -n1)
        if [ -n "$kept" ]; then
            local file; file=$(basename "$(find "$cache" -maxdepth 1 -name "${pkg}_$kept.orig.tar.*.sha256" | head -n1)" .sha256)
            (cd "$cache" && sha256sum -c --quiet "$file.sha256") \
                || die "$pkg: $cache/$file does not match its .sha256; remove both and retry"
            echo "$cache/$file"
            return
        fi
    fi
    local mirror work
    mirror=$(debian_mirror) || die "$pkg: no Debian mirror found in /etc/apt/sources.list*; add one and retry"
    work=$(mktemp -d "/var/tmp/slurm-ckpt-$pkg-src.XXXXXX")
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" RETURN
    mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial"
    for suite in $suites; do
        echo "deb-src $mirror $suite main" >> "$work/apt/sources.list"
    done
    log "$pkg: reading source indexes for $suites"
    criu_apt "$work/apt" apt-get update -qq
    # The Debian version: the newest, or the newest whose upstream part is $want
    # (or starts with "$want.").
    local version
    version=$(criu_apt "$work/apt" apt-cache showsrc "$pkg" | awk '/^Version:/ {print $2}' \
        | awk -v v="$want" '{u=$0; sub(/-[^-]*$/, "", u); sub(/^[0-9]+:/, "", u)}
            v == "" || u == v || index(u, v ".") == 1' \
        | sort -V | tail -n1)
    [ -n "$version" ] || die "$pkg: no source ${want:+of $want }in $suites"
    local upstream=${version%-*}; upstream=${upstream#*:}
    local tarball sha
    # From that version's own stanza (showsrc lists one per suite and version).
    read -r sha tarball < <(criu_apt "$work/apt" apt-cache showsrc "$pkg" \
        | awk -v f="${pkg}_${upstream}.orig.tar." -v v="$version" '
            /^Package:/ {mine=0} /^Version:/ {mine=($2 == v)}
            /^Checksums-Sha256:/ {on=1; next} /^[^ ]/ {on=0}
            mine && on && index($3, f) == 1 && $3 !~ /\.asc$/ {print $1, $3; exit}') || true
    [ -n "${sha:-}" ] || die "$pkg: apt lists no SHA-256 for ${pkg}_${upstream}.orig.tar.*"
    log "$pkg: fetching $tarball ($version)"
    # Only the upstream tarball is needed; the .dsc or .debian.tar.xz may be missing.
    (cd "$work" && criu_apt "$work/apt" apt-get source --download-only -qq "$pkg=$version" \
        >/dev/null 2>&1 || true)
    [ -f "$work/$tarball" ] \
        || die "$pkg: $mirror did not serve $tarball, which its index lists; try again later, or choose another release"
    echo "$sha  $work/$tarball" | sha256sum -c --quiet - \
        || die "$pkg: $tarball does not match the SHA-256 apt lists ($sha)"
    install -m 0644 "$work/$tarball" "$cache/$tarball.tmp"
    mv -f "$cache/$tarball.tmp" "$cache/$tarball"
    echo "$sha  $tarball" > "$cache/$tarball.sha256"
    log "$pkg: checksum ok ($sha), $tarball kept in $cache"
    echo "$cache/$tarball"
}

# criu_source WANT CACHE SUITES: CRIU's tarball, as debian_source gives it.
criu_source() { debian_source criu "$@"; }
