"""job_submit.lua on the real controller: what a --checkpoint job becomes, what is
refused, and that every other job stays exactly as submitted."""

from __future__ import annotations

import pwd
import uuid
from pathlib import Path

import pytest

from slurm_ckpt import proc

from .slurm_helpers import SlurmTestClient

LAUNCHER = "/opt/slurm-ckpt/venv/bin/slurm-ckpt-launch"
SUBMIT_CONF = Path("/etc/slurm/slurm-ckpt-submit.conf")


@pytest.mark.core
def test_test_cluster_is_configured_for_checkpoints() -> None:
    text = SUBMIT_CONF.read_text()
    assert f"launcher = {LAUNCHER}" in text
    assert "min_interval = 10" in text


@pytest.mark.core
def test_checkpointed_job_gets_launcher_requeue_and_tag(
    cluster: SlurmTestClient, test_user: pwd.struct_passwd, user_dir: Path
) -> None:
    script = "#!/bin/bash -l\n#SBATCH --checkpoint=1h30m\necho hello\n"
    # --no-requeue is overridden: a checkpointed job must be requeueable.
    job = cluster.submit(
        script, user=test_user.pw_name, cwd=user_dir, args=["--hold", "--no-requeue"]
    )
    try:
        stored = cluster.batch_script(job)
        record = cluster.job(job)
    finally:
        cluster.cancel(job)

    assert stored == f"#!{LAUNCHER} /bin/bash -l\n#SBATCH --checkpoint=1h30m\necho hello\n"
    assert record["Requeue"] == "1"
    assert record["AdminComment"] == "slurm-ckpt:interval=5400"


@pytest.mark.core
def test_interpreter_and_its_argument_are_kept(
    cluster: SlurmTestClient, test_user: pwd.struct_passwd, user_dir: Path
) -> None:
    script = "#!/usr/bin/env python3\nprint('hello')\n"
    job = cluster.submit(
        script, user=test_user.pw_name, cwd=user_dir, args=["--hold", "--checkpoint=10s"]
    )
    try:
        stored = cluster.batch_script(job)
        record = cluster.job(job)
    finally:
        cluster.cancel(job)
    assert stored.splitlines()[0] == f"#!{LAUNCHER} /usr/bin/env python3"
    assert stored.splitlines()[1:] == ["print('hello')"]
    assert record["AdminComment"] == "slurm-ckpt:interval=10"


@pytest.mark.core
def test_interval_below_the_minimum_is_refused_and_nothing_is_queued(
    cluster: SlurmTestClient, test_user: pwd.struct_passwd, user_dir: Path
) -> None:
    stderr = cluster.refused_submit(
        "#!/bin/bash\necho hello\n",
        user=test_user.pw_name,
        cwd=user_dir,
        args=["--checkpoint=9s"],
    )
    assert "--checkpoint=9s is below this cluster's minimum interval of 10s" in stderr


@pytest.mark.core
def test_interactive_job_with_checkpoint_is_refused(
    cluster: SlurmTestClient, test_user: pwd.struct_passwd
) -> None:
    name = f"refused-{uuid.uuid4().hex[:10]}"
    done = proc.run(
        [
            "runuser",
            "-u",
            test_user.pw_name,
            "--",
            "salloc",
            f"--job-name={name}",
            "--checkpoint=30m",
            "true",
        ],
        timeout=30,
        check=False,
    )
    assert done.returncode != 0
    assert "--checkpoint works with batch jobs only" in done.stderr
    assert cluster.jobs_named(name) == []


@pytest.mark.core
def test_job_without_the_option_is_untouched(
    cluster: SlurmTestClient, test_user: pwd.struct_passwd, user_dir: Path
) -> None:
    script = "#!/bin/sh -e\n# a comment   with  spaces\t\nprintf 'x\\n'\n\n"
    job = cluster.submit(
        script, user=test_user.pw_name, cwd=user_dir, args=["--hold", "--no-requeue"]
    )
    try:
        stored = cluster.batch_script(job)
        record = cluster.job(job)
    finally:
        cluster.cancel(job)
    assert stored.encode() == script.encode()
    assert record["Requeue"] == "0"
    assert record.get("AdminComment", "") == ""
