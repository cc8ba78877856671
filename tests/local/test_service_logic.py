"""The service's own logic with a fake Slurm, the fake dump backend playing the
launcher, a real (SQLite) catalog and a controlled clock. The scheduler is not
started: tests call the tasks the scheduler would run."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from slurm_ckpt.db.catalog import JobRecord
from slurm_ckpt.db.states import CheckpointKind, CheckpointState, EventKind, JobState
from slurm_ckpt.errors import CatalogUnavailable, SlurmUnavailable
from slurm_ckpt.service.requests import Sent
from slurm_ckpt.slurm.fake import FakeSlurm
from slurm_ckpt.store.layout import JobDir
from slurm_ckpt.store.verify import published_images

from .service_fakes import START, USER, FakeWorld


@pytest.fixture
def world(tmp_path: Path) -> Iterator[FakeWorld]:
    with FakeWorld.open(
        tmp_path / "store",
        FakeSlurm(),
        SLURM_CKPT_RETENTION_KEEP_LAST="2",
        SLURM_CKPT_SERVICE_GIVE_UP_AFTER="3",
        SLURM_CKPT_SERVICE_FAILURE_BACKOFF="1s",
        SLURM_CKPT_SERVICE_CHECKPOINT_DEADLINE="5m",
    ) as world:
        yield world


def seen_running(world: FakeWorld, job_id: int) -> tuple[JobRecord, JobDir]:
    """A running job, once the service's sync has seen it: its record and its folder."""
    world.job(job_id)
    world.service.sync()
    return world.tracked(job_id), JobDir(world.store, USER, job_id)


def test_a_running_job_is_tracked_and_scheduled_one_interval_after_its_start(
    world: FakeWorld,
) -> None:
    world.job(101, interval=600)
    world.clock.advance(30)

    world.service.sync()

    record = world.tracked(101)
    assert (record.state, record.interval_seconds, record.uid) == (
        JobState.RUNNING,
        600,
        os.getuid(),
    )
    scheduled = world.service.schedule.scheduler.get_job(f"ckpt-{record.id}")
    assert scheduled is not None
    due = scheduled.next_run_time
    # One interval after the start, plus a jitter of at most 10 % of it.
    assert START + timedelta(seconds=600) <= due <= START + timedelta(seconds=660)


def test_checkpoint_request_result_valid_and_published(world: FakeWorld) -> None:
    world.job(102)
    world.service.sync()
    record = world.tracked(102)

    world.service.schedule.checkpoint_now(record.id)
    world.service.collect()

    (checkpoint,) = world.catalog.checkpoints(record.id)
    assert checkpoint.state == CheckpointState.VALID
    assert checkpoint.store_path == str(JobDir(world.store, USER, 102).checkpoint(1))
    assert checkpoint.manifest_checksum and checkpoint.manifest_checksum.startswith("xxh3_128:")
    assert world.slurm.signals == [(102, "USR1")]
    assert published_images(JobDir(world.store, USER, 102)) == [1]
    assert not world.service.checkpointer.in_flight()


def test_retention_keeps_the_newest_two_and_deletes_older_files(world: FakeWorld) -> None:
    world.job(103)
    world.service.sync()
    record = world.tracked(103)
    for _ in range(4):
        world.service.schedule.checkpoint_now(record.id)
        world.service.collect()
        world.clock.advance(60)

    states = {c.seq: c.state for c in world.catalog.checkpoints(record.id)}
    assert states == {
        4: CheckpointState.VALID,
        3: CheckpointState.VALID,
        2: CheckpointState.DELETED,
        1: CheckpointState.DELETED,
    }
    jobdir = JobDir(world.store, USER, 103)
    assert jobdir.committed_seqs() == [3, 4]
    assert published_images(jobdir) == [4, 3]


