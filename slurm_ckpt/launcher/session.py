"""One run of a batch script under checkpoint control.

The launcher is the batch process: slurmstepd starts it as the job's user with
the script's interpreter and path (`#!/path/slurm-ckpt-launch /bin/bash`). It
runs the script as its child, in a new session and with no_new_privs (set in
the child only: the launcher itself needs the file capability on criu), and
then waits for signals only, synchronously (sigwaitinfo), so no signal is lost
and nothing runs inside a signal handler:

- SIGCHLD: the workload may have ended; its status becomes ours.
- SIGUSR1: take a checkpoint, as request.json says, or a final one when there
  is no request (Slurm's own warning before a time limit or a preemption).
- SIGTERM, SIGINT, SIGHUP, SIGCONT, SIGUSR2: forwarded to the workload's group.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slurm_ckpt import exchange
from slurm_ckpt.config import Settings
from slurm_ckpt.db.states import CheckpointKind
from slurm_ckpt.dump.base import Dumper
from slurm_ckpt.errors import CkptError, LauncherError, StoreError
from slurm_ckpt.exchange import (
    Attempt,
    CheckpointRequest,
    CheckpointResult,
    RestartOutcome,
    RestartReport,
)
from slurm_ckpt.launcher import openfiles
from slurm_ckpt.launcher.filesaver import FileSaver, Saving
from slurm_ckpt.store import verify, writer
from slurm_ckpt.store.atomic import write_atomic
from slurm_ckpt.store.layout import JobDir

log = logging.getLogger(__name__)

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCONT, signal.SIGUSR2)
WAITED = frozenset({signal.SIGUSR1, signal.SIGCHLD, *FORWARDED})
_PR_SET_NO_NEW_PRIVS = 38
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


def _child_setup() -> None:
    """Runs in the workload's process between fork and exec."""
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")


def _with_log(exc: BaseException) -> str:
    """The error, naming CRIU's full log of the failed step when there is one."""
    path = getattr(exc, "log", None)
    if path and os.path.exists(path):
        return f"{exc} (CRIU's log: {path})"
    return str(exc)


