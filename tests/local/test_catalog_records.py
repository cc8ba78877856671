"""Catalog records: the one constructor from rows, the defaults that mirror the columns,
and the checkpoint kind and chained runs on a SQLite file (no server needed)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from slurm_ckpt.db import migrate
from slurm_ckpt.db.catalog import (
    ActionRecord,
    Catalog,
    CheckpointRecord,
    DumpResult,
    EventRecord,
    JobRecord,
    NewJob,
)
from slurm_ckpt.db.models import Checkpoint, Job
from slurm_ckpt.db.records import field_names, from_row
from slurm_ckpt.db.session import open_database
from slurm_ckpt.db.states import CheckpointKind, CheckpointState, JobState
from slurm_ckpt.errors import CatalogConflict

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DUMP = DumpResult("/store/x/1", 10, 1, 1.0, 0.1, "4.1", "xxh3_128:" + "c" * 32)


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    url = f"sqlite:///{tmp_path}/catalog.db"
    migrate.upgrade(url)
    db = open_database(url)
    yield Catalog(db)
    db.dispose()


@pytest.mark.parametrize("cls", [JobRecord, CheckpointRecord, EventRecord, ActionRecord])
def test_from_row_copies_exactly_the_fields_of_the_record(cls: type) -> None:
    names = [f.name for f in dataclasses.fields(cls)]
    row = SimpleNamespace(**{name: f"value of {name}" for name in names}, unrelated="ignored")
    record = from_row(cls, row)
    assert type(record) is cls
    assert dataclasses.asdict(record) == {name: f"value of {name}" for name in names}
    assert field_names(cls) == tuple(names)


@pytest.mark.parametrize(("cls", "model"), [(JobRecord, Job), (CheckpointRecord, Checkpoint)])
def test_every_record_field_is_a_column(cls: type, model: type) -> None:
    assert set(field_names(cls)) <= set(model.__table__.columns.keys())  # type: ignore[attr-defined]


def test_record_defaults_are_the_column_defaults() -> None:
    job = Job.__table__.columns["chained_runs"]
    kind = Checkpoint.__table__.columns["kind"]
    assert [f.default for f in dataclasses.fields(JobRecord) if f.name == "chained_runs"] == [0]
    assert job.server_default is not None and kind.server_default is not None
    assert [f.default for f in dataclasses.fields(CheckpointRecord) if f.name == "kind"] == [
        CheckpointKind.PERIODIC
    ]


def test_a_dump_fills_in_checkpoint_columns() -> None:
    columns = DUMP.columns()
    assert columns["store_path"] == "/store/x/1"
    assert set(columns) <= set(Checkpoint.__table__.columns.keys())


def test_kind_round_trips_and_chained_requeues_count(catalog: Catalog) -> None:
    (job,) = catalog.track_jobs([NewJob("test", 7, "u", 1, 60, state=JobState.RUNNING)], NOW)
    first = catalog.request_checkpoint(job.id, NOW)
    catalog.mark_valid(first.id, DUMP, NOW)
    admin = catalog.request_checkpoint(job.id, NOW, CheckpointKind.ADMIN)
    catalog.mark_failed(admin.id, "x", NOW)
    in_flight = catalog.request_checkpoint(job.id, NOW)
    # The number reserved for the launcher's own final is the one in flight, if any.
    assert catalog.reserved_seq(job.id) == in_flight.seq == 3
    with pytest.raises(CatalogConflict):
        catalog.record_final(job.id, 3, NOW, dump=DUMP)
    catalog.mark_failed(in_flight.id, "x", NOW)
    adopted = catalog.record_final(job.id, 4, NOW, dump=DUMP)
    assert (adopted.kind, adopted.state) == (CheckpointKind.FINAL, CheckpointState.VALID)
    failed = catalog.record_final(job.id, 5, NOW, dump=None, error="dump failed")
    assert (failed.state, failed.error) == (CheckpointState.FAILED, "dump failed")
    assert [c.kind for c in catalog.checkpoints(job.id)] == [
        CheckpointKind.FINAL,
        CheckpointKind.FINAL,
        CheckpointKind.PERIODIC,
        CheckpointKind.ADMIN,
        CheckpointKind.PERIODIC,
    ]

    catalog.record_requeue(job.id, "walltime chaining, run 1: x", NOW, chained=True)
    after = catalog.record_requeue(job.id, "node1 down", NOW)
    assert (after.restart_count, after.chained_runs) == (2, 1)
    assert catalog.job_summaries()[0].job.chained_runs == 1
