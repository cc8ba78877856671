"""Admin actions on the real cluster: recorded in the catalog as ckpt-admin does, carried
out by the running slurm-ckptd with the real launcher and CRIU."""

from __future__ import annotations

import pwd
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from slurm_ckpt import proc
from slurm_ckpt.config import load_settings
from slurm_ckpt.db.catalog import ActionRecord, Catalog, JobRecord
from slurm_ckpt.db.session import open_database
from slurm_ckpt.db.states import ActionKind, ActionState, CheckpointState, EventKind

from .launcher_helpers import count_lines, wait_until
from .service_helpers import restored
from .slurm_helpers import SlurmTestClient

CONFIG = Path("/etc/slurm-ckpt/config.toml")
CLUSTER = "ckptdev"
NODES = {"node1", "node2"}
LINES = 70


@pytest.fixture(scope="module")
def catalog(cluster: SlurmTestClient) -> Iterator[Catalog]:
    db = open_database(load_settings(CONFIG).catalog.url)
    yield Catalog(db)
    db.dispose()


def counter_script(lines: int = LINES) -> str:
    # The counter file stays open, as a program's output files do.
    return (
        "#!/bin/bash\n"
        "#SBATCH --checkpoint=10s\n"
        "exec 3>>counter.txt\n"
        f"for i in $(seq 1 {lines}); do\n"
        '    echo "line $i"\n'
        '    echo "line $i" >&3\n'
        "    sleep 0.5\n"
        "done\n"
    )


def expected(lines: int = LINES) -> str:
    return "".join(f"line {i}\n" for i in range(1, lines + 1))


def submit_counter(
    cluster: SlurmTestClient, catalog: Catalog, user: pwd.struct_passwd, cwd: Path
) -> tuple[int, JobRecord]:
    job = cluster.submit(counter_script(), user=user.pw_name, cwd=cwd, args=["--output=job.out"])
    record = wait_until(lambda: catalog.find_job(CLUSTER, job), 30, f"job {job} tracked")
    wait_until(lambda: count_lines(cwd / "counter.txt") >= 10, 60, "progress")
    return job, record


def ask(catalog: Catalog, kind: ActionKind, **fields: Any) -> ActionRecord:
    return catalog.submit_action(
        kind, cluster=CLUSTER, requested_by="root", now=datetime.now(UTC), **fields
    )


def ended(catalog: Catalog, action: ActionRecord, timeout: float = 90) -> ActionRecord:
    return wait_until(  # type: ignore[no-any-return]
        lambda: (
            (a := catalog.get_action(action.id)).state in (ActionState.DONE, ActionState.FAILED)
            and a
        ),
        timeout,
        f"action {action.id} ({action.kind}) to end",
    )


def finishes_intact(
    cluster: SlurmTestClient, job: int, cwd: Path, restarts: str = "1"
) -> dict[str, str]:
    final = cluster.wait_for(job, {"COMPLETED", "FAILED"}, timeout=180)
    assert final["JobState"] == "COMPLETED" and final["ExitCode"] == "0:0", final
    assert final["Restarts"] == restarts, final
    assert (cwd / "job.out").read_text() == expected()
    assert (cwd / "counter.txt").read_text() == expected()
    return final


def test_checkpoint_action_takes_a_new_valid_checkpoint(
    cluster: SlurmTestClient, catalog: Catalog, test_user: pwd.struct_passwd, user_dir: Path
) -> None:
    job, record = submit_counter(cluster, catalog, test_user, user_dir)
    try:
        before = max((c.seq for c in catalog.checkpoints(record.id)), default=0)
        action = ask(catalog, ActionKind.CHECKPOINT, slurm_job_id=job)
        done = ended(catalog, action, timeout=60)
        checkpoints = {c.seq: c for c in catalog.checkpoints(record.id)}
    finally:
        cluster.cancel(job)

    assert done.state == ActionState.DONE, done
    found = re.fullmatch(r"checkpoint (\d+) VALID, [\d.]+ MiB, dump [\d.]+ s", done.detail)
    assert found, done.detail
    seq = int(found.group(1))
    assert seq > before
    assert checkpoints[seq].state == CheckpointState.VALID
    assert (checkpoints[seq].total_bytes or 0) > 0


def test_requeue_with_checkpoint_first_resumes_with_identical_output(
    cluster: SlurmTestClient, catalog: Catalog, test_user: pwd.struct_passwd, user_dir: Path
) -> None:
    job, record = submit_counter(cluster, catalog, test_user, user_dir)
    try:
        action = ask(
            catalog, ActionKind.REQUEUE, slurm_job_id=job, options={"checkpoint_first": True}
        )
        done = ended(catalog, action)
        assert done.state == ActionState.DONE, done
        assert re.fullmatch(r"checkpoint \d+ VALID, .*; requeued", done.detail), done.detail
        finishes_intact(cluster, job, user_dir)
    finally:
        cluster.cancel(job)

    restored(catalog, record.id)
    requeued = [e for e in catalog.events(record.id) if e.kind == EventKind.REQUEUED]
    assert [e.detail for e in requeued] == ["requeued by root (ckpt-admin)"]


@pytest.mark.core
def test_drain_moves_the_job_to_the_other_node(
    cluster: SlurmTestClient, catalog: Catalog, test_user: pwd.struct_passwd, user_dir: Path
) -> None:
    job, record = submit_counter(cluster, catalog, test_user, user_dir)
    node = cluster.job(job)["BatchHost"]
    (other,) = NODES - {node}
    try:
        action = ask(catalog, ActionKind.DRAIN, node=node, options={"reason": "ckpt-admin test"})
        done = ended(catalog, action)
        assert done.state == ActionState.DONE, done
        assert done.detail.startswith(f"{node} drained; ") and f"moved: {job} (" in done.detail
        # "drng" while other tests' jobs still run there, "drain" once it is empty.
        assert cluster.node_state(node) in ("drain", "drng")
        final = finishes_intact(cluster, job, user_dir)
        assert final["NodeList"] == other
    finally:
        cluster.cancel(job)
        proc.run(["scontrol", "update", f"nodename={node}", "state=resume"], timeout=30)

    restored(catalog, record.id)
    assert cluster.node_state(node) not in ("drain", "drng")
