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
    local started=$SECONDS tarball
    # The installed version's own source, as setup-system.sh fetched and kept it.
    tarball=$(criu_source "$VERSION" "$ZDTM_CACHE" "$CRIU_SUITES") || exit 1
    local src=$ZDTM_ROOT/src/criu-$VERSION
    if [ ! -f "$src/.unpacked" ]; then
        rm -rf "$src"
        install -d -m 0755 "$ZDTM_ROOT/src"
        tar -xJf "$tarball" -C "$ZDTM_ROOT/src"
        [ -d "$src" ] || die "zdtm: $tarball did not unpack to $src"
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
