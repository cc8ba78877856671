#!/usr/bin/env bash
# make bench-recovery-releases: the node-failure benchmark on each Slurm release
# given but the distribution's own, into docs/bench-results/recovery-slurm-<r>.json.
# Debian's package is selected again afterwards, whatever happened.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"
PREFIX=${SLURM_CKPT_PREFIX:-/opt/slurm-ckpt}
# shellcheck source=scripts/slurm.sh
. "$REPO/scripts/slurm.sh"
VENV=${SLURM_CKPT_VENV:-$REPO/.venv}

trap slurm_restore_default EXIT

for release in "$@"; do
    if slurm_is_distro "$release"; then
        log "bench: Slurm $release is this distribution's own: make bench-recovery measures it"
        continue
    fi
    SLURM_RELEASE=$release "$REPO/scripts/setup-system.sh" slurm
    "$REPO/scripts/cluster.sh" up
    "$VENV/bin/python" "$REPO/scripts/bench_recovery.py" \
        --json "$REPO/docs/bench-results/recovery-slurm-$release.json"
    "$REPO/scripts/cluster.sh" down
done
