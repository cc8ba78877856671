#!/usr/bin/env bash
# make bench-recovery-releases: the node-failure benchmark on each Slurm release
# given but the selected one, into docs/bench-results/recovery-slurm-<r>.json.
# The Slurm selected at the start is selected again afterwards, whatever happened.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"
PREFIX=${SLURM_CKPT_PREFIX:-/opt/slurm-ckpt}
# shellcheck source=scripts/slurm.sh
. "$REPO/scripts/slurm.sh"
VENV=${SLURM_CKPT_VENV:-$REPO/.venv}

# One release's run, into its own file.
recovery_on() {
    local release=$1
    "$REPO/scripts/cluster.sh" up
    "$VENV/bin/python" "$REPO/scripts/bench_recovery.py" \
        --json "$REPO/docs/bench-results/recovery-slurm-$release.json"
    "$REPO/scripts/cluster.sh" down
}
slurm_each_release recovery_on "$@"
