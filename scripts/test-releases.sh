#!/usr/bin/env bash
# make test's release legs: the end-to-end core (tests marked `core`) on each
# Slurm release given, one after the other, each with its own report and time.
# Debian's package is selected again afterwards, whatever happened.
#
#   scripts/test-releases.sh RELEASE...     e.g. 24.11
#
# Run as root, after the full suite (the set-up and the venv are in place).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"
PREFIX=${SLURM_CKPT_PREFIX:-/opt/slurm-ckpt}
# shellcheck source=scripts/slurm.sh
. "$REPO/scripts/slurm.sh"

VENV=${SLURM_CKPT_VENV:-$REPO/.venv}
[ $# -gt 0 ] || { log "releases: none to test"; exit 0; }

trap slurm_restore_default EXIT

mkdir -p "$REPO/build"
failed=()
for release in "$@"; do
    if slurm_is_distro "$release"; then
        log "releases: Slurm $release is this distribution's own: the full suite ran on it"
        continue
    fi
    t0=$(date +%s)
    SLURM_RELEASE=$release "$REPO/scripts/setup-system.sh" slurm
    built=$(( $(date +%s) - t0 ))
    report=$REPO/build/test-report-slurm-$release.xml
    rc=0
    (cd "$REPO" && "$VENV/bin/pytest" -p no:cacheprovider -m core --junitxml="$report" \
        tests/integration) || rc=$?
    "$VENV/bin/python" "$REPO/scripts/check_test_report.py" "$report" --pytest-exit "$rc" \
        --tiers integration || failed+=("$release")
    log "releases: Slurm $release: set-up ${built}s, core tests $(( $(date +%s) - t0 - built ))s"
done
if [ ${#failed[@]} -gt 0 ]; then
    die "releases: the core failed on Slurm ${failed[*]}"
fi
log "releases: the core passed on Slurm $*"
