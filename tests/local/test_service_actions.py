"""Admin actions carried out by the service, with a fake Slurm, the fake dump backend
playing the launcher, a real (SQLite) catalog and a controlled clock. The scheduler
is not started: tests call the runner's pass (`actions.run`) and the tasks around it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from slurm_ckpt.db.catalog import ActionRecord, DumpResult
from slurm_ckpt.db.checkpoints import move
from slurm_ckpt.db.states import ActionKind, ActionState, CheckpointKind, CheckpointState, EventKind
from slurm_ckpt.errors import CatalogUnavailable, SlurmRejected
from slurm_ckpt.service.actions import RESTARTED
from slurm_ckpt.service.requests import Outcome
from slurm_ckpt.slurm.fake import FakeSlurm
from slurm_ckpt.store.layout import JobDir
from slurm_ckpt.store.verify import published_images

from .service_fakes import CLUSTER, USER, FakeWorld

K = ActionKind
A = ActionState


class RecordingSlurm(FakeSlurm):
    """The fake Slurm, plus the order of calls and what images.json said at each requeue."""

    def __init__(self, store: Path) -> None:
        super().__init__()
        self.store = store
        self.calls: list[str] = []
        self.published_at_requeue: dict[int, list[int]] = {}
        self.refuse_requeue: str | None = None
        self.refuse_drain: str | None = None

    def signal_batch(self, job_id: int, signal: str = "USR1") -> None:
        self.calls.append(f"signal {job_id}")
        super().signal_batch(job_id, signal)

    def requeue(self, job_id: int, *, hold: bool = False) -> None:
        if self.refuse_requeue:
            raise SlurmRejected(self.refuse_requeue)
        self.calls.append(f"requeue {job_id}")
        self.published_at_requeue[job_id] = published_images(JobDir(self.store, USER, job_id))
        super().requeue(job_id, hold=hold)

    def drain_node(self, node: str, reason: str) -> None:
        if self.refuse_drain:
            raise SlurmRejected(self.refuse_drain)
        self.calls.append(f"drain {node}")
        super().drain_node(node, reason)


@dataclass
class World(FakeWorld):
    """The fake world, with the recording Slurm and a way to submit and follow actions."""

    JOB_INTERVAL: ClassVar[int] = 600

    slurm: RecordingSlurm

    def submit(self, kind: ActionKind, **fields: object) -> ActionRecord:
        return self.catalog.submit_action(
            kind,
            cluster=CLUSTER,
            requested_by="alice",
            now=self.clock(),
            **fields,  # type: ignore[arg-type]
        )

    def action(self, action: ActionRecord) -> ActionRecord:
        return self.catalog.get_action(action.id)

    def tick(self, times: int = 1) -> None:
        """What the scheduler does each second: results collected, then actions advanced."""
        for _ in range(times):
            self.service.collect()
            self.service.actions.run()
            self.clock.advance(1)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    store = tmp_path / "store"
    with World.open(
        store,
        RecordingSlurm(store),
        SLURM_CKPT_RETENTION_KEEP_LAST="2",
        SLURM_CKPT_SERVICE_CHECKPOINT_DEADLINE="5m",
        SLURM_CKPT_SERVICE_MAX_CONCURRENT_CHECKPOINTS="1",
    ) as w:
        yield w


# checkpoint JOB


def test_checkpoint_action_runs_until_its_checkpoint_is_valid(world: World) -> None:
    world.job(201)
    world.service.sync()
    world.silent.add(201)  # answers later, so the action is seen in flight
    action = world.submit(K.CHECKPOINT, slurm_job_id=201)

    world.service.actions.run()
    running = world.action(action)
    assert (running.state, running.progress) == (A.RUNNING, "checkpoint 1 in flight")
    world.answer_late(201)
    world.tick(2)

    done = world.action(action)
    assert done.state == A.DONE, done
    assert done.detail.startswith("checkpoint 1 VALID, ") and " MiB, dump " in done.detail
    assert done.detail.endswith(" s") and done.progress == ""
    (checkpoint,) = world.catalog.checkpoints(world.tracked(201).id)
    assert checkpoint.state == CheckpointState.VALID
    assert world.slurm.signals == [(201, "USR1")]
    assert world.slurm.requeues == []


def test_the_outcome_reaches_the_runner_through_the_service(world: World) -> None:
    world.job(202)
    world.service.sync()
    world.silent.add(202)
    action = world.submit(K.CHECKPOINT, slurm_job_id=202)
    world.service.actions.run()
    job = world.tracked(202)

    # As the checkpointer reports an outcome; the catalog row is still REQUESTED.
    world.service.checkpointer.on_outcome(
        Outcome(
            job,
            1,
            True,
            "",
            total_bytes=3 * 1024 * 1024,
            dump_seconds=0.25,
            kind=CheckpointKind.ADMIN,
        )
    )
    world.service.actions.run()

    assert world.action(action).detail == "checkpoint 1 VALID, 3.0 MiB, dump 0.25 s"


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        ("unknown", "job 203 is not tracked by slurm-ckpt"),
        ("pending", "job 203 is PENDING, not running"),
    ],
)
def test_checkpoint_of_a_job_that_cannot_be_checkpointed_fails_at_once(
    world: World, prepare: str, message: str
) -> None:
    if prepare == "pending":
        world.job(203, state="PENDING", batch_host=None)
        world.service.sync()
    action = world.submit(K.CHECKPOINT, slurm_job_id=203)

    world.service.actions.run()

    failed = world.action(action)
    assert failed.state == A.FAILED and message in failed.detail, failed
    assert world.slurm.signals == []


def test_a_failed_dump_fails_the_checkpoint_action_with_its_reason(world: World) -> None:
    world.job(204)
    world.service.sync()
    world.failing[204] = "inet: Connected TCP socket"
    action = world.submit(K.CHECKPOINT, slurm_job_id=204)

    world.tick(3)

    failed = world.action(action)
    assert failed.state == A.FAILED
    assert failed.detail.startswith("checkpoint 1 FAILED: ")
    assert "Connected TCP socket" in failed.detail


def test_an_undeliverable_request_fails_the_action_with_the_reason(world: World) -> None:
    world.job(205)
    world.service.sync()
    shutil.rmtree(JobDir(world.store, USER, 205).path)  # the job does not run under the launcher
    action = world.submit(K.CHECKPOINT, slurm_job_id=205)

    world.service.actions.run()

    failed = world.action(action)
    assert failed.state == A.FAILED
    assert "request not delivered" in failed.detail and "does not exist" in failed.detail


def test_a_checkpoint_already_in_flight_is_followed_not_doubled(world: World) -> None:
    world.job(206)
    world.service.sync()
    job = world.tracked(206)
    world.silent.add(206)
    world.service.schedule.checkpoint_now(job.id)  # a periodic one, not answered yet
    action = world.submit(K.CHECKPOINT, slurm_job_id=206)

    world.tick()
    assert world.action(action).progress == "checkpoint 1 in flight"
    world.answer_late(206)
    world.tick(2)

    assert world.action(action).detail.startswith("checkpoint 1 VALID")
    assert world.slurm.signals == [(206, "USR1")]
    assert [c.seq for c in world.catalog.checkpoints(job.id)] == [1]


def test_a_checkpoint_another_instance_asked_for_is_read_from_the_catalog(world: World) -> None:
    world.job(207)
    world.service.sync()
    job = world.tracked(207)
    theirs = world.catalog.request_checkpoint(job.id, world.clock())  # another instance's
    action = world.submit(K.CHECKPOINT, slurm_job_id=207)

    world.tick(2)
    assert world.action(action).progress == "checkpoint 1 in flight"
    result = DumpResult("/s/207/1", 5 * 1024 * 1024, 3, 1.5, 0.1, "4.1", "xxh3_128:" + "0" * 32)
    world.catalog.mark_valid(theirs.id, result, world.clock())
    world.tick()

    done = world.action(action)
    assert (done.state, done.detail) == (A.DONE, "checkpoint 1 VALID, 5.0 MiB, dump 1.50 s")
    assert world.slurm.signals == []


def test_a_full_admission_waits_for_a_free_slot(world: World) -> None:
    world.job(208)
    world.job(209)
    world.service.sync()
    world.silent.add(208)
    world.service.schedule.checkpoint_now(world.tracked(208).id)  # holds the only slot
    action = world.submit(K.CHECKPOINT, slurm_job_id=209)

    world.tick(3)
    waiting = world.action(action)
    assert (waiting.state, waiting.progress) == (A.RUNNING, "waiting for a free checkpoint slot")
    world.answer_late(208)  # the slot frees at the next collect
    world.tick(3)

    assert world.action(action).detail.startswith("checkpoint 1 VALID")


# requeue JOB


def test_requeue_with_checkpoint_first_requeues_after_the_image_is_published(
    world: World,
) -> None:
    world.job(210)
    world.service.sync()
    action = world.submit(K.REQUEUE, slurm_job_id=210, options={"checkpoint_first": True})

    world.tick(3)

    done = world.action(action)
    assert done.state == A.DONE, done
    assert done.detail.startswith("checkpoint 1 VALID") and done.detail.endswith("; requeued")
    assert world.slurm.calls == ["signal 210", "requeue 210"]
    assert world.slurm.published_at_requeue[210] == [1]
    job = world.tracked(210)
    assert job.restart_count == 1
    (event,) = world.catalog.events(job.id)
    assert (event.kind, event.detail) == (EventKind.REQUEUED, "requeued by alice (ckpt-admin)")
    world.service.sync()  # Slurm's restart count agrees: no second requeue recorded
    assert world.tracked(210).restart_count == 1


def test_requeue_is_not_done_when_the_checkpoint_first_fails(world: World) -> None:
    world.job(211)
    world.service.sync()
    world.failing[211] = "criu: Can't dump ghost file"
    action = world.submit(K.REQUEUE, slurm_job_id=211, options={"checkpoint_first": True})

    world.tick(3)

    failed = world.action(action)
    assert failed.state == A.FAILED and "ghost file" in failed.detail
    assert world.slurm.requeues == []
    assert world.tracked(211).restart_count == 0


def test_requeue_without_checkpoint_resumes_from_the_newest_image(world: World) -> None:
    world.job(212)
    world.service.sync()
    world.service.schedule.checkpoint_now(world.tracked(212).id)
    world.service.collect()
    action = world.submit(K.REQUEUE, slurm_job_id=212)

    world.tick()

    done = world.action(action)
    assert (done.state, done.detail) == (
        A.DONE,
        "no new checkpoint; it resumes from checkpoint 1; requeued",
    )
    assert world.slurm.requeues == [212]
    assert len(world.slurm.signals) == 1


def test_a_requeue_slurm_refuses_fails_with_slurms_reason(world: World) -> None:
    world.job(213)
    world.service.sync()
    world.slurm.refuse_requeue = "Requested operation is presently disabled"
    action = world.submit(K.REQUEUE, slurm_job_id=213)

    world.tick()

    failed = world.action(action)
    assert failed.state == A.FAILED
    assert "requeue failed: Requested operation is presently disabled" in failed.detail
    assert world.tracked(213).restart_count == 0


# drain NODE


def test_drain_drains_first_then_moves_every_job_of_the_node(world: World) -> None:
    world.job(214)
    world.job(215)
    world.job(216, batch_host="node2", node_list="node2")
    world.service.sync()
    world.silent.add(215)  # its dump is slow
    action = world.submit(K.DRAIN, node="node1", options={"reason": "disk failing"})

    world.tick(2)
    moving = world.action(action)
    assert (moving.state, moving.progress) == (A.RUNNING, "1 of 2 jobs moved")
    world.answer_late(215)
    world.tick(2)

    done = world.action(action)
    assert done.state == A.DONE, done
    assert done.detail.startswith("node1 drained; 2 of 2 jobs moved; moved: 214 (checkpoint 1")
    assert world.slurm.calls[0] == "drain node1"
    assert world.slurm.nodes["node1"].reason == "disk failing"
    assert sorted(world.slurm.requeues) == [214, 215]
    assert world.slurm.published_at_requeue == {214: [1], 215: [1]}
    assert (216, "USR1") not in world.slurm.signals
    events = world.catalog.events(world.tracked(214).id)
    assert [e.detail for e in events] == ["requeued by alice (ckpt-admin drain node1)"]


def test_drain_leaves_a_job_that_cannot_be_checkpointed_running(world: World) -> None:
    world.job(217)
    world.job(218)
    world.service.sync()
    world.failing[218] = "inet: Connected TCP socket"
    action = world.submit(K.DRAIN, node="node1")

    world.tick(3)

    failed = world.action(action)
    assert failed.state == A.FAILED
    assert "1 of 2 jobs moved" in failed.detail
    assert "left running there: 218 (checkpoint 1 FAILED: " in failed.detail
    assert "Connected TCP socket" in failed.detail
    assert world.slurm.requeues == [217]
    assert world.slurm.nodes["node1"].reason == "drained by alice (ckpt-admin)"


def test_a_drain_planned_while_the_catalog_is_away_is_planned_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.job(230)
    world.service.sync()
    action = world.submit(K.DRAIN, node="node1")
    real = world.catalog.jobs_for_sync
    calls = []

    def away_once(cluster: str, ids: object) -> object:
        calls.append(cluster)
        if len(calls) == 1:
            raise CatalogUnavailable("catalog unreachable")
        return real(cluster, ids)  # type: ignore[arg-type]

    monkeypatch.setattr(world.catalog, "jobs_for_sync", away_once)
    world.tick()
    assert world.action(action).state == A.RUNNING  # not "no checkpointed job was running"
    world.tick(3)

    done = world.action(action)
    assert done.state == A.DONE and "1 of 1 jobs moved" in done.detail, done
    assert world.slurm.requeues == [230]


def test_drain_of_an_empty_node_is_done_at_once(world: World) -> None:
    world.job(219, batch_host="node2", node_list="node2")
    world.service.sync()
    action = world.submit(K.DRAIN, node="node1")

    world.tick()

    done = world.action(action)
    assert (done.state, done.detail) == (
        A.DONE,
        "node1 drained; no checkpointed job was running there",
    )
    assert world.slurm.signals == []


def test_a_drain_slurm_refuses_touches_no_job(world: World) -> None:
    world.job(220)
    world.service.sync()
    world.slurm.refuse_drain = "Invalid node name specified"
    action = world.submit(K.DRAIN, node="node9")

    world.tick()

    failed = world.action(action)
    assert (failed.state, failed.detail) == (
        A.FAILED,
        "node9 not drained: Invalid node name specified",
    )
    assert world.slurm.signals == [] and world.slurm.requeues == []


# gc


def test_gc_applies_retention_and_finishes_interrupted_deletions(world: World) -> None:
    world.job(221)
    world.job(222)
    world.service.sync()
    keep_all = world.make_service(SLURM_CKPT_RETENTION_KEEP_LAST="10")
    for _ in range(4):
        keep_all.schedule.checkpoint_now(world.tracked(221).id)
        keep_all.collect()
        world.clock.advance(60)
    keep_all.schedule.checkpoint_now(world.tracked(222).id)
    keep_all.collect()
    # A deletion a crash cut off: marked obsolete, files still there.
    (first_of_222,) = world.catalog.checkpoints(world.tracked(222).id)
    with world.catalog.db.session(write=True) as session:
        move(session, first_of_222.id, CheckpointState.OBSOLETE)
    sizes = {
        c.id: c.total_bytes or 0
        for job in (221, 222)
        for c in world.catalog.checkpoints(world.tracked(job).id)
    }
    action = world.submit(K.GC)

    world.tick()

    done = world.action(action)
    deleted = [
        c
        for job in (221, 222)
        for c in world.catalog.checkpoints(world.tracked(job).id)
        if c.state == CheckpointState.DELETED
    ]
    assert sorted(c.seq for c in deleted) == [1, 1, 2]  # keep_last=2 for 221, all of 222
    size = sum(sizes[c.id] for c in deleted)
    assert size > 0
    assert (done.state, done.detail) == (
        A.DONE,
        f"deleted 3 images, {size / 1024 / 1024:.1f} MiB (2 jobs looked at)",
    )
    assert JobDir(world.store, USER, 221).committed_seqs() == [3, 4]
    assert JobDir(world.store, USER, 222).committed_seqs() == []


# restarts of the service


def test_a_restarted_service_fails_what_it_left_running_and_runs_new_actions(
    world: World,
) -> None:
    world.job(223)
    world.service.sync()
    world.silent.add(223)
    left = world.submit(K.REQUEUE, slurm_job_id=223, options={"checkpoint_first": True})
    world.service.actions.run()
    assert world.action(left).progress == "checkpoint 1 in flight"
    # The service dies; a new instance starts.
    fresh = world.make_service()
    world.service = fresh
    later = world.submit(K.GC)

    fresh.recover()
    fresh.actions.run()

    failed = world.action(left)
    assert failed.state == A.FAILED
    assert failed.detail == f"{RESTARTED} (it had got to: checkpoint 1 in flight)"
    assert world.action(later).state == A.DONE
    assert world.slurm.requeues == []


def test_a_stopping_service_claims_nothing(world: World) -> None:
    action = world.submit(K.GC)
    world.service.stopped.set()

    world.service.actions.run()

    assert world.action(action).state == A.PENDING