def exit_code(status: int) -> int:
    """A wait status as a shell would report it: the exit code, or 128 + signal."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


@dataclass
class Job:
    """What the launcher knows about the job it runs in."""

    job_id: int
    restart_count: int
    interpreter: list[str]  # the interpreter and its optional argument, from the #! line
    script: Path
    args: list[str]


class Session:
    def __init__(self, job: Job, jobdir: JobDir, dumper: Dumper, settings: Settings) -> None:
        self.job = job
        self.jobdir = jobdir
        self.dumper = dumper
        self.settings = settings
        self.logs = jobdir.path / "logs"
        self.logs.mkdir(mode=0o700, exist_ok=True)
        self.child = 0  # pid of the workload's root: our child, started or restored
        self.files = FileSaver(settings.launcher.copy_max_bytes)
        self.criu_version = ""

    # -- start ---------------------------------------------------------------

    def start(self) -> int | None:
        """Start or restore the workload; return an exit code when there is nothing to run."""
        if self.job.restart_count > 0:
            report = self._restore()
            self._report_restart(report)
            if report.outcome in (RestartOutcome.RESTORED, RestartOutcome.FELL_BACK):
                return None
            if report.outcome == RestartOutcome.FAILED:
                log.error("no usable image and launcher.no_image = fail: the job fails")
                return 1
        self._start_fresh()
        return None

    def _start_fresh(self) -> None:
        # bash keeps its script open by path; the node-local spool path does not
        # exist on the next node, so the workload runs a copy in the job's folder.
        copy = self.jobdir.script_copy
        write_atomic(copy, self.job.script.read_bytes(), mode=0o700)
        workload = subprocess.Popen(
            [*self.job.interpreter, str(copy), *self.job.args],
            start_new_session=True,
            preexec_fn=_child_setup,
            restore_signals=True,  # Python ignores SIGPIPE and SIGXFSZ; the script must not
            close_fds=True,
        )
        self.child = workload.pid
        # Reaped by our own waitpid; Popen must not track it.
        workload.returncode = 0
        log.info("started %s %s as pid %d", " ".join(self.job.interpreter), copy, self.child)

    def _candidates(self) -> list[int]:
        """Images to try, newest first: the service's published list, preceded by any
        image this job's launchers committed after the newest listed one (a final
        checkpoint at a preemption or time limit the service may not have seen yet).
        Every candidate is fully verified before use, listed or not."""
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

    def _restore(self) -> RestartReport:
        seqs = self._candidates()
        attempts: list[Attempt] = []
        for index, seq in enumerate(seqs):
            try:
                started = time.monotonic()
                pid = self._restore_one(seq)
            except (CkptError, OSError) as exc:
                log.warning("image %d not restored: %s", seq, exc)
                attempts.append(Attempt(seq, _with_log(exc)))
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
            job_id=self.job.job_id,
            restart_count=self.job.restart_count,
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
        if manifest.uid != uid or manifest.job_id != self.job.job_id:
            raise LauncherError(
                f"image {seq} belongs to uid {manifest.uid}, job {manifest.job_id}; "
                f"this is uid {uid}, job {self.job.job_id}"
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
                images, log_file=self.logs / f"restore-{seq:06d}-r{self.job.restart_count}.log"
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

    def _report_restart(self, report: RestartReport) -> None:
        self.jobdir.restarts_dir.mkdir(mode=0o700, exist_ok=True)
        write_atomic(self.jobdir.restart_report(report.restart_count), report.to_json())

    # -- run -----------------------------------------------------------------

    def run(self) -> int:
        """Wait for the workload, serving signals, and return its exit code."""
        while True:
            info = signal.sigwaitinfo(WAITED)
            sig = info.si_signo
            if sig == signal.SIGCHLD:
                status = self._reap()
                if status is not None:
                    log.info("workload ended: exit code %d", status)
                    return status
            elif sig == signal.SIGUSR1:
                self.checkpoint()
            else:
                self._forward(sig)

    def _reap(self) -> int | None:
        try:
            pid, status = os.waitpid(self.child, os.WNOHANG)
        except ChildProcessError:
            log.error("workload %d is no longer our child", self.child)
            return 1
        return exit_code(status) if pid else None

    def _forward(self, sig: int) -> None:
        try:
            os.killpg(self.child, sig)
            log.info("forwarded %s to the workload", signal.Signals(sig).name)
        except ProcessLookupError:
            pass

    # -- checkpoint ----------------------------------------------------------

    def _read_request(self) -> CheckpointRequest | None:
        """The pending request, consumed; None when the signal came without one."""
        path = self.jobdir.request_file
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        path.unlink(missing_ok=True)
        return exchange.parse_request(data, self.job.job_id)

    def checkpoint(self) -> CheckpointResult | None:
        """Serve one SIGUSR1: dump the workload and write the result file."""
        try:
            request = self._read_request()
        except exchange.BadRequest as exc:
            log.error("checkpoint request refused: %s", exc)
            self.jobdir.results_dir.mkdir(mode=0o700, exist_ok=True)
            write_atomic(self.jobdir.results_dir / "rejected-request.txt", f"{exc}\n".encode())
            return None
        if request is None:
            request = CheckpointRequest(
                job_id=self.job.job_id, seq=self.jobdir.next_seq(), kind=CheckpointKind.FINAL
            )
        elif self.jobdir.result_file(request.seq).exists():
            # This seq is answered already: the service asked for the number our own
            # final checkpoint took a moment ago. Its result stands; the service reads it.
            log.info("checkpoint %d was taken already; request answered by it", request.seq)
            return None
        result = self._dump(request)
        self.jobdir.results_dir.mkdir(mode=0o700, exist_ok=True)
        write_atomic(self.jobdir.result_file(request.seq), result.to_json())
        return result

    def _dump(self, request: CheckpointRequest) -> CheckpointResult:
        seq = request.seq
        log_file = self.logs / f"dump-{seq:06d}.log"
        staging: Path | None = None
        saved: list[Saving] = []
        try:
            if self.jobdir.checkpoint(seq).exists():
                raise LauncherError(f"checkpoint {seq} exists already")
            staging = writer.begin_checkpoint(self.jobdir, seq)
            images = staging

            def on_frozen(pids: list[int]) -> None:
                saved.append(self.files.save_frozen(pids, images))

            stats = self.dumper.dump(self.child, staging, log_file=log_file, on_frozen=on_frozen)
            if not saved:
                raise LauncherError("the dump ended without the moment the tree was frozen")
            recorded = self.files.finish(saved[0])
            committed = time.monotonic()
            final, _ = writer.commit_checkpoint(
                self.jobdir,
                staging,
                seq=seq,
                uid=os.getuid(),
                gid=os.getgid(),
                criu_version=self._criu_version(),
                kernel=os.uname().release,
                dump_seconds=stats.seconds,
                freeze_seconds=stats.frozen_seconds,
                open_files=recorded,
                restart_count=self.job.restart_count,
            )
        except (CkptError, OSError) as exc:
            if staging is not None:
                writer.abort_checkpoint(staging)
            for saving in saved:
                saving.close()
            self.files.forget()  # the next copies are whole, from the files themselves
            log.error("checkpoint %d failed: %s", seq, exc)
            return self._result(request, False, error=_with_log(exc))
        self.files.committed(saved[0], final)
        # A dump that worked needs no log; one per checkpoint would fill the folder.
        log_file.unlink(missing_ok=True)
        log.info(
            "checkpoint %d taken: %.3fs dump, %.3fs frozen, %d bytes of files copied frozen",
            seq,
            stats.seconds,
            stats.frozen_seconds,
            saved[0].frozen_bytes,
        )
        return self._result(
            request,
            True,
            dump_seconds=stats.seconds,
            freeze_seconds=stats.frozen_seconds,
            commit_seconds=time.monotonic() - committed,
        )

    def _result(self, request: CheckpointRequest, ok: bool, **fields: Any) -> CheckpointResult:
        return CheckpointResult(
            job_id=self.job.job_id,
            seq=request.seq,
            kind=request.kind,
            ok=ok,
            finished_at=datetime.now(UTC),
            restart_count=self.job.restart_count,
            **fields,
        )

    def _criu_version(self) -> str:
        if not self.criu_version:
            self.criu_version = self.dumper.capabilities().version
        return self.criu_version
