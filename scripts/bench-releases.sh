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

# The Slurm selected at the start, selected again at the end, whatever happened.
selection=$(slurm_selection)
# shellcheck disable=SC2064
trap "slurm_restore '$selection'" EXIT

for release in "$@"; do
    if slurm_selected_is "$release"; then
        log "bench: Slurm $release is the selected one: make bench-recovery measures it"
        continue
    fi
    # Nothing of another release may still run when the selection changes.
    "$REPO/scripts/cluster.sh" down
    SLURM_RELEASE=$release "$REPO/scripts/setup-system.sh" slurm
    "$REPO/scripts/cluster.sh" up
    "$VENV/bin/python" "$REPO/scripts/bench_recovery.py" \
        --json "$REPO/docs/bench-results/recovery-slurm-$release.json"
    "$REPO/scripts/cluster.sh" down
done
