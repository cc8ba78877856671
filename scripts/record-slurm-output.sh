#!/usr/bin/env bash
# Record the Slurm adapter's inputs from the running local cluster into
# tests/data/slurm/<major release>/, for the parser tests of that release:
# squeue with an untagged and a tagged finished job, a held job whose admin
# comment holds a note before our tag, a running job; sinfo with node2 idle,
# (run it on an otherwise idle cluster: node2 is drained and downed)
# drained (a reason holding "|") and down. The same commands and formats as
# slurm_ckpt/slurm/cli.py. Run as root with the cluster up (scripts/cluster.sh up).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"
PY=${SLURM_CKPT_VENV:-$REPO/.venv}/bin/python

version=$(scontrol --version | awk '{print $2}')
out=$REPO/tests/data/slurm/${version%.*}
work=$(mktemp -d /tmp/slurm-ckpt-record.XXXXXX)
chmod 0777 "$work"
trap 'rm -rf "$work"' EXIT
printf '#!/bin/bash\nsleep "${1:-0}"\n' > "$work/job.sh"
chmod 0755 "$work/job.sh"

submit() { runuser -u "$1" -- sbatch --parsable --chdir="$work" --output=/dev/null "${@:2}" | cut -d';' -f1; }

plain=$(submit ckpt-alice "$work/job.sh")
finished=$(submit ckpt-alice --checkpoint=90m -t 365-0 "$work/job.sh")
held=$(submit ckpt-alice --checkpoint=10m -t 90 --hold "$work/job.sh")
scontrol update jobid="$held" admincomment="ops note slurm-ckpt:interval=600"
running=$(submit ckpt-bob --checkpoint=30m -t 1-0 "$work/job.sh" 600)
wait_for 60 "the recorded jobs to settle" sh -c \
    "[ \"\$(squeue -h -j $plain,$finished -t all -o %T | sort -u | paste -sd,)\" = COMPLETED ] \
     && squeue -h -j $running -o %T | grep -qx RUNNING"

mkdir -p "$out"
"$PY" - "$out/squeue_jobs.txt" "$plain,$finished,$held,$running" <<'PYEOF'
import subprocess, sys
from slurm_ckpt.slurm import parse
argv = ["squeue", "--noheader", "--all", "--array", "--states=all",
        f"--jobs={sys.argv[2]}", f"--Format={parse.SQUEUE_FORMAT}"]
env = {"PATH": __import__("os").environ["PATH"], **parse.TIME_FORMAT_ENV}
text = subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout
open(sys.argv[1], "w").write("".join(sorted(text.splitlines(keepends=True))))
PYEOF
scancel "$held" "$running"
# The node states with no job on node2: a drained idle node is "drained".
wait_for 60 "node2 to be idle" sh -c "sinfo -h -N -n node2 -o %t | grep -qx idle"
sinfo_node() { sinfo --noheader --Node --format='%N|%T|%E' | sort -u > "$out/$1"; }
sinfo_node sinfo_idle.txt
scontrol update nodename=node2 state=drain reason="slurm-ckpt test | pipe"
sinfo_node sinfo_drained.txt
scontrol update nodename=node2 state=resume
scontrol update nodename=node2 state=down reason="recorded for slurm-ckpt parser tests"
sinfo_node sinfo_down.txt
scontrol update nodename=node2 state=resume
log "recorded Slurm $version's output into $out"
