"""The SPANK plugin: `--checkpoint=<interval>` on sbatch, its C grammar, its refusals."""

from __future__ import annotations

import pwd
import re
from pathlib import Path

import pytest

from slurm_ckpt import proc
from slurm_ckpt.slurm.cli import CliSlurm

from .slurm_helpers import REPO, SlurmTestClient

SCRIPT = "#!/bin/bash\necho hello\n"
ACCEPTED_FORMS = "90s, 30m, 1h30m, 2d"


def test_c_parser_and_job_submit_lua_pass_their_unit_tests(tmp_path: Path) -> None:
    # The C parser reads the same vector file as tests/unit/test_intervals.py;
    # test_job_submit.lua runs job_submit.lua under lua5.1 with a stub slurm table.
    done = proc.run(
        ["make", "-C", str(REPO / "plugins"), f"BUILD={tmp_path}/build", "test"],
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "vectors checked, 0 failed" in done.stdout
    vectors = int(done.stdout.split(" vectors checked")[0].split()[-1])
    assert vectors >= 150
    assert ", 0 failed" in done.stdout.splitlines()[-2]


@pytest.mark.core
def test_sbatch_help_lists_the_option_in_one_line() -> None:
    done = proc.run(["sbatch", "--help"], timeout=30)
    lines = [line for line in done.stdout.splitlines() if "--checkpoint=<interval>" in line]
    assert len(lines) == 1
    assert "every <interval>" in lines[0]


@pytest.mark.parametrize("where", ["command line", "#SBATCH"])
@pytest.mark.core
def test_valid_interval_is_accepted(
    cluster: SlurmTestClient, test_user: pwd.struct_passwd, user_dir: Path, where: str
) -> None:
    if where == "command line":
        script, args = SCRIPT, ["--checkpoint=30m"]
    else:
        script, args = "#!/bin/bash\n#SBATCH --checkpoint=30m\necho hello\n", []
    job = cluster.submit(script, user=test_user.pw_name, cwd=user_dir, args=["--hold", *args])
    try:
        record = cluster.job(job)
        assert record["AdminComment"] == "slurm-ckpt:interval=1800"
    finally:
        cluster.cancel(job)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("abc", None),
        ("0", "the total is 0"),
        ("-5m", "a sign is not allowed"),
        ("10y", None),
        ("", "empty"),
    ],
)
@pytest.mark.parametrize("where", ["command line", "#SBATCH"])
@pytest.mark.core
def test_bad_interval_is_refused_and_nothing_is_queued(
    cluster: SlurmTestClient,
    test_user: pwd.struct_passwd,
    user_dir: Path,
    value: str,
    reason: str | None,
    where: str,
) -> None:
    if where == "command line":
        script, args = SCRIPT, [f"--checkpoint={value}"]
    else:
        script, args = f"#!/bin/bash\n#SBATCH --checkpoint={value}\necho hello\n", []
    stderr = cluster.refused_submit(script, user=test_user.pw_name, cwd=user_dir, args=args)

    assert f"invalid --checkpoint='{value}'" in stderr
    assert ACCEPTED_FORMS in stderr and "D-HH:MM:SS" in stderr
    if reason:
        assert reason in stderr


@pytest.mark.core
def test_no_chain_tags_the_job_for_the_service(
    cluster: SlurmTestClient, test_user: pwd.struct_passwd, user_dir: Path
) -> None:
    job = cluster.submit(
        SCRIPT,
        user=test_user.pw_name,
        cwd=user_dir,
        args=["--hold", "--checkpoint=30m", "--checkpoint-no-chain"],
    )
    try:
        shown = proc.run(["scontrol", "show", "job", str(job)], timeout=30).stdout
        assert re.search(r"AdminComment=slurm-ckpt:interval=1800 slurm-ckpt:no-chain\s", shown)
        (info,) = [j for j in CliSlurm().list_checkpointed_jobs() if j.job_id == job]
        assert info.no_chain and info.interval == 1800
    finally:
        cluster.cancel(job)


@pytest.mark.core
def test_no_chain_without_checkpoint_is_refused(
    cluster: SlurmTestClient, test_user: pwd.struct_passwd, user_dir: Path
) -> None:
    stderr = cluster.refused_submit(
        SCRIPT, user=test_user.pw_name, cwd=user_dir, args=["--checkpoint-no-chain"]
    )
    assert "--checkpoint-no-chain applies to checkpointed jobs" in stderr


@pytest.mark.core
def test_srun_inside_a_checkpointed_job_prints_no_error(
    cluster: SlurmTestClient, test_user: pwd.struct_passwd, user_dir: Path
) -> None:
    out = user_dir / "srun.out"
    job = cluster.submit(
        "#!/bin/bash\nsrun -n1 echo step-ran\n",
        user=test_user.pw_name,
        cwd=user_dir,
        args=["--checkpoint=30m", f"--output={out}"],
    )
    cluster.wait_for(job, {"COMPLETED", "FAILED"}, timeout=60)
    text = out.read_text()
    assert "step-ran" in text
    assert "error" not in text.lower(), text
