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

# The Slurm selected at the start, selected again at the end, whatever happened.
selection=$(slurm_selection)
# shellcheck disable=SC2064
trap "slurm_restore '$selection'" EXIT

mkdir -p "$REPO/build"
failed=()
for release in "$@"; do
    if slurm_selected_is "$release"; then
        log "releases: Slurm $release is the selected one: the full suite ran on it"
        continue
    fi
    t0=$(date +%s)
    # Nothing of another release may still run when the selection changes.
    "$REPO/scripts/cluster.sh" down
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
