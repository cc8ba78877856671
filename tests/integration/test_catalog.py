"""The catalog suite: every test runs on SQLite and on PostgreSQL (see catalog_fixtures)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import bindparam, delete, insert, select, text, update

from slurm_ckpt.db.catalog import Catalog, CheckpointRecord, DumpResult
from slurm_ckpt.db.models import Checkpoint, Event, Job, UTCDateTime
from slurm_ckpt.db.retention import RetentionPolicy
from slurm_ckpt.db.session import Database
from slurm_ckpt.db.states import CheckpointKind, CheckpointState, EventKind, JobState
from slurm_ckpt.errors import (
    CatalogConflict,
    CatalogError,
    CatalogNotFound,
    IllegalTransition,
)
from slurm_ckpt.exchange import FINAL_BLOCK

from .catalog_fixtures import (  # noqa: F401 (fixtures: pytest finds them by name)
    NOW,
    catalog_fixture,
    catalog_url_fixture,
    database_fixture,
    empty_url_fixture,
    mark_obsolete,
    new_job,
    open_instance_fixture,
    postgres_catalog_url_fixture,
    postgres_server_fixture,
    track,
)

S = CheckpointState


def dump(seq: int = 1, size: int = 1000) -> DumpResult:
    return DumpResult(
        store_path=f"/store/test/1001/{seq}",
        total_bytes=size,
        file_count=7,
        dump_seconds=2.5,
        freeze_seconds=0.4,
        criu_version="4.1",
        manifest_checksum="xxh3_128:" + "a" * 32,
    )


def valid_checkpoint(catalog: Catalog, job_id: int, at: datetime, size: int = 1000) -> int:
    cp = catalog.request_checkpoint(job_id, at)
    catalog.mark_valid(cp.id, dump(cp.seq, size), at + timedelta(seconds=5))
    return cp.id


def count(database: Database, model: type[Job] | type[Checkpoint] | type[Event]) -> int:
    with database.session() as session:
        return len(session.scalars(select(model)).all())


# Jobs


def test_track_and_find_a_job(catalog: Catalog) -> None:
    job = track(catalog, new_job(batch_host="node1"), NOW)
    assert job.id > 0
    assert catalog.find_job("test", 1001) == job
    assert catalog.get_job(job.id) == job
    assert (job.state, job.restart_count, job.batch_host) == (JobState.PENDING, 0, "node1")
    assert job.uncheckpointable_reason is None
    assert catalog.find_job("test", 1002) is None
    assert catalog.find_job("other", 1001) is None


def test_times_come_back_aware_utc_whatever_zone_went_in(catalog: Catalog) -> None:
    plus_two = NOW.astimezone(timezone(timedelta(hours=2)))
    job = track(catalog, new_job(), plus_two)
    stored = catalog.get_job(job.id)
    assert stored.created_at == NOW
    assert stored.created_at.tzinfo is UTC
    assert stored.created_at.utcoffset() == timedelta(0)


def test_naive_datetime_is_refused(catalog: Catalog, database: Database) -> None:
    with pytest.raises(CatalogError, match="naive datetime"):
        track(catalog, new_job(), datetime(2026, 3, 1, 12, 0))
    assert count(database, Job) == 0


def test_tracking_a_job_twice_is_a_conflict(catalog: Catalog) -> None:
    track(catalog, new_job(), NOW)
    with pytest.raises(CatalogConflict, match="constraint"):
        track(catalog, new_job(), NOW)
    # The same Slurm job id on another cluster is another job.
    track(catalog, new_job(cluster="other"), NOW)


def test_a_batch_with_one_bad_job_stores_nothing(catalog: Catalog, database: Database) -> None:
    track(catalog, new_job(5), NOW)
    with pytest.raises(CatalogConflict):
        catalog.track_jobs([new_job(1), new_job(2), new_job(5), new_job(6)], NOW)
    assert [s.job.slurm_job_id for s in catalog.job_summaries()] == [5]
    assert count(database, Job) == 1


def test_a_failed_transaction_leaves_nothing_behind(catalog: Catalog, database: Database) -> None:
    job = track(catalog, new_job(), NOW)
    with pytest.raises(RuntimeError), database.session(write=True) as session:
        session.add(Event(job_id=job.id, kind=EventKind.RESTORED, detail="x", created_at=NOW))
        session.execute(update(Job).values(restart_count=9))
        session.flush()
        raise RuntimeError("crash between two writes")
    assert catalog.events(job.id) == []
    assert catalog.get_job(job.id).restart_count == 0


def test_constraint_checks_hold_in_the_database(database: Database) -> None:
    row = {
        "cluster": "test",
        "slurm_job_id": 1,
        "user_name": "u",
        "uid": 1,
        "interval_seconds": 0,
        "state": "RUNNING",
        "restart_count": 0,
        "created_at": NOW,
        "updated_at": NOW,
    }
    with pytest.raises(CatalogConflict), database.session(write=True) as session:
        session.execute(insert(Job).values(**row))
    assert count(database, Job) == 0
    with database.session(write=True) as session:
        session.execute(insert(Job).values(**{**row, "interval_seconds": 60}))
    # Raw SQL: the model's enum type would refuse the value before the database sees it.
    with pytest.raises(CatalogConflict), database.session(write=True) as session:
        session.execute(text("UPDATE jobs SET state = 'BOGUS'"))
    with database.session() as session:
        assert session.scalars(select(Job.state)).all() == [JobState.RUNNING]


def test_update_job_and_uncheckpointable_reason(catalog: Catalog) -> None:
    job = track(catalog, new_job(), NOW)
    later = NOW + timedelta(minutes=1)
    updated = catalog.update_job(job.id, later, state=JobState.RUNNING, batch_host="node2")
    assert (updated.state, updated.batch_host, updated.updated_at) == (
        JobState.RUNNING,
        "node2",
        later,
    )
    assert updated.created_at == NOW
    marked = catalog.mark_uncheckpointable(job.id, "socket to outside", later)
    assert marked.uncheckpointable_reason == "socket to outside"
    assert marked.state == JobState.RUNNING
    with pytest.raises(CatalogNotFound):
        catalog.update_job(job.id + 100, later, state=JobState.RUNNING)
    with pytest.raises(CatalogNotFound):
        catalog.get_job(job.id + 100)


def test_requeue_counts_a_restart_and_records_an_event(catalog: Catalog) -> None:
    job = track(catalog, new_job(), NOW)
    catalog.record_requeue(job.id, "node1 down", NOW + timedelta(minutes=1))
    after = catalog.record_requeue(job.id, "preempted", NOW + timedelta(minutes=2))
    assert after.restart_count == 2
    events = catalog.events(job.id)
    assert [(e.kind, e.detail) for e in events] == [
        (EventKind.REQUEUED, "preempted"),
        (EventKind.REQUEUED, "node1 down"),
    ]
    with pytest.raises(CatalogNotFound):
        catalog.record_requeue(job.id + 100, "x", NOW)


def test_chained_requeues_count_chained_runs_with_the_restart(catalog: Catalog) -> None:
    job = track(catalog, new_job(), NOW)
    assert job.chained_runs == 0
    catalog.record_requeue(job.id, "walltime chaining, run 1: x", NOW, chained=True)
    catalog.record_requeue(job.id, "node1 down", NOW)
    after = catalog.record_requeue(job.id, "walltime chaining, run 2: y", NOW, chained=True)
    assert (after.restart_count, after.chained_runs) == (3, 2)
    assert catalog.get_job(job.id) == after
    assert catalog.jobs_for_sync("test", [1001])[1001].chained_runs == 2
    (summary,) = catalog.job_summaries()
    assert summary.job == after
    assert len(catalog.events(job.id)) == 3
    with pytest.raises(CatalogNotFound):
        catalog.record_requeue(job.id + 100, "x", NOW, chained=True)
    assert catalog.get_job(job.id).chained_runs == 2


def test_events_are_counted_by_kind_and_detail_prefix(catalog: Catalog) -> None:
    job = track(catalog, new_job(), NOW)
    other = track(catalog, new_job(slurm_job_id=4243), NOW)
    for detail in ("walltime chaining, run 1: x", "walltime chaining, run 2: y", "node1 down"):
        catalog.record_requeue(job.id, detail, NOW)
    catalog.record_requeue(other.id, "walltime chaining, run 1: z", NOW)
    catalog.record_event(job.id, EventKind.RESTORED, NOW, detail="walltime chaining, run 9")
    assert catalog.count_events(job.id, EventKind.REQUEUED, "walltime chaining, run") == 2
    assert catalog.count_events(job.id, EventKind.REQUEUED) == 3
    # The prefix is literal text, not a LIKE pattern.
    assert catalog.count_events(job.id, EventKind.REQUEUED, "walltime%") == 0
    assert catalog.count_events(job.id, EventKind.REQUEUED, "node_ down") == 0


def test_events_newest_first_with_limit(catalog: Catalog) -> None:
    job = track(catalog, new_job(), NOW)
    kinds = [EventKind.RESTORE_FAILED, EventKind.FELL_BACK, EventKind.RESTORED]
    for minute, kind in enumerate(kinds):
        catalog.record_event(
            job.id, kind, NOW + timedelta(minutes=minute), detail=f"m{minute}", checkpoint_seq=3
        )
    events = catalog.events(job.id)
    assert [e.kind for e in events] == kinds[::-1]
    assert events[0].checkpoint_seq == 3
    assert events[0].created_at == NOW + timedelta(minutes=2)
    assert len(catalog.events(job.id, limit=2)) == 2


def test_an_event_for_an_unknown_job_is_refused(catalog: Catalog) -> None:
    # Foreign keys are enforced on SQLite too (PRAGMA foreign_keys on every connection).
    with pytest.raises(CatalogConflict):
        catalog.record_event(999, EventKind.FRESH_START, NOW)


def test_deleting_a_job_deletes_its_checkpoints_and_events(
    catalog: Catalog, database: Database
) -> None:
    job = track(catalog, new_job(), NOW)
    valid_checkpoint(catalog, job.id, NOW)
    catalog.record_requeue(job.id, "x", NOW)
    with database.session(write=True) as session:
        session.execute(delete(Job).where(Job.id == job.id))
    assert (count(database, Checkpoint), count(database, Event)) == (0, 0)


# Checkpoints and their states


def test_request_numbers_checkpoints_per_job(catalog: Catalog) -> None:
    a = track(catalog, new_job(1), NOW)
    b = track(catalog, new_job(2), NOW)
    catalog.record_requeue(a.id, "x", NOW)
    seqs = []
    for _ in range(3):
        cp = catalog.request_checkpoint(a.id, NOW)
        seqs.append(cp.seq)
        catalog.mark_failed(cp.id, "dump failed", NOW)
    assert seqs == [1, 2, 3]
    first_b = catalog.request_checkpoint(b.id, NOW)
    assert first_b.seq == 1
    assert first_b.job_restart_count == 0
    assert catalog.get_checkpoint(first_b.id).state == S.REQUESTED
    assert catalog.checkpoints(a.id)[0].job_restart_count == 1


def test_checkpoint_kind_round_trips(catalog: Catalog, database: Database) -> None:
    job = track(catalog, new_job(), NOW)
    periodic = catalog.request_checkpoint(job.id, NOW)
    catalog.mark_valid(periodic.id, dump(periodic.seq), NOW)
    admin = catalog.request_checkpoint(job.id, NOW, CheckpointKind.ADMIN)
    catalog.mark_failed(admin.id, "x", NOW)
    final = catalog.request_checkpoint(job.id, NOW, kind=CheckpointKind.FINAL)
    catalog.mark_valid(final.id, dump(final.seq), NOW)
    assert catalog.reserved_seq(job.id) == 4
    with pytest.raises(CatalogConflict, match="not among its reserved"):
        catalog.record_final(job.id, 4 + FINAL_BLOCK, NOW, dump=dump(20))
    adopted = catalog.record_final(job.id, 4, NOW, dump=dump(4))
    assert catalog.reserved_seq(job.id) == 5
    assert [periodic.kind, admin.kind, final.kind, adopted.kind] == [
        CheckpointKind.PERIODIC,
        CheckpointKind.ADMIN,
        CheckpointKind.FINAL,
        CheckpointKind.FINAL,  # the launcher's own final checkpoint
    ]
    assert [(c.seq, c.kind) for c in catalog.checkpoints(job.id)] == [
        (4, CheckpointKind.FINAL),
        (3, CheckpointKind.FINAL),
        (2, CheckpointKind.ADMIN),
        (1, CheckpointKind.PERIODIC),
    ]
    newest = catalog.newest_valid(job.id)
    assert newest is not None and newest.kind == CheckpointKind.FINAL
    assert catalog.get_checkpoint(admin.id).kind == CheckpointKind.ADMIN
    with database.session() as session:
        stored = session.execute(text("SELECT kind FROM checkpoints ORDER BY seq")).scalars()
        assert list(stored) == ["periodic", "admin", "final", "final"]


def test_the_database_refuses_an_unknown_kind_and_fills_in_the_default(
    catalog: Catalog, database: Database
) -> None:
    job = track(catalog, new_job(), NOW)
    cp = catalog.request_checkpoint(job.id, NOW, CheckpointKind.ADMIN)
    with pytest.raises(CatalogConflict), database.session(write=True) as session:
        session.execute(text("UPDATE checkpoints SET kind = 'bogus'"))
    with pytest.raises(CatalogConflict), database.session(write=True) as session:
        session.execute(text("UPDATE jobs SET chained_runs = -1"))
    catalog.mark_failed(cp.id, "x", NOW)
    # Rows written without them (an older writer, raw SQL) get the server defaults.
    at = bindparam("at", NOW, type_=UTCDateTime())
    with database.session(write=True) as session:
        session.execute(
            text(
                "INSERT INTO jobs (cluster, slurm_job_id, user_name, uid, interval_seconds, "
                "state, restart_count, created_at, updated_at) "
                "VALUES ('test', 7, 'u', 1, 60, 'RUNNING', 0, :at, :at)"
            ).bindparams(at)
        )
        session.execute(
            text(
                "INSERT INTO checkpoints (job_id, seq, state, job_restart_count, created_at) "
                "VALUES (:job, 2, 'REQUESTED', 0, :at)"
            ).bindparams(at, job=job.id)
        )
    assert catalog.checkpoints(job.id)[0].kind == CheckpointKind.PERIODIC
    raw = catalog.find_job("test", 7)
    assert raw is not None and raw.chained_runs == 0


def test_request_for_an_unknown_job(catalog: Catalog) -> None:
    with pytest.raises(CatalogNotFound):
        catalog.request_checkpoint(42, NOW)
    with pytest.raises(CatalogNotFound):
        catalog.get_checkpoint(42)


def test_only_one_request_in_flight_per_job(catalog: Catalog) -> None:
    job = track(catalog, new_job(), NOW)
    first = catalog.request_checkpoint(job.id, NOW)
    with pytest.raises(CatalogConflict, match="in flight"):
        catalog.request_checkpoint(job.id, NOW)
    catalog.mark_valid(first.id, dump(), NOW)
    assert catalog.request_checkpoint(job.id, NOW).seq == 2


def test_database_refuses_a_second_requested_row_and_a_duplicate_seq(
    catalog: Catalog, database: Database
) -> None:
    # Bypass the catalog's own check: the partial unique index must hold on its own.
    job = track(catalog, new_job(), NOW)
    first = catalog.request_checkpoint(job.id, NOW)
    row = {"job_id": job.id, "job_restart_count": 0, "created_at": NOW}
    with pytest.raises(CatalogConflict), database.session(write=True) as session:
        session.execute(insert(Checkpoint).values(seq=2, state="REQUESTED", **row))
    with pytest.raises(CatalogConflict), database.session(write=True) as session:
        session.execute(insert(Checkpoint).values(seq=1, state="FAILED", completed_at=NOW, **row))
    catalog.mark_failed(first.id, "x", NOW)
    with database.session(write=True) as session:
        session.execute(insert(Checkpoint).values(seq=2, state="REQUESTED", **row))


def test_database_refuses_a_valid_row_without_manifest(
    catalog: Catalog, database: Database
) -> None:
    job = track(catalog, new_job(), NOW)
    cp = catalog.request_checkpoint(job.id, NOW)
    with pytest.raises(CatalogConflict), database.session(write=True) as session:
        session.execute(
            update(Checkpoint)
            .where(Checkpoint.id == cp.id)
            .values(state="VALID", completed_at=NOW, store_path="/x", total_bytes=1, file_count=1)
        )
    assert catalog.get_checkpoint(cp.id).state == S.REQUESTED


def test_mark_valid_records_the_dump(catalog: Catalog) -> None:
    job = track(catalog, new_job(), NOW)
    cp = catalog.request_checkpoint(job.id, NOW)
    done = NOW + timedelta(seconds=30)
    valid = catalog.mark_valid(cp.id, dump(size=123456789012), done)
    assert valid == CheckpointRecord(
        id=cp.id,
        job_id=job.id,
        seq=1,
        state=S.VALID,
        store_path="/store/test/1001/1",
        total_bytes=123456789012,
        file_count=7,
        dump_seconds=2.5,
        freeze_seconds=0.4,
        criu_version="4.1",
        manifest_checksum="xxh3_128:" + "a" * 32,
        error=None,
        job_restart_count=0,
        created_at=NOW,
        completed_at=done,
        kind=CheckpointKind.PERIODIC,
    )
    assert catalog.get_checkpoint(cp.id) == valid


def test_mark_failed_records_the_reason(catalog: Catalog) -> None:
    job = track(catalog, new_job(), NOW)
    cp = catalog.request_checkpoint(job.id, NOW)
    failed = catalog.mark_failed(cp.id, "criu: unsupported socket", NOW + timedelta(minutes=1))
    assert (failed.state, failed.error) == (S.FAILED, "criu: unsupported socket")
    assert failed.completed_at == NOW + timedelta(minutes=1)
    assert catalog.newest_valid(job.id) is None


def test_the_whole_life_of_a_checkpoint(catalog: Catalog) -> None:
    job = track(catalog, new_job(), NOW)
    cp_id = valid_checkpoint(catalog, job.id, NOW)
    assert catalog.get_checkpoint(cp_id).state == S.VALID
    newer = valid_checkpoint(catalog, job.id, NOW + timedelta(hours=1))
    # Retention is the only way to OBSOLETE; the newer image is kept.
    decided = catalog.apply_retention(job.id, RetentionPolicy(keep_last=1), NOW)
    assert [c.id for c in decided.obsolete] == [cp_id]
    assert catalog.get_checkpoint(cp_id).state == S.OBSOLETE
    assert catalog.mark_deleted(cp_id).state == S.DELETED
    assert catalog.get_checkpoint(newer).state == S.VALID


def test_a_failed_checkpoint_whose_late_image_verified_becomes_valid(catalog: Catalog) -> None:
    job = track(catalog, new_job(), NOW)
    cp = catalog.request_checkpoint(job.id, NOW)
    catalog.mark_failed(cp.id, "no result within 900s", NOW)
    late = catalog.mark_valid(cp.id, dump(cp.seq), NOW)
    assert late.state == S.VALID and late.error is None
    assert [c.seq for c in catalog.valid_checkpoints(job.id)] == [cp.seq]


@pytest.mark.parametrize(
    ("reach", "target"),
    [
        ((), S.OBSOLETE),
        ((), S.DELETED),
        ((S.VALID,), S.FAILED),
        ((S.VALID,), S.VALID),
        ((S.VALID,), S.DELETED),
        ((S.VALID, S.OBSOLETE), S.VALID),
        ((S.VALID, S.OBSOLETE, S.DELETED), S.OBSOLETE),
    ],
)
def test_an_illegal_transition_raises_and_changes_nothing(
    catalog: Catalog, reach: tuple[S, ...], target: S
) -> None:
    job = track(catalog, new_job(), NOW)
    cp = catalog.request_checkpoint(job.id, NOW)
    moves: dict[S, Callable[[int], CheckpointRecord]] = {
        S.VALID: lambda i: catalog.mark_valid(i, dump(), NOW),
        S.FAILED: lambda i: catalog.mark_failed(i, "x", NOW),
        S.OBSOLETE: lambda i: mark_obsolete(catalog, i),
        S.DELETED: catalog.mark_deleted,
    }
    for state in reach:
        moves[state](cp.id)
    before = catalog.get_checkpoint(cp.id)
    with pytest.raises(IllegalTransition) as info:
        moves[target](cp.id)
    assert (info.value.current, info.value.target) == (before.state.value, target.value)
    assert info.value.checkpoint_id == cp.id
    assert catalog.get_checkpoint(cp.id) == before


# Two service instances on one catalog


@pytest.mark.parametrize("instances", [4])
def test_instances_racing_to_validate_one_checkpoint(
    catalog: Catalog, open_instance: Callable[..., Catalog], instances: int
) -> None:
    job = track(catalog, new_job(), NOW)
    cp = catalog.request_checkpoint(job.id, NOW)
    outcomes = _race(
        [open_instance() for _ in range(instances)],
        lambda other, n: other.mark_valid(cp.id, dump(size=n), NOW),
    )
    winners = [o for o in outcomes if isinstance(o, CheckpointRecord)]
    assert len(winners) == 1, outcomes
    assert all(isinstance(o, CatalogConflict) for o in outcomes if o not in winners), outcomes
    assert catalog.get_checkpoint(cp.id).total_bytes == winners[0].total_bytes


def test_instances_racing_to_request_a_checkpoint_of_one_job(
    catalog: Catalog, open_instance: Callable[..., Catalog]
) -> None:
    job = track(catalog, new_job(), NOW)
    outcomes = _race(
        [open_instance() for _ in range(4)], lambda other, n: other.request_checkpoint(job.id, NOW)
    )
    assert len([o for o in outcomes if isinstance(o, CheckpointRecord)]) == 1, outcomes
    assert all(isinstance(o, CheckpointRecord | CatalogConflict) for o in outcomes), outcomes
    assert [c.seq for c in catalog.checkpoints(job.id)] == [1]


def test_instances_counting_restarts_lose_none(
    catalog: Catalog, open_instance: Callable[..., Catalog]
) -> None:
    job = track(catalog, new_job(), NOW)
    outcomes = _race(
        [open_instance() for _ in range(4)],
        lambda other, n: other.record_requeue(job.id, str(n), NOW, chained=n % 2 == 0),
    )
    assert not [o for o in outcomes if isinstance(o, BaseException)], outcomes
    assert catalog.get_job(job.id).restart_count == 4
    assert catalog.get_job(job.id).chained_runs == 2
    assert len(catalog.events(job.id)) == 4


def _race(instances: list[Catalog], action: Callable[[Catalog, int], object]) -> list[object]:
    start = threading.Barrier(len(instances))
    outcomes: list[object] = [None] * len(instances)

    def run(n: int) -> None:
        start.wait()
        try:
            outcomes[n] = action(instances[n], n)
        except CatalogError as err:
            outcomes[n] = err

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(instances))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


# Queries


def test_newest_valid_and_valid_newest_first(catalog: Catalog) -> None:
    job = track(catalog, new_job(), NOW)
    other = track(catalog, new_job(2), NOW)
    valid_checkpoint(catalog, other.id, NOW + timedelta(hours=9))
    ids = [valid_checkpoint(catalog, job.id, NOW + timedelta(hours=h)) for h in range(4)]
    catalog.apply_retention(job.id, RetentionPolicy(keep_last=3), NOW)  # ids[0] obsolete
    catalog.mark_failed(catalog.request_checkpoint(job.id, NOW + timedelta(hours=5)).id, "x", NOW)
    catalog.request_checkpoint(job.id, NOW + timedelta(hours=6))
    newest = catalog.newest_valid(job.id)
    assert newest is not None
    assert (newest.id, newest.seq) == (ids[3], 4)
    assert [c.id for c in catalog.valid_checkpoints(job.id)] == [ids[3], ids[2], ids[1]]
    assert [c.seq for c in catalog.checkpoints(job.id)] == [6, 5, 4, 3, 2, 1]
    assert [c.seq for c in catalog.checkpoints(job.id, states=[S.FAILED, S.OBSOLETE])] == [5, 1]


def test_job_summaries_in_one_query(catalog: Catalog) -> None:
    busy = track(catalog, new_job(20, user_name="ckpt-bob"), NOW)
    idle = track(catalog, new_job(10), NOW)
    elsewhere = track(catalog, new_job(5, cluster="zeta"), NOW)
    for hour, size in [(1, 100), (2, 250), (3, 4_000_000_000)]:
        valid_checkpoint(catalog, busy.id, NOW + timedelta(hours=hour), size)
    catalog.apply_retention(busy.id, RetentionPolicy(keep_last=2), NOW)  # the oldest one
    catalog.mark_failed(catalog.request_checkpoint(busy.id, NOW).id, "x", NOW)
    catalog.request_checkpoint(busy.id, NOW)
    catalog.record_requeue(busy.id, "x", NOW)
    valid_checkpoint(catalog, elsewhere.id, NOW)

    summaries = catalog.job_summaries()
    assert [s.job.id for s in summaries] == [idle.id, busy.id, elsewhere.id]
    by_id = {s.job.id: s for s in summaries}
    assert by_id[busy.id].valid_count == 2
    assert by_id[busy.id].valid_bytes == 4_000_000_250
    assert by_id[busy.id].last_valid_at == NOW + timedelta(hours=3, seconds=5)
    assert by_id[busy.id].last_valid_at.tzinfo is UTC  # type: ignore[union-attr]
    assert by_id[busy.id].restart_count == 1
    assert (by_id[idle.id].valid_count, by_id[idle.id].valid_bytes) == (0, 0)
    assert by_id[idle.id].last_valid_at is None
    assert [s.job.id for s in catalog.job_summaries(cluster="zeta")] == [elsewhere.id]
    assert [s.job.id for s in catalog.job_summaries(user_name="ckpt-bob")] == [busy.id]


def test_stuck_requests_are_those_older_than_the_deadline(catalog: Catalog) -> None:
    ids = []
    for n, minutes in enumerate([0, 10, 20, 29]):
        job = track(catalog, new_job(n + 1), NOW)
        ids.append(catalog.request_checkpoint(job.id, NOW + timedelta(minutes=minutes)).id)
    catalog.mark_failed(ids[0], "x", NOW)
    now = NOW + timedelta(minutes=30)
    stuck = catalog.stuck_requests(timedelta(minutes=10), now)
    assert [c.id for c in stuck] == [ids[1]]
    assert [c.id for c in catalog.stuck_requests(timedelta(seconds=30), now)] == ids[1:]


def test_apply_retention_marks_obsolete_and_keeps_the_newest(catalog: Catalog) -> None:
    job = track(catalog, new_job(), NOW)
    ids = [valid_checkpoint(catalog, job.id, NOW + timedelta(hours=h)) for h in range(5)]
    failed = catalog.request_checkpoint(job.id, NOW)
    catalog.mark_failed(failed.id, "x", NOW)
    decided = catalog.apply_retention(job.id, RetentionPolicy(keep_last=2), NOW)
    assert [c.id for c in decided.kept] == [ids[4], ids[3]]
    assert {c.id for c in decided.obsolete} == {failed.id, *ids[:3]}
    assert [c.id for c in catalog.valid_checkpoints(job.id)] == [ids[4], ids[3]]
    obsolete = catalog.checkpoints(job.id, states=[S.OBSOLETE])
    assert {c.id for c in obsolete} == {failed.id, *ids[:3]}
    again = catalog.apply_retention(job.id, RetentionPolicy(keep_last=2), NOW)
    assert again.obsolete == ()


def test_a_query_on_a_database_without_schema_says_to_upgrade(empty_url: str) -> None:
    from slurm_ckpt.db.session import open_database

    db = open_database(empty_url)
    try:
        with pytest.raises(CatalogError, match="ckpt-admin db upgrade"):
            Catalog(db).job_summaries()
    finally:
        db.dispose()


def test_sqlite_connections_use_wal_and_foreign_keys(catalog_url: str, database: Database) -> None:
    with database.session() as session:
        if database.dialect == "sqlite":
            assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert session.execute(text("PRAGMA foreign_keys")).scalar() == 1
        else:
            assert catalog_url.startswith("postgresql+psycopg://")
            assert session.execute(text("SHOW server_version_num")).scalar() is not None
