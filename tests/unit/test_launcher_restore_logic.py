"""The launcher's choices with the fake dump backend: the image on a restart, the
numbers of its own finals, what it answers once the workload has ended (the real
backend is exercised in tests/integration/test_launcher.py)."""

from __future__ import annotations

import json
import os
import pwd
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from slurm_ckpt.config import load_settings
from slurm_ckpt.dump.fake import FAKE_IMAGE, FakeDumper
from slurm_ckpt.exchange import FINAL_BLOCK, Attempt
from slurm_ckpt.launcher.restore import process_age
from slurm_ckpt.launcher.session import Job, Session
from slurm_ckpt.store import writer
from slurm_ckpt.store.folders import ensure_job_dir
from slurm_ckpt.store.layout import JobDir
from slurm_ckpt.store.verify import write_published_images

FREE_PID = 10_000_000  # above any pid_max: never in use
ME = pwd.getpwuid(os.geteuid()).pw_name  # the launcher runs as the job's user: whoever tests
IMPORTED = time.monotonic()


def make_session(tmp_path: Path, dumper: FakeDumper, restart_count: int = 1) -> Session:
    root = tmp_path / "store"
    root.mkdir()
    (root / ME).mkdir(mode=0o700)  # the user's folder, the trusted side's part
    jobdir = ensure_job_dir(root, ME, 42)
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\n")
    settings = load_settings(env={})
    return Session(Job(42, restart_count, ["/bin/sh"], script, []), jobdir, dumper, settings)


def take(jobdir: JobDir, dumper: FakeDumper, seq: int) -> Path:
    staging = writer.begin_checkpoint(jobdir, seq)
    dumper.dump(FREE_PID, staging, log_file=staging / "unused.log")
    final, _ = writer.commit_checkpoint(
        jobdir,
        staging,
        seq=seq,
        uid=os.getuid(),
        gid=os.getgid(),
        criu_version="fake-1",
        kernel="test",
        dump_seconds=0.0,
        freeze_seconds=0.0,
    )
    return final


def test_newest_image_is_restored(tmp_path: Path) -> None:
    dumper = FakeDumper()
    session = make_session(tmp_path, dumper)
    take(session.jobdir, dumper, 1)
    newest = take(session.jobdir, dumper, 2)
    write_published_images(session.jobdir, [2, 1])

    report = session._restore()

    assert (report.outcome, report.seq, report.attempts) == ("restored", 2, [])
    assert dumper.restored == [newest]
    assert session.child == dumper.restored_pid


def test_corrupt_newest_falls_back_and_says_why(tmp_path: Path) -> None:
    dumper = FakeDumper()
    session = make_session(tmp_path, dumper)
    older = take(session.jobdir, dumper, 1)
    newest = take(session.jobdir, dumper, 2)
    image = newest / FAKE_IMAGE
    data = bytearray(image.read_bytes())
    data[0] ^= 0x20
    image.write_bytes(bytes(data))
    write_published_images(session.jobdir, [2, 1])

    report = session._restore()

    assert (report.outcome, report.seq) == ("fell_back", 1)
    assert report.attempts[0].seq == 2 and "checksum" in report.attempts[0].error
    assert dumper.restored == [older]


def test_no_usable_image_means_fresh_start_by_default(tmp_path: Path) -> None:
    dumper = FakeDumper(fail_restore="criu says no")
    session = make_session(tmp_path, dumper)
    take(session.jobdir, dumper, 1)
    write_published_images(session.jobdir, [1])

    report = session._restore()

    assert report.outcome == "fresh_start"
    assert report.attempts == [Attempt(1, "restore failed: criu says no")]


def test_no_usable_image_fails_when_the_site_says_so(tmp_path: Path) -> None:
    dumper = FakeDumper()
    session = make_session(tmp_path, dumper)
    session.settings = load_settings(env={"SLURM_CKPT_LAUNCHER_NO_IMAGE": "fail"})

    report = session._restore()

    assert (report.outcome, report.attempts) == ("failed", [])


def test_image_of_another_job_is_refused(tmp_path: Path) -> None:
    dumper = FakeDumper()
    session = make_session(tmp_path, dumper)
    other = JobDir(session.jobdir.root, ME, 43)
    ensure_job_dir(other.root, ME, 43)
    take(other, dumper, 1)
    os.rename(other.checkpoint(1), session.jobdir.checkpoint(1))
    write_published_images(session.jobdir, [1])

    report = session._restore()

    assert report.outcome == "fresh_start"
    assert "job 43" in report.attempts[0].error


def running_session(tmp_path: Path) -> tuple[FakeDumper, Session]:
    """A first run's session whose workload runs: checkpoints are taken from it."""
    dumper = FakeDumper()
    session = make_session(tmp_path, dumper, restart_count=0)
    session.child = FREE_PID
    return dumper, session


