#!/usr/bin/env bash
# The README's first command. Today it shows the parts that already work end to
# end: the local two-node cluster running a job as an ordinary user, and CRIU
# usable by that user without root. The checkpointed-job demo (a job saved
# every 10 s, its node killed, the job resumed elsewhere) comes with the
# launcher and the service.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"

PREFIX=${SLURM_CKPT_PREFIX:-/opt/slurm-ckpt}
DEMO_USER=ckpt-alice
was_up=0
"$REPO/scripts/cluster.sh" status >/dev/null 2>&1 && was_up=1
work=$(mktemp -d /tmp/slurm-ckpt-demo.XXXXXX)
cleanup() {
    rm -rf "$work"
    [ $was_up -eq 1 ] || "$REPO/scripts/cluster.sh" down
}
trap cleanup EXIT
chmod 755 "$work"; chown "$DEMO_USER" "$work"

log "demo: bringing up the local cluster (munge, slurmctld, slurmd node1 and node2)"
"$REPO/scripts/cluster.sh" up
sinfo

log "demo: CRIU as $DEMO_USER, unprivileged, through the capability-carrying copy"
runuser -u "$DEMO_USER" -- "$PREFIX/bin/criu-unpriv" check --unprivileged 2>&1 | tail -n1

log "demo: a job submitted by $DEMO_USER"
job=$(printf '#!/bin/bash\necho "hello from $(id -un) on $SLURMD_NODENAME"\n' \
    | runuser -u "$DEMO_USER" -- sbatch --parsable --chdir="$work" --output=demo-%j.out)
wait_for 60 "job $job" sh -c "scontrol show job $job | grep -q 'JobState=COMPLETED'" \
    || die "job $job did not complete: $(scontrol show job "$job" | grep -o 'JobState=[A-Z]*')"
cat "$work/demo-$job.out"

log "demo: checkpointing a running job and resuming it on another node is not available yet"
