"""A restart's restore: which images to try, and trying them newest first.

Every candidate is verified with a full re-hash, its manifest and the
credentials in its CRIU images checked against the job's user, the recorded
files rolled back, and its pids waited for; the first image that restores
wins. How it went (outcome, every failed attempt, timings) is the restart
report, written to `restarts/<count>.json` for the service.
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from slurm_ckpt import exchange
from slurm_ckpt.config import Settings
from slurm_ckpt.dump.base import Dumper
from slurm_ckpt.errors import CkptError, LauncherError, StoreError
from slurm_ckpt.exchange import Attempt, RestartOutcome, RestartReport
from slurm_ckpt.launcher import openfiles
from slurm_ckpt.launcher.filesaver import FileSaver
from slurm_ckpt.store import verify
from slurm_ckpt.store.atomic import write_atomic
from slurm_ckpt.store.layout import JobDir

log = logging.getLogger(__name__)

# CRIU writes its statistics into the image folder on restore; images stay as committed.
_RESTORE_LEFTOVERS = ("stats-restore",)


def process_age() -> float:
    """Seconds since this process started (interpreter start-up included), 0 if unknown.

    A restart report carries it so that the time a restart costs us, from
    Slurm starting the launcher to the job working again, is on record."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(uptime - ticks / os.sysconf("SC_CLK_TCK"), 0.0)


def with_log(exc: BaseException) -> str:
    """The error, naming CRIU's full log of the failed step when there is one."""
    path = getattr(exc, "log", None)
    if path and os.path.exists(path):
        return f"{exc} (CRIU's log: {path})"
    return str(exc)


class Restorer:
    """One restart of job `job_id`: tries its images and, once one is restored,
    holds the restored tree's pid in `child`."""

    def __init__(
        self,
        job_id: int,
        restart_count: int,
        jobdir: JobDir,
        dumper: Dumper,
        settings: Settings,
        *,
        logs: Path,
        files: FileSaver,
    ) -> None:
        self.job_id = job_id
        self.restart_count = restart_count
        self.jobdir = jobdir
        self.dumper = dumper
        self.settings = settings
        self.logs = logs
        self.files = files
        self.child = 0  # the restored tree's pid; 0 until an image is restored

    def _candidates(self) -> list[int]:
        """Images to try, newest first: the service's published list, preceded by any
        image this job's launchers committed after the newest listed one with its own
        result ok (a final checkpoint at a preemption or time limit, or an answer the
        service has not recorded or published yet: seq order is the order images were
        taken). Every candidate is fully verified before use, listed or not."""
        try:
            seqs = verify.published_images(self.jobdir)
        except StoreError as exc:
            log.error("cannot read the list of images: %s", exc)
            seqs = []
        newest = seqs[0] if seqs else 0
        newer = [
            seq for seq in self.jobdir.committed_seqs() if seq > newest and self._own_result_ok(seq)
        ]
        return sorted(newer, reverse=True) + seqs

    def _own_result_ok(self, seq: int) -> bool:
        try:
            doc = json.loads(
                self.jobdir.result_file(seq).read_bytes()[: exchange.MAX_MESSAGE_BYTES]
            )
        except (OSError, ValueError, RecursionError):
            return False
        return exchange.read_result(doc, seq).ok

    def restore(self) -> RestartReport:
        """Try every candidate, newest first; the report says which one, if any, won."""
        seqs = self._candidates()
        attempts: list[Attempt] = []
        for index, seq in enumerate(seqs):
            try:
                started = time.monotonic()
                pid = self._restore_one(seq)
            except (CkptError, OSError) as exc:
                log.warning("image %d not restored: %s", seq, exc)
                attempts.append(Attempt(seq, with_log(exc)))
                continue
            self.child = pid
            outcome = RestartOutcome.RESTORED if index == 0 else RestartOutcome.FELL_BACK
            log.info("restored image %d as pid %d (%s)", seq, pid, outcome)
            return self._report(outcome, seq, attempts, time.monotonic() - started)
        outcome = (
            RestartOutcome.FAILED
            if self.settings.launcher.no_image == "fail"
            else RestartOutcome.FRESH_START
        )
        log.warning("no usable image among %s: %s", seqs or "none", outcome)
        return self._report(outcome, None, attempts, 0.0)

    def _report(
        self, outcome: RestartOutcome, seq: int | None, attempts: list[Attempt], seconds: float
    ) -> RestartReport:
        return RestartReport(
            job_id=self.job_id,
            restart_count=self.restart_count,
            outcome=outcome,
            at=datetime.now(UTC),
            seq=seq,
            attempts=attempts,
            restore_seconds=seconds,
            launcher_seconds=process_age(),
        )

    def _restore_one(self, seq: int) -> int:
        images = self.jobdir.checkpoint(seq)
        # A flipped byte anywhere must send us to an older image, so read everything.
        manifest = verify.verify_checkpoint(images, read_data=True)
        uid, gid = os.getuid(), os.getgid()
        if manifest.uid != uid or manifest.job_id != self.job_id:
            raise LauncherError(
                f"image {seq} belongs to uid {manifest.uid}, job {manifest.job_id}; "
                f"this is uid {uid}, job {self.job_id}"
            )
        info = self.dumper.inspect(images)
        if info.uids != {uid} or info.gids - set(os.getgroups()) - {gid}:
            raise LauncherError(
                f"image {seq} holds credentials of uids {sorted(info.uids)}, "
                f"gids {sorted(info.gids)}; only uid {uid} may be restored here"
            )
        openfiles.roll_back(manifest.open_files, images)
        self._wait_pids_free(info.pids)
        try:
            result = self.dumper.restore(
                images, log_file=self.logs / f"restore-{seq:06d}-r{self.restart_count}.log"
            )
        finally:
            for name in _RESTORE_LEFTOVERS:
                (images / name).unlink(missing_ok=True)
        self.files.adopt(manifest.open_files, images)
        return result.pid

    def _wait_pids_free(self, pids: tuple[int, ...]) -> None:
        # A killed tree's zombies can linger a moment before they are reaped.
        wait = self.settings.launcher.pid_wait.total_seconds()
        deadline = time.monotonic() + wait
        while True:
            busy = [p for p in pids if os.path.exists(f"/proc/{p}")]
            if not busy:
                return
            if time.monotonic() >= deadline:
                raise LauncherError(
                    f"pids {busy} of the image are in use on this node after {wait:.0f}s"
                )
            time.sleep(0.05)


def write_report(jobdir: JobDir, report: RestartReport) -> None:
    """Write `restarts/<count>.json`, which the service records as an event."""
    jobdir.restarts_dir.mkdir(mode=0o700, exist_ok=True)
    write_atomic(jobdir.restart_report(report.restart_count), report.to_json())