def reserve(jobdir: JobDir, seq: int) -> None:
    """The service's reservation of the number for the next checkpoint without a request."""
    jobdir.final_request_file.write_text(
        f'{{"job_id": {jobdir.job_id}, "seq": {seq}, "kind": "final"}}'
    )


def test_the_reserved_checkpoint_newer_than_the_published_list_is_tried_first(
    tmp_path: Path,
) -> None:
    dumper = FakeDumper()
    session = make_session(tmp_path, dumper)
    take(session.jobdir, dumper, 1)
    write_published_images(session.jobdir, [1])
    # The launcher's own final checkpoint at a preemption, at the reserved number:
    # committed, result ok, not yet seen by the service.
    final = take(session.jobdir, dumper, 2)
    session.jobdir.results_dir.mkdir(exist_ok=True)
    session.jobdir.result_file(2).write_text('{"seq": 2, "ok": true}')
    reserve(session.jobdir, 2)

    report = session._restore()

    assert (report.outcome, report.seq) == ("restored", 2)
    assert dumper.restored == [final]


@pytest.mark.parametrize(
    ("case", "restored"), [("result ok", 3), ("no result", 1), ("result not ok", 1)]
)
def test_an_unlisted_newer_image_is_tried_first_only_with_its_result_ok(
    tmp_path: Path, case: str, restored: int
) -> None:
    dumper = FakeDumper()
    session = make_session(tmp_path, dumper)
    images = {1: take(session.jobdir, dumper, 1)}
    write_published_images(session.jobdir, [1])
    # An answer or final the service has not published (its list was not written).
    images[3] = take(session.jobdir, dumper, 3)
    session.jobdir.results_dir.mkdir(exist_ok=True)
    if case != "no result":
        ok = "false" if case == "result not ok" else "true"
        session.jobdir.result_file(3).write_text(f'{{"seq": 3, "ok": {ok}}}')

    report = session._restore()

    assert (report.outcome, report.seq) == ("restored", restored)
    assert dumper.restored == [images[restored]]


def test_a_request_for_a_seq_already_taken_keeps_the_first_result_and_takes_a_final(
    tmp_path: Path,
) -> None:
    dumper, session = running_session(tmp_path)
    reserve(session.jobdir, 1)
    first = session.checkpoint()  # Slurm's signal, no request: final checkpoint 1
    assert first is not None and first.ok and first.kind == "final"
    session.jobdir.request_file.write_text('{"job_id": 42, "seq": 1}')

    # The service asks for 1 too, or request 1 was left behind and this is Slurm's
    # signal: 1 keeps its first result, and the signal gets a final of its own.
    again = session.checkpoint()

    assert again is not None and (again.seq, again.kind) == (2, "final")
    result = session.jobdir.result_file(1).read_text()
    assert '"kind": "final"' in result and '"ok": true' in result
    assert not session.jobdir.request_file.exists()
    assert dumper.dumped == [FREE_PID, FREE_PID]


def test_a_request_left_behind_never_costs_slurms_signal_its_final(tmp_path: Path) -> None:
    dumper, session = running_session(tmp_path)
    reserve(session.jobdir, 3)
    # Request 3 answered by a final; then the service's request 3 was written but
    # its signal never came.
    take(session.jobdir, dumper, 3)
    session.jobdir.results_dir.mkdir(exist_ok=True)
    session.jobdir.result_file(3).write_text('{"job_id": 42, "seq": 3, "ok": true}')
    session.jobdir.request_file.write_text('{"job_id": 42, "seq": 3}')

    final = session.checkpoint()  # Slurm's warning before a preemption

    assert final is not None and final.ok and (final.seq, final.kind) == (4, "final")
    assert session.jobdir.checkpoint(4).exists()


def test_slurms_signal_after_a_request_took_the_reserved_number_takes_the_next(
    tmp_path: Path,
) -> None:
    dumper, session = running_session(tmp_path)
    reserve(session.jobdir, 1)
    session.jobdir.request_file.write_text('{"job_id": 42, "seq": 1}')
    assert session.checkpoint() is not None  # the request

    final = session.checkpoint()  # Slurm's signal: number 1 is answered

    assert final is not None and (final.seq, final.kind) == (2, "final")


def test_finals_step_over_used_numbers_and_leftovers_and_stop_at_the_blocks_end(
    tmp_path: Path,
) -> None:
    dumper, session = running_session(tmp_path)
    reserve(session.jobdir, 5)
    take(session.jobdir, dumper, 5)  # committed, its result never written (killed)
    writer.begin_checkpoint(session.jobdir, 6)  # a dump cut off in staging
    taken = []
    for _ in range(FINAL_BLOCK - 2):
        result = session.checkpoint()  # the service is away: no new reservation
        assert result is not None and result.ok
        taken.append(result.seq)

    assert taken == list(range(7, 5 + FINAL_BLOCK))
    assert session.checkpoint() is None  # every reserved number is used


