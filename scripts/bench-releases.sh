#!/usr/bin/env bash
# make bench-recovery-releases: the node-failure benchmark on each Slurm release
# given but the distribution's own, into docs/bench-results/recovery-slurm-<r>.json.
# Debian's package is selected again afterwards, whatever happened.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"
# shellcheck source=scripts/slurm.sh
PREFIX=${SLURM_CKPT_PREFIX:-/opt/slurm-ckpt} . "$REPO/scripts/slurm.sh"
VENV=${SLURM_CKPT_VENV:-$REPO/.venv}

restore_default() {
    "$REPO/scripts/cluster.sh" down >/dev/null 2>&1 || true
    SLURM_RELEASE=distro "$REPO/scripts/setup-system.sh" slurm >/dev/null 2>&1 \
        || log "bench: could not select Debian's Slurm again; run scripts/setup-system.sh slurm"
}
trap restore_default EXIT

distro=$(slurm_version /usr)
for release in "$@"; do
    if [ "${distro%.*}" = "${release%.*}" ] || [ "$distro" = "$release" ]; then
        log "bench: Slurm $release is this distribution's own: make bench-recovery measures it"
        continue
    fi
    SLURM_RELEASE=$release "$REPO/scripts/setup-system.sh" slurm
    "$REPO/scripts/cluster.sh" up
    "$VENV/bin/python" "$REPO/scripts/bench_recovery.py" \
        --json "$REPO/docs/bench-results/recovery-slurm-$release.json"
    "$REPO/scripts/cluster.sh" down
done
