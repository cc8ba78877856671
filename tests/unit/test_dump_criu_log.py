"""What a failed dump or restore says: the failing step's own error from CRIU's log."""

from __future__ import annotations

from pathlib import Path

from slurm_ckpt.dump.criu import log_reason

# The shape of a real dump log: an error CRIU goes past while it scans the network
# namespace, then the step that fails, then CRIU's closing summary.
LOG = """\
(00.001000) Version: 4.2.1 (gitid 0)
(00.002000) Error (criu/sk-inet.c:189): inet: Connected TCP socket in another user's state
(00.003000) Dumping path for 3 fd via self 11 [/tmp/data]
(00.004000) Error (criu/files-reg.c:1120): Can't lookup mount=21 for fd=3 path=/tmp/data
(00.005000) Error (criu/file-lock.c:110): Some file locks are hold by dumping tasks!
(00.006000) Error (criu/cr-dump.c:1975): Dumping FAILED.
"""


def test_the_reason_is_the_last_error_before_the_summary_with_what_led_to_it(
    tmp_path: Path,
) -> None:
    log = tmp_path / "dump.log"
    log.write_text(LOG)
    reason = log_reason(log)
    assert reason.startswith("Some file locks are hold by dumping tasks!"), reason
    assert "Can't lookup mount=21" in reason
    assert "Dumping FAILED" not in reason


def test_a_log_with_only_the_summary_gives_the_summary(tmp_path: Path) -> None:
    log = tmp_path / "restore.log"
    log.write_text("(00.1) Error (criu/cr-restore.c:2400): Restoring FAILED.\n")
    assert log_reason(log) == "Restoring FAILED."


def test_no_error_or_no_log_gives_nothing(tmp_path: Path) -> None:
    log = tmp_path / "dump.log"
    log.write_text("(00.1) Version: 4.2.1\n(00.2) Dumping finished successfully\n")
    assert log_reason(log) == ""
    assert log_reason(tmp_path / "missing.log") == ""


def test_only_the_end_of_a_huge_log_is_read(tmp_path: Path) -> None:
    log = tmp_path / "dump.log"
    with log.open("w") as f:
        f.write("(00.1) Error (criu/a.c:1): an early error far back\n")
        f.write("(00.2) filler line\n" * 200_000)
        f.write("(09.9) Error (criu/b.c:2): the cause\n")
    assert log_reason(log) == "the cause"


def test_a_restore_names_the_tasks_own_error_not_the_exits_that_follow(tmp_path: Path) -> None:
    log = tmp_path / "restore.log"
    log.write_text(
        "(00.100000)   4321: Error (criu/files-reg.c:2000): File /data/x has bad size 10\n"
        "(00.200000)   4320: Error (criu/cr-restore.c:1265): 4321 exited, status=1\n"
        "(00.200100) Error (criu/cr-restore.c:1269): 4322 killed by signal 9: Killed\n"
        "(00.300000) Error (criu/cr-restore.c:2331): Restoring FAILED.\n"
    )
    assert log_reason(log) == "File /data/x has bad size 10"
