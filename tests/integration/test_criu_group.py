"""Only members of the CRIU copy's group get checkpoints, on the real cluster.

The copy can choose PIDs in the host's namespace; a user who could run it could squat
the PIDs recorded in another user's image, so that restore gives up. ckpt-carol, a test
user outside the group, cannot execute it at all; her `--checkpoint` job runs exactly as
without the option, her launcher says why in launcher.log, and the catalog marks the job
uncheckpointable with the reason, so the service never signals it."""

from __future__ import annotations

import errno
import grp
import os
import pwd
import shutil
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from slurm_ckpt import proc
from slurm_ckpt.config import load_settings
from slurm_ckpt.db.catalog import Catalog
from slurm_ckpt.db.states import EventKind
from slurm_ckpt.service.eligibility import not_a_member
from slurm_ckpt.store.layout import JobDir

from .conftest import CRIU_PREFIX, TEST_USERS
from .launcher_helpers import wait_until
from .service_helpers import CONFIG, expected, tracked
from .slurm_helpers import SlurmTestClient

OUTSIDER = "ckpt-carol"  # made by `scripts/setup-system.sh users`, never in the group
LINES = 30  # 15 s of work: longer than the 10 s interval

SCRIPT = (
    "#!/bin/bash\n"
    "exec 3>>counter.txt\n"
    f"for i in $(seq 1 {LINES}); do\n"
    '    echo "line $i"\n'
    '    echo "line $i" >&3\n'
    "    sleep 0.5\n"
    "done\n"
)


@pytest.fixture(scope="module")
def criu_group(root: None) -> grp.struct_group:
    group = load_settings(CONFIG).criu.group
    try:
        return grp.getgrnam(group)
    except KeyError:
        pytest.fail(f"group {group} is missing: run scripts/setup-system.sh users criu")


@pytest.fixture(scope="module")
def outsider(root: None) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(OUTSIDER)
    except KeyError:
        pytest.fail(f"test user {OUTSIDER} is missing: run scripts/setup-system.sh users")


def folder_of(user: pwd.struct_passwd) -> Path:
    base = Path("/tmp/slurm-ckpt-tests")
    base.mkdir(mode=0o755, exist_ok=True)
    path = base / f"{user.pw_name}-{uuid.uuid4().hex[:8]}"
    path.mkdir(mode=0o700)
    os.chown(path, user.pw_uid, user.pw_gid)
    return path


@pytest.fixture
def outsider_dirs(outsider: pwd.struct_passwd) -> Iterator[tuple[Path, Path]]:
    """Two fresh folders of ckpt-carol's: one for a plain run, one for a --checkpoint run."""
    paths = (folder_of(outsider), folder_of(outsider))
    yield paths
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def groups_of(name: str) -> set[str]:
    return set(proc.run(["id", "-nG", name], timeout=30).stdout.split())


def test_only_the_group_may_run_the_criu_copy(
    criu_unpriv: Path, criu_group: grp.struct_group, outsider: pwd.struct_passwd
) -> None:
    st = criu_unpriv.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, criu_group.gr_gid, 0o750)
    caps = proc.run(["getcap", str(criu_unpriv)], timeout=30).stdout.split()
    assert caps[-1] == "cap_checkpoint_restore=ep", caps
    assert all(criu_group.gr_name in groups_of(user) for user in TEST_USERS)
    assert criu_group.gr_name not in groups_of(OUTSIDER)

    refused = proc.run(
        ["runuser", "-u", OUTSIDER, "--", str(criu_unpriv), "--version"], timeout=30, check=False
    )
    assert refused.returncode != 0
    assert os.strerror(errno.EACCES) in refused.stderr, refused.stderr  # not even its version
    allowed = proc.run(
        ["runuser", "-u", TEST_USERS[0], "--", str(criu_unpriv), "--version"], timeout=30
    )
    assert "Version:" in allowed.stdout


def test_a_non_members_job_runs_as_without_checkpoints(
    cluster: SlurmTestClient,
    service_catalog: Catalog,
    service_store_root: Path,
    criu_group: grp.struct_group,
    outsider: pwd.struct_passwd,
    outsider_dirs: tuple[Path, Path],
) -> None:
    plain_dir, ckpt_dir = outsider_dirs
    plain = cluster.submit(SCRIPT, user=OUTSIDER, cwd=plain_dir, args=["--output=job.out"])
    job = cluster.submit(
        SCRIPT, user=OUTSIDER, cwd=ckpt_dir, args=["--checkpoint=10s", "--output=job.out"]
    )
    try:
        launcher = f"#!{CRIU_PREFIX}/venv/bin/slurm-ckpt-launch "
        assert cluster.batch_script(job).splitlines()[0].startswith(launcher)
        done = cluster.wait_for(job, {"COMPLETED", "FAILED", "CANCELLED"}, timeout=120)
        cluster.wait_for(plain, {"COMPLETED"}, timeout=120)
    finally:
        cluster.cancel(job)
        cluster.cancel(plain)

    # Exactly what the plain run did: never signalled, never frozen, never requeued.
    assert (done["JobState"], done["ExitCode"], done["Restarts"]) == ("COMPLETED", "0:0", "0")
    for name in ("job.out", "counter.txt"):
        assert (ckpt_dir / name).read_text() == (plain_dir / name).read_text() == expected(LINES)

    binary = load_settings(CONFIG).criu.binary
    line = (
        f"user {OUTSIDER} is not in group {criu_group.gr_name} that may run {binary}: "
        "running without checkpoints; an admin adds them"
    )
    log = JobDir(service_store_root, OUTSIDER, job).log_file.read_text()
    assert sum(entry.endswith(f" WARNING {line}") for entry in log.splitlines()) == 1, log

    # The service's side: the launcher will never answer, so nothing is ever requested.
    record = tracked(service_catalog, job)
    reason = not_a_member(OUTSIDER, criu_group.gr_name, binary)
    record = wait_until(
        lambda: (r := service_catalog.get_job(record.id)).uncheckpointable_reason and r,
        30,
        "the job marked uncheckpointable",
    )
    assert record.uncheckpointable_reason == reason
    events = service_catalog.events(record.id)
    assert [e.detail for e in events if e.kind == EventKind.UNCHECKPOINTABLE] == [reason]
    assert service_catalog.checkpoints(record.id) == []