def test_without_a_reservation_the_block_after_the_folders_numbers_is_used(
    tmp_path: Path,
) -> None:
    # The service has not seen the job running: in a new folder the catalog has
    # numbered nothing, so the finals start at 1.
    dumper, session = running_session(tmp_path)

    taken = [session.checkpoint(), session.checkpoint()]

    assert [(r.seq, r.kind, r.ok) for r in taken if r is not None] == [
        (1, "final", True),
        (2, "final", True),
    ]


def test_without_a_reservation_no_number_below_one_used_here_is_taken(tmp_path: Path) -> None:
    # The reservation is gone from a folder the catalog numbered: 1 had no result
    # (a failed request), 2 is an image, 3 a leftover. Nothing at or below 3 is reused.
    dumper, session = running_session(tmp_path)
    take(session.jobdir, dumper, 2)
    writer.begin_checkpoint(session.jobdir, 3)

    final = session.checkpoint()

    assert final is not None and (final.seq, final.kind, final.ok) == (4, "final", True)


@pytest.mark.parametrize(
    "reservation",
    ["{", '{"job_id": 43, "seq": 1, "kind": "final"}', '{"job_id": 42, "seq": 1}'],
)
def test_without_a_usable_reservation_no_final_checkpoint_is_taken(
    tmp_path: Path, reservation: str
) -> None:
    dumper, session = running_session(tmp_path)
    session.jobdir.final_request_file.write_text(reservation)

    assert session.checkpoint() is None

    assert dumper.dumped == []
    assert not session.jobdir.results_dir.exists() or not any(session.jobdir.results_dir.iterdir())


def test_process_age_counts_from_the_process_start() -> None:
    # This process started before this module was imported, and not before boot.
    time.sleep(0.05)
    age = process_age()
    assert time.monotonic() - IMPORTED <= age <= time.clock_gettime(time.CLOCK_BOOTTIME)


def test_a_restart_report_says_how_long_the_launcher_took(tmp_path: Path) -> None:
    dumper = FakeDumper()
    session = make_session(tmp_path, dumper)
    take(session.jobdir, dumper, 1)
    write_published_images(session.jobdir, [1])
    report = session._restore()
    assert report.outcome == "restored"
    # This test's process has run at least as long as the restore inside it.
    assert report.launcher_seconds >= report.restore_seconds > 0


def pending_usr1() -> None:
    """A SIGUSR1 waiting for this thread, as sigtimedwait takes it in the launcher."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)


@pytest.fixture
def usr1_blocked() -> Iterator[None]:
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    yield None
    while signal.sigtimedwait({signal.SIGUSR1}, 0) is not None:
        pass  # none may reach the test process unblocked
    signal.pthread_sigmask(signal.SIG_SETMASK, old)


def test_a_request_whose_signal_follows_the_workloads_end_is_answered_not_dumped(
    tmp_path: Path, usr1_blocked: None
) -> None:
    dumper, session = running_session(tmp_path)
    # The service wrote the request before the mark: its signal is on its way.
    session.jobdir.request_file.write_text('{"job_id": 42, "seq": 3}')
    pending_usr1()

    session.end(linger=60)

    assert session.jobdir.ended_file.read_text() == "0\n"
    assert not session.jobdir.request_file.exists()
    result = json.loads(session.jobdir.result_file(3).read_text())
    assert (result["ok"], result["error"]) == (False, "the workload had ended")
    assert dumper.dumped == []


def test_an_ended_workloads_launcher_does_not_wait_without_a_request(tmp_path: Path) -> None:
    _, session = running_session(tmp_path)
    started = time.monotonic()

    session.end(linger=60)

    assert time.monotonic() - started < 30
    assert session.jobdir.ended_file.exists()


def test_the_wait_ends_when_the_service_takes_its_request_back(
    tmp_path: Path, usr1_blocked: None
) -> None:
    _, session = running_session(tmp_path)
    session.jobdir.request_file.write_text('{"job_id": 42, "seq": 3}')
    taken_back = threading.Timer(0.3, session.jobdir.request_file.unlink)
    taken_back.start()
    started = time.monotonic()

    session.end(linger=60)

    taken_back.join()
    assert time.monotonic() - started < 30
    assert not session.jobdir.results_dir.exists() or not any(session.jobdir.results_dir.iterdir())


def test_a_request_whose_signal_never_comes_is_left_after_the_wait(
    tmp_path: Path, usr1_blocked: None
) -> None:
    _, session = running_session(tmp_path)
    session.jobdir.request_file.write_text('{"job_id": 42, "seq": 3}')

    session.end(linger=0.2)

    assert session.jobdir.request_file.exists()
    assert not session.jobdir.result_file(3).exists()


def test_a_new_run_clears_the_mark_an_earlier_run_left(tmp_path: Path) -> None:
    _, session = running_session(tmp_path)
    session.jobdir.ended_file.write_text("0\n")

    assert session.start() is None
    os.waitpid(session.child, 0)

    assert not session.jobdir.ended_file.exists()
