"""One run of a batch script under checkpoint control.

The launcher is the batch process: slurmstepd starts it as the job's user with
the script's interpreter and path (`#!/path/slurm-ckpt-launch /bin/bash`). It
runs the script as its child, in a new session and with no_new_privs (set in
the child only: the launcher itself needs the file capability on criu), and
then waits for signals only, synchronously (sigwaitinfo), so no signal is lost
and nothing runs inside a signal handler:

- SIGCHLD: the workload may have ended; its status becomes ours.
- SIGUSR1: take a checkpoint, as request.json says, or a final one when there
  is no request (Slurm's own warning before a time limit or a preemption), at
  the lowest unused number the service reserved in final-request.json (after
  the highest number the folder has used when it has reserved none yet).
- SIGTERM, SIGINT, SIGHUP, SIGCONT, SIGUSR2: forwarded to the workload's group.

When the workload has ended, the launcher marks it (`ended`) before it exits, so
that the service sends no more signals (see `Session.end`).

On a restart the workload is an image restored by `restore.Restorer` instead.
"""

from __future__ import annotations

import ctypes
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
from slurm_ckpt.errors import CkptError, LauncherError
from slurm_ckpt.exchange import (
    CheckpointRequest,
    CheckpointResult,
    RestartOutcome,
    RestartReport,
)
from slurm_ckpt.launcher.filesaver import FileSaver, Saving
from slurm_ckpt.launcher.restore import Restorer, with_log, write_report
from slurm_ckpt.store import writer
from slurm_ckpt.store.atomic import write_atomic
from slurm_ckpt.store.layout import MAX_SEQ, JobDir, seq_name

log = logging.getLogger(__name__)

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCONT, signal.SIGUSR2)
WAITED = frozenset({signal.SIGUSR1, signal.SIGCHLD, *FORWARDED})
# How long a launcher whose workload ended waits for the signal of a request it
# finds: the service writes request.json, then signals within a second or two.
LINGER_SECONDS = 10.0
_PR_SET_NO_NEW_PRIVS = 38


def _child_setup() -> None:
    """Runs in the workload's process between fork and exec."""
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")