def test_repeated_failures_back_off_then_mark_the_job_uncheckpointable(world: FakeWorld) -> None:
    world.job(104)
    world.service.sync()
    record = world.tracked(104)
    world.failing[104] = "inet: Connected TCP socket"

    world.service.schedule.checkpoint_now(record.id)
    world.service.collect()
    world.service.schedule.checkpoint_now(record.id)  # within the back-off: not sent
    assert len(world.slurm.signals) == 1
    for _ in range(2):
        world.clock.advance(3600)
        world.service.schedule.checkpoint_now(record.id)
        world.service.collect()

    failed = world.catalog.checkpoints(record.id)
    assert [c.state for c in failed] == [CheckpointState.FAILED] * 3
    assert "Connected TCP socket" in str(failed[0].error)
    reason = world.catalog.get_job(record.id).uncheckpointable_reason
    assert reason is not None and "Connected TCP socket" in reason
    world.clock.advance(3600)
    world.service.schedule.checkpoint_now(record.id)
    assert len(world.slurm.signals) == 3  # no more requests for an uncheckpointable job


def test_no_signal_is_sent_once_the_launcher_marked_its_workload_ended(world: FakeWorld) -> None:
    # Slurm writes an error into the job's output when it signals a batch process
    # that has gone; the launcher marks the end before it goes.
    record, jobdir = seen_running(world, 115)
    jobdir.ended_file.write_text("0\n")

    sent = world.service.schedule.checkpoint_now(record.id)

    assert sent == Sent.FAILED
    assert world.slurm.signals == []
    assert not jobdir.request_file.exists()
    (checkpoint,) = world.catalog.checkpoints(record.id)
    assert (checkpoint.state, checkpoint.error) == (
        CheckpointState.FAILED,
        "the job's workload has ended",
    )
    assert not world.service.checkpointer.in_flight()
    assert world.service.checkpointer.failures.retry_at(record.id) is None  # no back-off


def test_a_request_without_result_fails_at_its_deadline(world: FakeWorld) -> None:
    world.job(105)
    world.service.sync()
    record = world.tracked(105)
    world.slurm.on_signal = None  # the launcher never answers

    world.service.schedule.checkpoint_now(record.id)
    world.service.collect()
    assert world.catalog.checkpoints(record.id)[0].state == CheckpointState.REQUESTED
    world.clock.advance(301)
    world.service.collect()

    (checkpoint,) = world.catalog.checkpoints(record.id)
    assert checkpoint.state == CheckpointState.FAILED
    assert "no result within 300s" in str(checkpoint.error)


def test_a_failed_job_is_requeued_by_policy_and_a_cancelled_one_is_not(world: FakeWorld) -> None:
    world.job(106)
    world.job(107)
    world.service.sync()
    world.slurm.set(106, state="FAILED")
    world.slurm.set(107, state="CANCELLED")

    world.service.sync()
    world.service.sync()  # judged once only

    assert world.slurm.requeues == [106]
    requeued = world.tracked(106)
    assert requeued.restart_count == 1
    kinds = [e.kind for e in world.catalog.events(requeued.id)]
    assert kinds.count(EventKind.REQUEUED) == 1
    refused = world.catalog.events(world.tracked(107).id)
    assert [e.kind for e in refused] == [EventKind.REQUEUE_REFUSED]
    assert "CANCELLED" in refused[0].detail


def test_a_slurm_requeue_and_the_launchers_report_become_events(world: FakeWorld) -> None:
    world.job(108)
    world.service.sync()
    record = world.tracked(108)
    world.slurm.set(108, restarts=1, node_list="node2", batch_host="node2")
    restarts = JobDir(world.store, USER, 108).path / "restarts"
    restarts.mkdir()
    (restarts / "0001.json").write_text(
        json.dumps(
            {
                "outcome": "fell_back",
                "seq": 1,
                "attempts": [{"seq": 2, "error": "checksum"}],
                "launcher_seconds": 0.4213,
            }
        )
    )

    world.service.sync()
    world.service.sync()

    events = world.catalog.events(record.id)
    kinds = sorted(e.kind for e in events)
    assert kinds == sorted([EventKind.REQUEUED, EventKind.FELL_BACK])
    fell_back = next(e for e in events if e.kind == EventKind.FELL_BACK)
    assert fell_back.checkpoint_seq == 1 and "image 2: checksum" in fell_back.detail
    assert fell_back.detail.startswith("restart 1: fell_back in 0.42s ")
    assert world.catalog.get_job(record.id).batch_host == "node2"


