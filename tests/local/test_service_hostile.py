"""The service against hostile job folders and late launchers (fake Slurm and dumps,
the real service, catalog and store code)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from slurm_ckpt.db.states import CheckpointState, EventKind
from slurm_ckpt.slurm.fake import FakeSlurm
from slurm_ckpt.store.layout import JobDir
from slurm_ckpt.store.verify import published_images

from .service_fakes import USER, FakeWorld


@pytest.fixture
def world(tmp_path: Path) -> Iterator[FakeWorld]:
    # The late watch counts in deadlines: a short one, whatever the machine configures.
    with FakeWorld.open(
        tmp_path / "store", FakeSlurm(), SLURM_CKPT_SERVICE_CHECKPOINT_DEADLINE="2m"
    ) as w:
        yield w


def _request(world: FakeWorld, job_id: int) -> int:
    world.job(job_id)
    world.service.sync()
    record = world.tracked(job_id)
    world.service.schedule.checkpoint_now(record.id)
    return record.id


def test_a_late_result_whose_image_verifies_becomes_valid(world: FakeWorld) -> None:
    world.silent.add(301)
    job_id = _request(world, 301)
    world.clock.advance(301)
    world.service.collect()
    (failed,) = world.catalog.checkpoints(job_id)
    assert failed.state == CheckpointState.FAILED

    world.answer_late(301)  # the launcher commits its image after all
    world.service.collect()

    (late,) = world.catalog.checkpoints(job_id)
    assert late.state == CheckpointState.VALID and late.error is None
    assert published_images(JobDir(world.store, USER, 301)) == [late.seq]
    assert EventKind.LATE_CHECKPOINT in [e.kind for e in world.catalog.events(job_id)]


def test_a_late_image_that_does_not_verify_is_removed(world: FakeWorld) -> None:
    world.silent.add(302)
    job_id = _request(world, 302)
    world.clock.advance(301)
    world.service.collect()
    world.answer_late(302)
    jobdir = JobDir(world.store, USER, 302)
    (jobdir.checkpoint(1) / "stray.img").write_bytes(b"not listed")

    world.service.collect()

    (checkpoint,) = world.catalog.checkpoints(job_id)
    assert checkpoint.state == CheckpointState.FAILED
    assert not jobdir.checkpoint(1).exists()


@pytest.mark.parametrize(
    "content",
    [
        b"[" * 65536,
        b"[1, 2, 3]",
        b'{"seq": 1, "ok": false, "error": "\x1b]52;c;QUFBQQ==\x07\x1b[2Jboom"}',
        b'{"seq": 1, "ok": false, "error": ' + json.dumps("x" * 100_000).encode() + b"}",
    ],
)
def test_a_hostile_result_fails_only_that_checkpoint_and_is_stored_clean(
    world: FakeWorld, content: bytes
) -> None:
    world.silent.add(303)
    hostile = _request(world, 303)
    (JobDir(world.store, USER, 303).result_file(1)).write_bytes(content[:70_000])
    victim = _request(world, 304)

    world.service.collect()

    (bad,) = world.catalog.checkpoints(hostile)
    assert bad.state == CheckpointState.FAILED
    assert bad.error and len(bad.error) <= 2000
    assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in bad.error)
    (good,) = world.catalog.checkpoints(victim)
    assert good.state == CheckpointState.VALID


def test_a_fifo_result_neither_blocks_collect_nor_the_other_jobs(world: FakeWorld) -> None:
    world.silent.add(305)
    hostile = _request(world, 305)
    os.mkfifo(JobDir(world.store, USER, 305).result_file(1))
    victim = _request(world, 306)

    world.service.collect()  # would block for ever on a plain open()

    assert world.catalog.checkpoints(hostile)[0].state == CheckpointState.FAILED
    assert "not a regular file" in str(world.catalog.checkpoints(hostile)[0].error)
    assert world.catalog.checkpoints(victim)[0].state == CheckpointState.VALID


def test_a_manifest_with_huge_sizes_is_refused_not_an_overflow(world: FakeWorld) -> None:
    world.silent.add(307)
    job_id = _request(world, 307)
    world.answer_late(307)
    manifest = JobDir(world.store, USER, 307).checkpoint(1) / "manifest.json"
    doc = json.loads(manifest.read_bytes())
    doc["files"][0]["size"] = 2**64
    manifest.write_text(json.dumps(doc))

    world.service.collect()

    (checkpoint,) = world.catalog.checkpoints(job_id)
    assert checkpoint.state == CheckpointState.FAILED
    assert "image refused" in str(checkpoint.error)


def test_a_restart_report_that_is_a_symlink_to_dev_zero_is_not_read(world: FakeWorld) -> None:
    world.job(308)
    world.service.sync()
    restarts = JobDir(world.store, USER, 308).path / "restarts"
    restarts.mkdir()
    (restarts / "0001.json").symlink_to("/dev/zero")
    world.slurm.set(308, restarts=1)

    world.service.sync()

    record = world.tracked(308)
    events = world.catalog.events(record.id)
    restore = [e for e in events if e.kind == EventKind.RESTORE_FAILED]
    assert restore and "restart 1: failed" in restore[0].detail


def test_a_job_id_reused_by_another_user_is_left_alone(world: FakeWorld) -> None:
    world.job(309)
    world.service.sync()
    old = world.tracked(309)
    world.slurm.set(309, state="COMPLETED")
    world.service.sync()
    world.slurm.set(309, state="RUNNING", uid=old.uid + 1, user="mallory")

    world.service.sync()

    record = world.tracked(309)
    # Not running as far as the catalog knows, so nobody may act on it; not scheduled.
    assert record.uid == old.uid and record.state == "COMPLETED"
    assert world.service.schedule.scheduler.get_job(f"ckpt-{record.id}") is None
