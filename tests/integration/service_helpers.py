"""Shared pieces of the tests that drive slurm-ckptd on the real cluster."""

from __future__ import annotations

from pathlib import Path

from slurm_ckpt import proc
from slurm_ckpt.db.catalog import Catalog, EventRecord, JobRecord
from slurm_ckpt.db.states import EventKind

from .launcher_helpers import wait_until
from .slurm_helpers import REPO

CONFIG = Path("/etc/slurm-ckpt/config.toml")
NODES = {"node1", "node2"}
LINES = 70


def counter_script(lines: int = LINES, extra: str = "") -> str:
    # The counter file stays open, as a program's output files do.
    return (
        "#!/bin/bash\n"
        "#SBATCH --checkpoint=10s\n"
        f"{extra}"
        "exec 3>>counter.txt\n"
        f"for i in $(seq 1 {lines}); do\n"
        '    echo "line $i"\n'
        '    echo "line $i" >&3\n'
        "    sleep 0.5\n"
        "done\n"
    )


def expected(lines: int = LINES) -> str:
    return "".join(f"line {i}\n" for i in range(1, lines + 1))


def tracked(catalog: Catalog, job_id: int) -> JobRecord:
    return wait_until(lambda: catalog.find_job("ckptdev", job_id), 30, f"job {job_id} tracked")


# What a launcher reports of a restart: one of these events ends every restore.
RESTART_OUTCOMES = {
    EventKind.RESTORED,
    EventKind.FELL_BACK,
    EventKind.FRESH_START,
    EventKind.RESTORE_FAILED,
}


def restored(catalog: Catalog, job: int, timeout: float = 30) -> EventRecord:
    """The restore event of catalog job `job`; fails naming every event when its
    restart ended any other way (an older image, a fresh start) or not at all."""
    outcome: EventRecord = wait_until(
        lambda: next((e for e in catalog.events(job) if e.kind in RESTART_OUTCOMES), None),
        timeout,
        "the outcome of the restart",
    )
    history = [(e.kind.value, e.detail) for e in reversed(catalog.events(job))]
    assert outcome.kind == EventKind.RESTORED, history
    return outcome


def valid_count(catalog: Catalog, record: JobRecord) -> int:
    return len(catalog.valid_checkpoints(record.id))


def newest_valid_seq(catalog: Catalog, record: JobRecord) -> int:
    """The seq of the job's newest VALID checkpoint, 0 for none. Unlike the number
    of VALID ones, which retention holds at keep_last, it grows with every checkpoint."""
    newest = catalog.newest_valid(record.id)
    return newest.seq if newest is not None else 0


def service_ctl(action: str) -> None:
    proc.run([str(REPO / "scripts" / "cluster.sh"), action], timeout=60)