def test_recovery_completes_a_request_whose_result_arrived_while_down(world: FakeWorld) -> None:
    world.job(109)
    world.service.sync()
    record = world.tracked(109)
    world.service.schedule.checkpoint_now(record.id)  # the launcher answers at once...
    # ...but this instance dies before collecting. A new one starts:
    fresh = world.restarted_service()

    fresh.recover()

    assert world.catalog.checkpoints(record.id)[0].state == CheckpointState.VALID
    assert published_images(JobDir(world.store, USER, 109)) == [1]


# Walltime chaining on, a 2-minute margin: jobs with a 10-minute limit from START
# are due for their final checkpoint at START + 8 minutes.
CHAINING = {"SLURM_CKPT_WALLTIME_CHAINING": "true", "SLURM_CKPT_WALLTIME_MARGIN": "2m"}


def limited_job(world: FakeWorld, job_id: int, **fields: object) -> None:
    world.job(job_id, time_limit=600, end_time=START + timedelta(seconds=600), **fields)


def reach_the_margin(world: FakeWorld) -> None:
    """The service's sync and collect once the clock is within the margin."""
    world.clock.now = START + timedelta(seconds=500)
    world.service.sync()
    world.service.collect()


def test_walltime_chaining_takes_a_final_checkpoint_then_requeues(world: FakeWorld) -> None:
    world.service = world.make_service(**CHAINING)
    limited_job(world, 110)
    world.service.sync()
    assert world.slurm.requeues == []

    reach_the_margin(world)

    assert world.slurm.requeues == [110]
    record = world.tracked(110)
    (checkpoint,) = world.catalog.checkpoints(record.id)
    assert checkpoint.state == CheckpointState.VALID
    requeued = [e for e in world.catalog.events(record.id) if e.kind == EventKind.REQUEUED]
    assert len(requeued) == 1 and "walltime chaining, run 1" in requeued[0].detail


def test_a_job_that_opted_out_of_chaining_is_not_requeued_at_its_limit(
    world: FakeWorld,
) -> None:
    world.service = world.make_service(**CHAINING)
    limited_job(world, 113, no_chain=True)
    limited_job(world, 114)
    world.service.sync()

    reach_the_margin(world)

    assert world.slurm.requeues == [114]
    assert world.catalog.checkpoints(world.tracked(113).id) == []


def test_the_chain_limit_holds_across_a_restart_of_the_service(world: FakeWorld) -> None:
    chaining = {**CHAINING, "SLURM_CKPT_WALLTIME_MAX_CHAINED_RUNS": "1"}
    world.service = world.make_service(**chaining)
    limited_job(world, 112)
    world.service.sync()
    reach_the_margin(world)
    assert world.slurm.requeues == [112]
    # Slurm starts the job again; the service restarts before its next time limit.
    restarted_at = world.clock.now + timedelta(seconds=20)
    world.slurm.set(
        112,
        state="RUNNING",
        batch_host="node2",
        start_time=restarted_at,
        end_time=restarted_at + timedelta(seconds=600),
    )
    world.clock.now = restarted_at
    world.service = world.make_service(**chaining)
    world.service.sync()
    world.clock.now = restarted_at + timedelta(seconds=500)

    world.service.sync()
    world.service.collect()

    assert world.slurm.requeues == [112], "a second chained run beyond the limit of 1"
    record = world.tracked(112)
    assert record.chained_runs == 1


def test_a_final_checkpoint_in_flight_across_a_restart_still_ends_in_the_requeue(
    world: FakeWorld,
) -> None:
    world.service = world.make_service(**CHAINING)
    limited_job(world, 115)
    world.service.sync()
    world.silent.add(115)  # the launcher answers only after the service restarted
    reach_the_margin(world)
    record = world.tracked(115)
    (checkpoint,) = world.catalog.checkpoints(record.id)
    assert checkpoint.kind == CheckpointKind.FINAL and checkpoint.state == CheckpointState.REQUESTED

    world.service = world.restarted_service()
    world.service.recover()
    world.answer_late(115)
    world.service.collect()

    assert world.slurm.requeues == [115]
    assert world.tracked(115).chained_runs == 1
    requeued = [e for e in world.catalog.events(record.id) if e.kind == EventKind.REQUEUED]
    assert [e.detail for e in requeued] == ["walltime chaining, run 1: from checkpoint 1"]


