#!/usr/bin/env bash
# The README's first command (`make demo`): a checkpointed job survives the
# loss of its node. On the local two-node cluster, with slurm-ckptd and its
# SQLite catalog: a job with `#SBATCH --checkpoint=10s` counts; checkpoints
# arrive; its node is killed; Slurm requeues it on the other node; the
# launcher restores it; it finishes with the output of an uninterrupted run.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"

PREFIX=${SLURM_CKPT_PREFIX:-/opt/slurm-ckpt}
ADMIN="$PREFIX/venv/bin/ckpt-admin"
DEMO_USER=ckpt-alice
STEPS=80 # one step every 0.5 s: 40 s of work
T0=$(date +%s)

say() { printf '\n\033[1m[%3ds] %s\033[0m\n' "$(( $(date +%s) - T0 ))" "$*"; }
field() { scontrol show job "$job" | grep -o " $1=[^ ]*" | head -n1 | cut -d= -f2; }
node_of() { squeue -h -j "$job" -o %N; }

was_up=0
"$REPO/scripts/cluster.sh" status >/dev/null 2>&1 && was_up=1
work=$(mktemp -d /tmp/slurm-ckpt-demo.XXXXXX)
job="" dead=""
cleanup() {
    [ -n "$job" ] && scancel "$job" 2>/dev/null || true
    [ -n "$dead" ] && "$REPO/scripts/cluster.sh" start-node "$dead" >/dev/null 2>&1 || true
    rm -rf "$work"
    if [ $was_up -eq 0 ]; then "$REPO/scripts/cluster.sh" down >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
chmod 755 "$work"; chown "$DEMO_USER" "$work"

say "Bringing up the local cluster: munge, slurmctld, slurmd node1 and node2, slurm-ckptd."
"$REPO/scripts/cluster.sh" up 2>&1 | grep -v '^\[' || true
sinfo

say "Submitting, as $DEMO_USER, a job that counts to $STEPS (40 s of work) and asks for a checkpoint every 10 s."
cat > "$work/count.sh" <<EOF
#!/bin/bash
#SBATCH --checkpoint=10s
#SBATCH --output=$work/count.out
for i in \$(seq 1 $STEPS); do
    echo "step \$i of $STEPS"
    sleep 0.5
done
EOF
chown "$DEMO_USER" "$work/count.sh"
job=$(runuser -u "$DEMO_USER" -- sbatch --parsable --chdir="$work" "$work/count.sh")
echo "job $job: $(scontrol write batch_script "$job" - | head -n1)  (the launcher is its interpreter)"
wait_for 60 "job $job to start" sh -c "scontrol show job $job | grep -q JobState=RUNNING"
first_node=$(node_of)
say "Job $job runs on $first_node. slurm-ckptd asks for a checkpoint every 10 s; watch them arrive:"

valid() { "$ADMIN" checkpoints "$job" --json 2>/dev/null \
    | "$PREFIX/venv/bin/python" -c 'import json,sys; d=json.load(sys.stdin); print(sum(c["state"]=="VALID" for c in d["checkpoints"]))' 2>/dev/null || echo 0; }
for _ in $(seq 80); do [ "$(valid)" -ge 1 ] && break; sleep 0.5; done
"$ADMIN" list-jobs
sleep 11
"$ADMIN" list-jobs

say "Killing $first_node: its slurmd, the job's slurmstepd and every process of the job, as in a power loss."
dead=$first_node
progress_at_kill=$(grep -c '^step' "$work/count.out" || true)
kill_at=$(date +%s.%N)
"$REPO/scripts/cluster.sh" kill-node "$dead"
echo "the job had done $progress_at_kill of $STEPS steps"

say "Slurm notices the node is gone (SlurmdTimeout) and requeues the job on the other node."
since() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.0f", a - b}'; }
deadline=$(( $(date +%s) + 120 ))
until [ "$(field Restarts)" = 1 ]; do
    [ "$(date +%s)" -lt "$deadline" ] || die "job $job was not requeued in 120 s: $(squeue -h -j "$job" -o '%T %r')"
    sleep 0.5
done
requeued_at=$(date +%s.%N)
echo "node $dead declared DOWN and job $job requeued $(since "$requeued_at" "$kill_at") s after the kill"
until [ "$(field JobState)" = RUNNING ]; do
    [ "$(date +%s)" -lt "$deadline" ] || die "job $job did not start again in 120 s: $(squeue -h -j "$job" -o '%T %r')"
    sleep 0.5
done
running_at=$(date +%s.%N)
echo "job $job running again on $(node_of) $(since "$running_at" "$kill_at") s after the kill" \
    "(Slurm holds a requeued job back for the credential lifetime, cred_expire)"

say "The launcher on the new node restored the newest image; the catalog's history of the job:"
sleep 3
"$ADMIN" show "$job" | tail -n 8

say "Waiting for the job to finish."
wait_for 120 "job $job to finish" sh -c "scontrol show job $job | grep -qE 'JobState=(COMPLETED|FAILED|CANCELLED)'"
echo "job $job: $(field JobState), exit code $(field ExitCode), restarts $(field Restarts)"

say "Comparing the job's output with an uninterrupted run's:"
for i in $(seq 1 $STEPS); do echo "step $i of $STEPS"; done > "$work/expected.out"
if cmp -s "$work/expected.out" "$work/count.out"; then
    echo "identical: $STEPS steps, each exactly once, no gap and no repeat"
else
    diff "$work/expected.out" "$work/count.out" | head -n 10
    die "the output differs from an uninterrupted run"
fi
last_ckpt=$("$ADMIN" checkpoints "$job" --json | "$PREFIX/venv/bin/python" -c '
import json, sys
from datetime import datetime
kill = float(sys.argv[1])
done = [datetime.fromisoformat(c["completed_at"]).timestamp()
        for c in json.load(sys.stdin)["checkpoints"]
        if c.get("completed_at") and c["state"] in ("VALID", "OBSOLETE", "DELETED")
        and datetime.fromisoformat(c["completed_at"]).timestamp() <= kill]
print(f"{kill - max(done):.1f}" if done else "?")' "$kill_at")
say "Work lost to the node failure: ${last_ckpt} s (done after the last checkpoint, done again). Demo finished in $(( $(date +%s) - T0 )) s."
