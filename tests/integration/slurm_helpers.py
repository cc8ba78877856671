"""A small client for driving the real test cluster from tests, as root or as a test user."""

from __future__ import annotations

import time
import uuid
from collections.abc import Collection, Sequence
from pathlib import Path

from slurm_ckpt import proc

REPO = Path(__file__).resolve().parents[2]


def parse_scontrol_record(line: str) -> dict[str, str]:
    """`scontrol show job -o` prints Key=Value pairs on one line; values may hold spaces
    only in a few keys we do not read, so splitting on spaces is enough here."""
    fields: dict[str, str] = {}
    for token in line.split():
        key, sep, value = token.partition("=")
        if sep:
            fields[key] = value
    return fields


class SlurmTestClient:
    def submit(self, script: str, *, user: str, cwd: Path, args: Sequence[str] = ()) -> int:
        """Submit `script` as `user` with sbatch; return the job id."""
        done = proc.run(
            ["runuser", "-u", user, "--", "sbatch", "--parsable", f"--chdir={cwd}", *args],
            input=script,
            timeout=30,
        )
        return int(done.stdout.strip().split(";")[0])

    def job(self, job_id: int) -> dict[str, str]:
        done = proc.run(["scontrol", "show", "job", "-o", str(job_id)], timeout=30)
        return parse_scontrol_record(done.stdout)

    def wait_for(
        self,
        job_id: int,
        states: Collection[str],
        *,
        timeout: float,
        where: dict[str, str] | None = None,
    ) -> dict[str, str]:
        """Poll until the job's JobState is in `states` and every `where` field matches."""
        deadline = time.monotonic() + timeout
        record: dict[str, str] = {}
        while time.monotonic() < deadline:
            record = self.job(job_id)
            if record.get("JobState") in states and all(
                record.get(k) == v for k, v in (where or {}).items()
            ):
                return record
            time.sleep(0.5)
        raise AssertionError(
            f"job {job_id} did not reach {sorted(states)} {where or ''} in {timeout:.0f}s; "
            f"last: JobState={record.get('JobState')} Reason={record.get('Reason')} "
            f"NodeList={record.get('NodeList')} Restarts={record.get('Restarts')}"
        )

    def cancel(self, job_id: int) -> None:
        proc.run(["scancel", str(job_id)], timeout=30, check=False)

    def release(self, job_id: int) -> None:
        """Let a held job start."""
        proc.run(["scontrol", "release", str(job_id)], timeout=30)

    def resume_node(self, node: str) -> None:
        """Undo a drain (the product never resumes a node; an admin does)."""
        proc.run(["scontrol", "update", f"nodename={node}", "state=resume"], timeout=30)

    def node_state(self, node: str) -> str:
        # One line per partition the node is in; the state is the node's.
        done = proc.run(["sinfo", "-h", "-N", "-n", node, "-o", "%t"], timeout=30)
        return done.stdout.split()[0] if done.stdout.split() else ""

    def kill_node(self, node: str) -> None:
        proc.run([str(REPO / "scripts" / "cluster.sh"), "kill-node", node], timeout=30)

    def start_node(self, node: str) -> None:
        proc.run([str(REPO / "scripts" / "cluster.sh"), "start-node", node], timeout=90)

    def try_submit(
        self, script: str | None, *, user: str, cwd: Path, args: Sequence[str] = ()
    ) -> proc.Completed:
        """Run sbatch as `user` (script on stdin unless None); return the result, failed or not."""
        return proc.run(
            ["runuser", "-u", user, "--", "sbatch", "--parsable", f"--chdir={cwd}", *args],
            input=script,
            timeout=30,
            check=False,
        )

    def refused_submit(
        self, script: str | None, *, user: str, cwd: Path, args: Sequence[str] = ()
    ) -> str:
        """Submit under a fresh job name, check sbatch failed and nothing was queued;
        return sbatch's stderr for the test to read the message."""
        name = f"refused-{uuid.uuid4().hex[:10]}"
        done = self.try_submit(script, user=user, cwd=cwd, args=[f"--job-name={name}", *args])
        assert done.returncode != 0, f"sbatch {' '.join(args)} was accepted"
        assert done.stdout.strip() == ""
        assert self.jobs_named(name) == []
        return done.stderr

    def batch_script(self, job_id: int) -> str:
        """The batch script Slurm stored for the job."""
        done = proc.run(["scontrol", "write", "batch_script", str(job_id), "-"], timeout=30)
        return done.stdout

    def jobs_named(self, name: str) -> list[str]:
        """Ids of every job called `name` the controller knows, finished ones too."""
        done = proc.run(["squeue", "-h", "--states=all", f"--name={name}", "-o", "%i"], timeout=30)
        return done.stdout.split()