def test_a_chain_step_completed_by_another_instance_is_requeued_once(world: FakeWorld) -> None:
    world.service = world.make_service(**CHAINING)
    limited_job(world, 117)
    world.service.sync()
    world.silent.add(117)
    reach_the_margin(world)  # the final checkpoint is requested, not answered yet
    other = world.restarted_service()
    other.recover()  # a second instance follows the same request
    world.answer_late(117)

    world.service.collect()
    other.collect()

    assert world.slurm.requeues == [117]
    assert world.tracked(117).chained_runs == 1


def test_an_admin_or_periodic_checkpoint_never_requeues(world: FakeWorld) -> None:
    world.service = world.make_service(**CHAINING)
    world.job(116)
    world.service.sync()
    record = world.tracked(116)
    world.service.schedule.checkpoint_now(record.id)
    world.service.collect()
    world.service.schedule.checkpoint_now(record.id, CheckpointKind.ADMIN)
    world.service.collect()

    kinds = [c.kind for c in world.catalog.checkpoints(record.id)]
    assert sorted(kinds) == [CheckpointKind.ADMIN, CheckpointKind.PERIODIC]
    assert world.slurm.requeues == []
    assert world.tracked(116).chained_runs == 0


def test_a_request_the_requeued_job_never_saw_fails_at_the_next_sync(world: FakeWorld) -> None:
    world.job(111)
    world.service.sync()
    record = world.tracked(111)
    world.slurm.on_signal = None  # the node dies before the launcher answers
    world.service.schedule.checkpoint_now(record.id)
    world.slurm.set(111, restarts=1, batch_host="node2", node_list="node2")

    world.service.sync()

    (checkpoint,) = world.catalog.checkpoints(record.id)
    assert checkpoint.state == CheckpointState.FAILED
    assert "requeued (restart 1) before it answered" in str(checkpoint.error)
    assert not world.service.checkpointer.in_flight()


def test_the_launchers_own_final_checkpoint_is_recorded_when_the_job_is_requeued(
    world: FakeWorld,
) -> None:
    record, jobdir = seen_running(world, 112)
    assert b'"seq": 1' in jobdir.final_request_file.read_bytes()  # reserved at first sight
    # Slurm's signal before a preemption: no request file, the launcher takes a final one.
    world.play_launcher(112, "USR1")
    world.slurm.set(112, restarts=1, state="PENDING", batch_host=None, node_list="")

    world.service.sync()

    (checkpoint,) = world.catalog.checkpoints(record.id)
    assert (checkpoint.seq, checkpoint.state, checkpoint.kind) == (1, "VALID", "final")
    assert published_images(jobdir) == [1]
    assert b'"seq": 2' in jobdir.final_request_file.read_bytes()
    # The next request continues the numbering.
    world.slurm.set(112, state="RUNNING", batch_host="node2", node_list="node2")
    world.service.sync()
    world.service.schedule.checkpoint_now(record.id)
    world.service.collect()
    assert [c.seq for c in world.catalog.valid_checkpoints(record.id)] == [2, 1]
    assert b'"seq": 3' in jobdir.final_request_file.read_bytes()


def test_finals_taken_while_the_service_was_away_are_recorded_in_order(
    world: FakeWorld,
) -> None:
    record, jobdir = seen_running(world, 116)
    # Two preemptions with no service: the same reservation gives each its own number.
    world.play_launcher(116, "USR1")
    world.play_launcher(116, "USR1")
    assert jobdir.committed_seqs() == [1, 2]
    world.slurm.set(116, restarts=2, state="PENDING", batch_host=None, node_list="")

    world.restarted_service().sync()

    assert [(c.seq, c.state) for c in world.catalog.checkpoints(record.id)] == [
        (2, "VALID"),
        (1, "VALID"),
    ]
    assert published_images(jobdir) == [2, 1]
    assert b'"seq": 3' in jobdir.final_request_file.read_bytes()


