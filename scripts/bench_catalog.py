"""Time the catalog's hot queries on a big catalog, on SQLite and PostgreSQL.

Fills a fresh catalog per database (default 10,000 jobs x 20 checkpoints =
200,000 checkpoints), then times, through the public Catalog API as the
service and CLI call it:
  - job_summaries(): the list-jobs summary of every job, in one query;
  - newest_valid(job): one lookup per call, for random jobs.
The PostgreSQL database gets a random name and is dropped at the end.

    .venv/bin/python scripts/bench_catalog.py [--jobs N] [--per-job N] [--only sqlite]
        [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import benchlib
import sqlalchemy
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

from slurm_ckpt.db import migrate
from slurm_ckpt.db.catalog import Catalog
from slurm_ckpt.db.models import Checkpoint, Job
from slurm_ckpt.db.session import Database, open_database
from slurm_ckpt.db.states import CheckpointState, JobState

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CHUNK = 20_000


@contextmanager
def sqlite_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="bench-catalog-") as folder:
        yield f"sqlite:///{Path(folder)}/catalog.db"


@contextmanager
def postgres_url(admin: str) -> Iterator[str]:
    admin_url = make_url(admin)
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"slurm_ckpt_bench_{uuid.uuid4().hex[:12]}"
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def fill(db: Database, jobs: int, per_job: int, rnd: random.Random) -> None:
    """Jobs with a realistic history: old images deleted, a failure, the newest valid."""
    start = NOW - timedelta(days=30)
    with db.session(write=True) as session:
        session.execute(
            insert(Job),
            [
                {
                    "id": j,
                    "cluster": "bench",
                    "slurm_job_id": 100_000 + j,
                    "user_name": f"user{j % 500}",
                    "uid": 10_000 + j % 500,
                    "interval_seconds": 1800,
                    "state": JobState.RUNNING,
                    "batch_host": f"node{j % 64}",
                    "restart_count": rnd.randrange(4),
                    "created_at": start,
                    "updated_at": start,
                }
                for j in range(1, jobs + 1)
            ],
        )
    rows: list[dict[str, object]] = []
    for j in range(1, jobs + 1):
        for seq in range(1, per_job + 1):
            state = _state(seq, per_job, rnd)
            created = start + timedelta(minutes=30 * seq + rnd.randrange(10))
            done = None if state == CheckpointState.REQUESTED else created + timedelta(seconds=20)
            rows.append(
                {
                    "job_id": j,
                    "seq": seq,
                    "state": state,
                    "store_path": f"/store/bench/{100_000 + j}/{seq}",
                    "total_bytes": rnd.randrange(10**8, 10**10),
                    "file_count": rnd.randrange(5, 50),
                    "dump_seconds": rnd.uniform(1, 60),
                    "freeze_seconds": rnd.uniform(0.1, 5),
                    "criu_version": "4.1",
                    "manifest_checksum": f"xxh3_128:{j:016x}{seq:016x}",
                    "error": "criu: dump failed" if state == CheckpointState.FAILED else None,
                    "job_restart_count": 0,
                    "created_at": created,
                    "completed_at": done,
                }
            )
            if len(rows) >= CHUNK:
                _insert(db, rows)
    _insert(db, rows)
    with db.session(write=True) as session:
        session.execute(text("ANALYZE"))


def _state(seq: int, per_job: int, rnd: random.Random) -> CheckpointState:
    if seq == per_job:
        return CheckpointState.REQUESTED if rnd.random() < 0.1 else CheckpointState.VALID
    if seq >= per_job - 3:
        return CheckpointState.VALID
    if seq == per_job - 4:
        return CheckpointState.FAILED
    return CheckpointState.DELETED


def _insert(db: Database, rows: list[dict[str, object]]) -> None:
    if rows:
        with db.session(write=True) as session:
            session.execute(insert(Checkpoint), rows)
        rows.clear()


def timed(action: Callable[[], object], repeat: int) -> tuple[float, list[float]]:
    """The first (cold) run's seconds and the seconds of `repeat` more runs."""
    started = time.perf_counter()
    action()
    cold = time.perf_counter() - started
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        runs.append(time.perf_counter() - started)
    return cold, runs


def bench(name: str, url: str, args: argparse.Namespace) -> dict[str, float | str]:
    rnd = random.Random(args.seed)
    migrate.upgrade(url)
    db = open_database(url)
    try:
        with db.engine.connect() as conn:
            if db.dialect == "postgresql":
                version = "PostgreSQL " + str(conn.execute(text("SHOW server_version")).scalar())
            else:
                version = "SQLite " + str(conn.execute(text("SELECT sqlite_version()")).scalar())
        started = time.perf_counter()
        fill(db, args.jobs, args.per_job, rnd)
        fill_s = time.perf_counter() - started
        catalog = Catalog(db)
        summaries = catalog.job_summaries()
        if len(summaries) != args.jobs:
            raise SystemExit(f"{name}: expected {args.jobs} summaries, got {len(summaries)}")
        cold, runs = timed(catalog.job_summaries, args.repeat)
        job_ids = [rnd.randrange(1, args.jobs + 1) for _ in range(args.lookups)]
        lookups = []
        for job_id in job_ids:
            started = time.perf_counter()
            if catalog.newest_valid(job_id) is None:
                raise SystemExit(f"{name}: job {job_id} has no valid checkpoint")
            lookups.append(time.perf_counter() - started)
    finally:
        db.dispose()
    lookups.sort()
    return {
        "version": version,
        "fill_s": fill_s,
        "summary_cold_s": cold,
        "summary_median_s": statistics.median(runs),
        "summary_max_s": max(runs),
        "newest_valid_median_ms": statistics.median(lookups) * 1000,
        "newest_valid_p95_ms": lookups[int(len(lookups) * 0.95) - 1] * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--per-job", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=10, help="timed summary runs")
    parser.add_argument("--lookups", type=int, default=2000, help="timed newest-valid lookups")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("SLURM_CKPT_TEST_POSTGRES_URL", DEFAULT_PG_URL),
        help="a PostgreSQL URL whose user may create databases",
    )
    benchlib.add_json_option(parser)
    args = parser.parse_args()
    if args.per_job < 5:
        parser.error("--per-job must be >= 5 (each job gets deleted, failed and valid images)")
    targets = {"sqlite": sqlite_url(), "postgresql": postgres_url(args.pg_url)}
    print(f"{args.jobs} jobs x {args.per_job} checkpoints = {args.jobs * args.per_job} rows")
    print(
        "| database | fill s | summary cold s | summary median s | summary max s "
        "| newest-valid median ms | newest-valid p95 ms |"
    )
    print("|---|---|---|---|---|---|---|")
    databases: dict[str, dict[str, float | str]] = {}
    for name, target in targets.items():
        if args.only and name != args.only:
            continue
        with target as url:
            r = bench(name, url, args)
        databases[name] = r
        print(
            f"| {name} | {r['fill_s']:.1f} | {r['summary_cold_s']:.3f} "
            f"| {r['summary_median_s']:.3f} | {r['summary_max_s']:.3f} "
            f"| {r['newest_valid_median_ms']:.2f} | {r['newest_valid_p95_ms']:.2f} |",
            flush=True,
        )
    benchlib.write_results(
        args.json,
        "catalog",
        {
            "jobs": args.jobs,
            "per_job": args.per_job,
            "repeat": args.repeat,
            "lookups": args.lookups,
            "sqlalchemy": sqlalchemy.__version__,
        },
        databases,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
