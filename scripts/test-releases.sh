#!/usr/bin/env bash
# make test's release legs: the end-to-end core (tests marked `core`) on each
# Slurm release given, one after the other, each with its own report and time.
# The Slurm selected at the start is selected again afterwards, whatever happened.
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

mkdir -p "$REPO/build"
failed=()
# One leg: the core on RELEASE, its own report, its times.
core_on() {
    local release=$1 built=$2 t0 rc=0 report
    t0=$(date +%s)
    report=$REPO/build/test-report-slurm-$release.xml
    (cd "$REPO" && "$VENV/bin/pytest" -p no:cacheprovider -m core --junitxml="$report" \
        tests/integration) || rc=$?
    "$VENV/bin/python" "$REPO/scripts/check_test_report.py" "$report" --pytest-exit "$rc" \
        --tiers integration || failed+=("$release")
    log "releases: Slurm $release: set-up ${built}s, core tests $(( $(date +%s) - t0 ))s"
}
slurm_each_release core_on "$@"
if [ ${#failed[@]} -gt 0 ]; then
    die "releases: the core failed on Slurm ${failed[*]}"
fi
log "releases: the core passed on Slurm $*"