def test_finals_taken_before_the_service_first_saw_the_job_are_recorded(
    world: FakeWorld,
) -> None:
    world.job(118)
    jobdir = JobDir(world.store, USER, 118)
    # The job started while the service was away and was warned twice: no
    # reservation yet, so the launcher took the first numbers.
    world.play_launcher(118, "USR1")
    world.play_launcher(118, "USR1")
    assert not jobdir.final_request_file.exists()
    world.service.sync()
    record = world.tracked(118)
    world.slurm.set(118, restarts=1, state="PENDING", batch_host=None, node_list="")

    world.service.sync()

    assert [(c.seq, c.state, c.kind) for c in world.catalog.checkpoints(record.id)] == [
        (2, "VALID", "final"),
        (1, "VALID", "final"),
    ]
    assert published_images(jobdir) == [2, 1]


def test_a_final_no_stop_followed_is_recorded_before_the_next_request_is_numbered(
    world: FakeWorld,
) -> None:
    record, jobdir = seen_running(world, 119)
    # The user's own USR1 (or a warning no stop followed): a final at the reserved 1.
    world.play_launcher(119, "USR1")

    for _ in range(2):
        assert world.service.schedule.checkpoint_now(record.id) == Sent.SENT
        world.service.collect()

    rows = [(c.seq, c.state, c.kind) for c in world.catalog.checkpoints(record.id)]
    # Retention keeps the newest two (this world's setting).
    assert rows == [(3, "VALID", "periodic"), (2, "VALID", "periodic"), (1, "DELETED", "final")]
    # Each request was answered by a dump of its own, not by the image before it.
    for seq in (2, 3):
        assert json.loads(jobdir.result_file(seq).read_bytes())["kind"] == "periodic"
    assert jobdir.committed_seqs() == [2, 3]