def exit_code(status: int) -> int:
    """A wait status as a shell would report it: the exit code, or 128 + signal."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def final_request(jobdir: JobDir, job_id: int) -> exchange.CheckpointRequest | None:
    """Where the numbers the service reserved for checkpoints taken without a request
    start (final-request.json); None when there is none yet.
    Raises OSError or exchange.BadRequest for one that cannot be used."""
    try:
        data = jobdir.final_request_file.read_bytes()[: exchange.MAX_MESSAGE_BYTES + 1]
    except FileNotFoundError:
        return None
    return exchange.parse_request(data, job_id)


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
        # An earlier run's mark: this run's workload has not ended.
        self.jobdir.ended_file.unlink(missing_ok=True)
        if self.job.restart_count > 0:
            report = self._restore()
            write_report(self.jobdir, report)
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

    def _restore(self) -> RestartReport:
        """Try the job's images (launcher/restore.py); a restored tree becomes our child."""
        restorer = Restorer(
            self.job.job_id,
            self.job.restart_count,
            self.jobdir,
            self.dumper,
            self.settings,
            logs=self.logs,
            files=self.files,
        )
        report = restorer.restore()
        if restorer.child:
            self.child = restorer.child
        return report

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
                    self.end()
                    return status
            elif sig == signal.SIGUSR1:
                self.checkpoint()
            else:
                self._forward(sig)

    def end(self, linger: float = LINGER_SECONDS) -> None:
        """The workload has ended: mark it in the folder, then answer a request the
        service wrote before it saw the mark, once its signal comes.

        Slurm writes an error into the job's output when the batch process it is
        to signal is gone, so the service must not signal after we exit. It writes
        request.json, then looks for the mark, and signals only without it; we mark,
        then look for request.json, and wait for the signal when there is one. Either
        the service sees the mark, or we see its request (store/jobfs.py)."""
        try:
            write_atomic(self.jobdir.ended_file, f"{self.job.restart_count}\n".encode())
        except OSError as exc:
            log.warning("could not mark the workload ended: %s", exc)
            return
        deadline = time.monotonic() + linger
        while os.path.lexists(self.jobdir.request_file):  # the service takes it back on the mark
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("a request came without its signal within %.0f s", linger)
                return
            info = signal.sigtimedwait(WAITED, min(left, 0.5))
            if info is None or info.si_signo in (signal.SIGCHLD, signal.SIGCONT):
                continue
            if info.si_signo == signal.SIGUSR1:
                self._answer_ended()
            return  # answered, or Slurm is stopping the job

    def _answer_ended(self) -> None:
        """Answer the pending request: nothing is left to dump."""
        try:
            request = self._read_request()
        except exchange.BadRequest as exc:
            log.error("checkpoint request refused: %s", exc)
            return
        if request is None or os.path.lexists(self.jobdir.result_file(request.seq)):
            return
        result = self._result(request, False, error="the workload had ended")
        self.jobdir.results_dir.mkdir(mode=0o700, exist_ok=True)
        write_atomic(self.jobdir.result_file(request.seq), result.to_json())
        log.info("checkpoint %d not taken: the workload had ended", request.seq)

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

    def _reserved(self) -> CheckpointRequest | None:
        """The block of numbers the service reserved for checkpoints on Slurm's own
        signal (final-request.json: FINAL_BLOCK numbers from its seq), the block after
        the highest number used here when there is none yet; None, logged, when it
        cannot be used."""
        try:
            reserved = final_request(self.jobdir, self.job.job_id)
        except (OSError, exchange.BadRequest) as exc:
            log.error("%s unusable: %s", self.jobdir.final_request_file, exc)
            return None
        if reserved is None:
            # The service has not seen this job running yet (it was away, or its first
            # sync is to come): it has numbered nothing, or no more than this folder
            # shows, so the block after the highest number used here is free.
            start = self._highest_used() + 1
            log.info("no reserved numbers yet (the service has not seen this job): %d on", start)
            return CheckpointRequest(job_id=self.job.job_id, seq=start, kind=CheckpointKind.FINAL)
        if reserved.kind != CheckpointKind.FINAL:
            log.error("the reserved numbers' request is of kind %s, not final", reserved.kind)
            return None
        return reserved

    def _final(self, reserved: CheckpointRequest | None) -> CheckpointRequest | None:
        """A final checkpoint at the lowest reserved number this folder has no trace of
        (no result, image or staging leftover); None, logged, when there is none."""
        if reserved is None:
            log.warning("no final checkpoint: the reserved numbers cannot be used")
            return None
        last = min(reserved.seq + exchange.FINAL_BLOCK, MAX_SEQ + 1)
        for seq in range(reserved.seq, last):
            if not self._traced(seq):
                return CheckpointRequest(job_id=self.job.job_id, seq=seq, kind=CheckpointKind.FINAL)
        log.error(
            "no final checkpoint: the %d numbers reserved from %d are used"
            " (the service has not recorded them yet)",
            exchange.FINAL_BLOCK,
            reserved.seq,
        )
        return None

    def _highest_used(self) -> int:
        """The highest number with a result, an image or a dump's leftover here; 0 if none."""
        highest = 0
        for folder in (
            self.jobdir.results_dir,
            self.jobdir.checkpoints_dir,
            self.jobdir.staging_dir,
        ):
            try:
                names = os.listdir(folder)
            except FileNotFoundError:
                continue
            for name in names:
                head = name.split(".", 1)[0]
                if head.isdigit() and int(head) <= MAX_SEQ:
                    highest = max(highest, int(head))
        return highest

    def _traced(self, seq: int) -> bool:
        """True when number `seq` was used here: a result, an image, or a dump's leftover."""
        if os.path.lexists(self.jobdir.result_file(seq)) or os.path.lexists(
            self.jobdir.checkpoint(seq)
        ):
            return True
        prefix = f"{seq_name(seq)}."
        try:
            return any(name.startswith(prefix) for name in os.listdir(self.jobdir.staging_dir))
        except FileNotFoundError:
            return False

    def checkpoint(self) -> CheckpointResult | None:
        """Serve one SIGUSR1: dump the workload and write the result file."""
        try:
            request = self._read_request()
        except exchange.BadRequest as exc:
            log.error("checkpoint request refused: %s", exc)
            self.jobdir.results_dir.mkdir(mode=0o700, exist_ok=True)
            write_atomic(self.jobdir.results_dir / "rejected-request.txt", f"{exc}\n".encode())
            return None
        if request is not None and os.path.lexists(self.jobdir.result_file(request.seq)):
            # One dump per number: the number was answered already (our own final a
            # moment before the request came, or a request left behind when its
            # signal never came). That result stands and the service reads it; this
            # signal may be Slurm's own, so it still gets a final of its own.
            log.info("checkpoint %d was taken already; taking a final instead", request.seq)
            request = None
        if request is None:
            request = self._final(self._reserved())
            if request is None:
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
            return self._result(request, False, error=with_log(exc))
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
