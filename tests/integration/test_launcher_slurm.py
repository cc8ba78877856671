"""The launcher inside real Slurm jobs on the test cluster: the exit code reaches Slurm, and
the node-failure acceptance test: a checkpointed job whose node dies resumes on the other
node and ends with output identical to an uninterrupted run."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from slurm_ckpt.store.layout import JobDir
from slurm_ckpt.store.verify import write_published_images

from .launcher_helpers import LAUNCHER, count_lines, make_store, remove_store, wait_until
from .slurm_helpers import SlurmTestClient

NODES = {"node1", "node2"}
LINES = 60


@pytest.fixture
def store_root(test_user: pwd.struct_passwd) -> Iterator[Path]:
    # Like a site's store: root's 0711 root, the test user's own 0700 folder.
    root = make_store(test_user)
    yield root
    remove_store(root)


def submit(
    cluster: SlurmTestClient,
    user: pwd.struct_passwd,
    cwd: Path,
    store_root: Path,
    body: str,
    *args: str,
) -> int:
    script = f"#!{LAUNCHER} /bin/bash\n{body}"
    return cluster.submit(
        script,
        user=user.pw_name,
        cwd=cwd,
        args=[
            f"--export=ALL,SLURM_CKPT_PATHS_STORE_ROOT={store_root},SLURM_CKPT_CONFIG=/dev/null",
            *args,
        ],
    )


def test_workload_exit_code_becomes_the_jobs(
    cluster: SlurmTestClient, test_user: pwd.struct_passwd, user_dir: Path, store_root: Path
) -> None:
    job = submit(
        cluster, test_user, user_dir, store_root, "echo working\nexit 7\n", "--output=out.txt"
    )

    record = cluster.wait_for(job, {"COMPLETED", "FAILED"}, timeout=60)

    assert record["ExitCode"] == "7:0"
    assert record["JobState"] == "FAILED"
    assert (user_dir / "out.txt").read_text() == "working\n"
    # It ran under the launcher (which logs to the store), not around it.
    log = JobDir(store_root, test_user.pw_name, job).log_file.read_text()
    assert "workload ended: exit code 7" in log


def test_node_failure_job_resumes_on_the_other_node_with_identical_output(
    cluster: SlurmTestClient, test_user: pwd.struct_passwd, user_dir: Path, store_root: Path
) -> None:
    # The counter file stays open (fd 3), as a program's output files do; a file
    # reopened for every line could not be rolled back (see README).
    body = (
        "exec 3>>counter.txt\n"
        f"for i in $(seq 1 {LINES}); do\n"
        '    echo "line $i"\n'
        '    echo "line $i" >&3\n'
        "    sleep 0.5\n"
        "done\n"
    )
    # No --open-mode=append: Slurm truncates the output when the job starts
    # again; the launcher puts it back from the checkpoint.
    job = submit(cluster, test_user, user_dir, store_root, body, "--requeue", "--output=job.out")
    first = cluster.wait_for(job, {"RUNNING"}, timeout=60)
    dead = first["NodeList"]
    (other,) = NODES - {dead}
    counter = user_dir / "counter.txt"
    wait_until(lambda: count_lines(counter) >= 10, 30, "the job to count")

    jobdir = JobDir(store_root, test_user.pw_name, job)
    (jobdir.path / "request.tmp").write_text(json.dumps({"job_id": job, "seq": 1}))
    (jobdir.path / "request.tmp").rename(jobdir.request_file)
    subprocess.run(["scancel", "--signal=USR1", "--batch", str(job)], check=True, timeout=30)
    result_file = jobdir.result_file(1)
    wait_until(result_file.exists, 30, "the checkpoint result")
    result = json.loads(result_file.read_text())
    assert result["ok"], result
    write_published_images(jobdir, [1])
    os.chown(jobdir.images_list, test_user.pw_uid, test_user.pw_gid)
    at_checkpoint = count_lines(counter)
    wait_until(lambda: count_lines(counter) >= at_checkpoint + 4, 30, "work after the checkpoint")

    try:
        killed_at = time.monotonic()
        cluster.kill_node(dead)
        cluster.wait_for(
            job, {"RUNNING", "COMPLETED"}, timeout=120, where={"Restarts": "1", "NodeList": other}
        )
        resumed = time.monotonic() - killed_at
        record = cluster.wait_for(job, {"COMPLETED", "FAILED"}, timeout=120)
    finally:
        cluster.cancel(job)
        cluster.start_node(dead)

    expected = "".join(f"line {i}\n" for i in range(1, LINES + 1))
    assert record["JobState"] == "COMPLETED", record
    assert record["ExitCode"] == "0:0"
    assert record["Restarts"] == "1"
    assert (user_dir / "job.out").read_text() == expected
    assert counter.read_text() == expected
    report = json.loads((jobdir.path / "restarts" / "0001.json").read_text())
    assert report["outcome"] == "restored" and report["seq"] == 1
    print(
        f"node killed to job running on {other}: {resumed:.1f}s; "
        f"checkpoint dump {result['dump_seconds']:.3f}s, frozen {result['freeze_seconds']:.3f}s"
    )