def test_a_request_whose_signal_failed_is_still_taken_when_slurms_own_signal_answers_it(
    world: FakeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.job(117)
    world.service.sync()
    record = world.tracked(117)

    def unreachable(job_id: int, signal: str = "USR1") -> None:
        raise SlurmUnavailable("slurmctld is not answering")

    with monkeypatch.context() as patch:
        patch.setattr(world.slurm, "signal_batch", unreachable)
        assert world.service.schedule.checkpoint_now(record.id) == Sent.FAILED
    (failed,) = world.catalog.checkpoints(record.id)
    assert failed.state == CheckpointState.FAILED
    # request.json stayed; Slurm's warning before a preemption makes the launcher answer it.
    world.play_launcher(117, "USR1")

    world.service.collect()

    (late,) = world.catalog.checkpoints(record.id)
    assert (late.seq, late.state) == (1, CheckpointState.VALID)
    assert published_images(JobDir(world.store, USER, 117)) == [1]


def test_only_the_reserved_numbers_are_recorded_and_a_failed_final_is_failed(
    world: FakeWorld,
) -> None:
    record, jobdir = seen_running(world, 115)
    # A result at a number nobody reserved is never looked at.
    jobdir.results_dir.mkdir(exist_ok=True)
    jobdir.result_file(40).write_text('{"job_id": 115, "seq": 40, "ok": true}')
    world.failing[115] = "dump failed: TCP socket"
    world.play_launcher(115, "USR1")
    world.slurm.set(115, restarts=1, state="PENDING", batch_host=None, node_list="")

    world.service.sync()

    (checkpoint,) = world.catalog.checkpoints(record.id)
    assert (checkpoint.seq, checkpoint.state, checkpoint.kind) == (1, "FAILED", "final")
    assert "TCP socket" in str(checkpoint.error)
    assert b'"seq": 2' in jobdir.final_request_file.read_bytes()


def test_a_result_collected_while_the_catalog_is_down_is_completed_later(
    world: FakeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.job(113)
    world.service.sync()
    record = world.tracked(113)
    world.service.schedule.checkpoint_now(record.id)

    def down(*args: object, **kwargs: object) -> None:
        raise CatalogUnavailable("catalog sqlite:///x is unreachable: connection refused")

    with monkeypatch.context() as patch:
        patch.setattr(world.catalog, "mark_valid", down)
        world.service.collect()  # logged, not fatal
        assert len(world.service.checkpointer.in_flight()) == 1
    world.service.collect()

    (checkpoint,) = world.catalog.checkpoints(record.id)
    assert checkpoint.state == CheckpointState.VALID
    assert not world.service.checkpointer.in_flight()


def test_a_request_recorded_but_never_sent_is_sent_again_on_recovery(world: FakeWorld) -> None:
    world.job(114)
    world.service.sync()
    record = world.tracked(114)
    # The previous instance died between recording the request and sending it.
    world.catalog.request_checkpoint(record.id, world.clock.now)
    fresh = world.restarted_service()

    fresh.recover()
    fresh.collect()

    assert world.slurm.signals == [(114, "USR1")]
    assert world.catalog.checkpoints(record.id)[0].state == CheckpointState.VALID


def retry_time(world: FakeWorld, job_id: int) -> datetime:
    """When the job's admission retry runs (the scheduler is not started in unit tests:
    a job not modified since it was added has only its trigger's time)."""
    job = world.service.schedule.scheduler.get_job(f"retry-{job_id}")
    when: datetime = getattr(job, "next_run_time", None) or job.trigger.run_date
    return when


def test_a_freed_slot_goes_at_once_to_the_job_waiting_longest(world: FakeWorld) -> None:
    world.service = world.make_service(SLURM_CKPT_SERVICE_MAX_CHECKPOINTS_PER_STORE="1")
    for job_id in (120, 121, 122):
        world.job(job_id)
    world.service.sync()
    first, second, third = (world.tracked(j).id for j in (120, 121, 122))
    world.silent.add(120)
    assert world.service.schedule.checkpoint_now(first) == Sent.SENT
    assert world.service.schedule.checkpoint_now(second) == Sent.ADMISSION_FULL
    world.clock.advance(0.5)
    assert world.service.schedule.checkpoint_now(third) == Sent.ADMISSION_FULL
    retry_at = START + timedelta(seconds=1.5)
    assert retry_time(world, third) == retry_at

    world.answer_late(120)
    world.service.collect()

    # The slot goes to the job refused first, now; the other keeps its retry time.
    now = world.clock.now
    assert retry_time(world, second) == now
    assert retry_time(world, third) == retry_at
    # Once it is sent it leaves the queue; the next freed slot is the other's.
    assert world.service.schedule.checkpoint_now(second) == Sent.SENT
    world.service.collect()
    world.service.collect()
    assert retry_time(world, third) == now


def test_stop_waits_for_a_running_task_that_calls_the_scheduler(world: FakeWorld) -> None:
    service = world.service
    running = threading.Event()

    def task() -> None:
        running.set()
        service.stopped.wait(5)
        time.sleep(0.3)  # stop() is under way: a task asking for a retry now
        service.schedule.once(print, datetime.now(UTC), "late")
        finished.set()

    finished = threading.Event()
    service.schedule.start()
    service.schedule.once(task, datetime.now(UTC), "task")
    assert running.wait(5), "the task did not start"
    stopper = threading.Thread(target=service.stop, daemon=True)
    stopper.start()
    stopper.join(10)

    assert not stopper.is_alive(), "stop() deadlocked with a task calling the scheduler"
    assert finished.is_set(), "stop() returned before the running task ended"
    assert not service.schedule.running


def test_our_requeues_and_the_sync_take_turns(world: FakeWorld) -> None:
    # A sync pass between an admin's `scontrol requeue` and its catalog record
    # would count that requeue again, as one by Slurm: all three share one lock.
    service = world.service
    assert service.syncer.requeues is service.actions.requeues is service.chainer.requeues
    with service.syncer.requeues:
        done = threading.Event()
        runner = threading.Thread(target=lambda: (service.sync(), done.set()), daemon=True)
        runner.start()
        assert not done.wait(0.3), "a sync pass ran while a requeue was being recorded"
    assert done.wait(5)
