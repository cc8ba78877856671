"""Checkpoint requests and their results: the service's side of one checkpoint.

Order of every checkpoint, each step durable before the next:
1. the catalog records (job, seq) as REQUESTED (the database refuses a second
   request for a job with one in flight, whoever asks);
2. request.json goes into the job's folder, owned by the job's user;
3. the batch process gets SIGUSR1 (only it: the workload runs in its own session);
4. the launcher's result file is read, the image's manifest verified, and the
   checkpoint becomes VALID or FAILED with the reason; no result by the
   deadline is FAILED (and watched a while longer: late.py);
5. the job's list of valid images is published (atomically) and retention
   marks older images OBSOLETE; their files are deleted, then the rows DELETED
   (images.py).

Here: the Checkpointer (request, collect, complete). The launcher's own final
checkpoints, and the number reserved for them, are in finals.py; the words
shared with other modules are in requests.py.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime, timedelta

from slurm_ckpt.db.catalog import Catalog, CheckpointRecord, DumpResult, JobRecord
from slurm_ckpt.db.states import CheckpointKind, JobState
from slurm_ckpt.errors import CatalogConflict, CatalogError, CkptError, IllegalTransition
from slurm_ckpt.exchange import CheckpointRequest, ResultReply
from slurm_ckpt.service.finals import Finals
from slurm_ckpt.service.images import JobImages
from slurm_ckpt.service.late import LateWatch
from slurm_ckpt.service.policy import Admission, FailureTracker
from slurm_ckpt.service.requests import InFlight, Outcome, Sent, gone
from slurm_ckpt.slurm.base import SlurmAdapter
from slurm_ckpt.store import untrusted
from slurm_ckpt.store.jobfs import JobFiles

log = logging.getLogger(__name__)

ENDED = "the job's workload has ended"


@dataclass(eq=False)
class Checkpointer:
    """Sends checkpoint requests and collects their results.

    Every file operation in a job's folder goes through `files` (store.jobfs:
    as the job's owner, bounded, with a time limit) or `images`; everything read
    there is hostile input. One job's bad file or stuck folder fails that job's
    checkpoint only.
    """

    catalog: Catalog
    slurm: SlurmAdapter
    files: JobFiles
    images: JobImages
    finals: Finals
    _: KW_ONLY
    admission: Admission
    failures: FailureTracker
    deadline: timedelta
    on_outcome: Callable[[Outcome], None] = lambda outcome: None
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    # One completer at a time: the collect task and the sync task both complete.
    _completing: threading.Lock = field(init=False, default_factory=threading.Lock)
    _in_flight: dict[int, InFlight] = field(init=False, default_factory=dict)  # by checkpoint id
    _late: LateWatch = field(init=False)  # FAILED at their deadline, still watched

    def __post_init__(self) -> None:
        self._late = LateWatch(self.catalog, self.images, deadline=self.deadline)

    def in_flight(self) -> list[InFlight]:
        with self._lock:
            return list(self._in_flight.values())

    def busy(self, job_id: int) -> bool:
        with self._lock:
            return any(f.job.id == job_id for f in self._in_flight.values())

    # -- request ---------------------------------------------------------------

    def forget(self, job_id: int) -> None:
        """The job stopped for good: its failures no longer delay anything."""
        self.failures.forget(job_id)
        self.finals.forget(job_id)

    def request(
        self, job: JobRecord, now: datetime, *, kind: CheckpointKind = CheckpointKind.PERIODIC
    ) -> Sent:
        """Ask for a checkpoint of `job` now, if the back-off and admission allow."""
        retry_at = self.failures.retry_at(job.id)
        if retry_at is not None and retry_at > now and kind == CheckpointKind.PERIODIC:
            log.debug("job %d: backing off until %s", job.slurm_job_id, retry_at)
            return Sent.BACKING_OFF
        if self.busy(job.id):
            return Sent.IN_FLIGHT
        # A final the launcher took while the job ran on holds the next number: record
        # it first, or this request would be answered by that older image.
        self.finals.settle(job, now)
        if not self.admission.try_acquire(job.id, str(self.files.store_root)):
            log.debug("job %d: admission full, not now", job.slurm_job_id)
            return Sent.ADMISSION_FULL
        try:
            checkpoint = self.catalog.request_checkpoint(job.id, now, kind)
        except CatalogConflict as exc:
            self.admission.release(job.id)
            log.info("job %d: %s", job.slurm_job_id, exc)
            return Sent.IN_FLIGHT
        except BaseException:
            self.admission.release(job.id)
            raise
        flight = InFlight(job, checkpoint, now + self.deadline)
        with self._lock:
            self._in_flight[checkpoint.id] = flight
        try:
            delivered = self._send(flight)
        except (CkptError, OSError) as exc:
            self._finish(flight, now, valid=False, detail=f"request not delivered: {exc}")
            # request.json may be there: Slurm's own signal would have it answered.
            self._late.watch(flight)
            return Sent.FAILED
        if not delivered:
            # Nothing left to save, and not the job's fault: no back-off for it.
            self._finish(flight, now, valid=False, detail=ENDED, counted=False)
            return Sent.FAILED
        log.info("job %d: checkpoint %d requested (%s)", job.slurm_job_id, checkpoint.seq, kind)
        return Sent.SENT

    def _send(self, flight: InFlight) -> bool:
        """Write the request and signal the batch process; False, with nothing sent,
        when the launcher has marked its workload ended (a signal to a batch process
        that is gone puts Slurm's error line into the job's output)."""
        request = CheckpointRequest(
            job_id=flight.job.slurm_job_id,
            seq=flight.checkpoint.seq,
            kind=flight.checkpoint.kind,
            requested_at=flight.checkpoint.created_at,
        )
        # As the job's owner, into the owner's own folder (refused when it is not).
        if not self.files.write_request(self.images.ref(flight.job), request.to_json()):
            log.info("job %d: not requested: %s", flight.job.slurm_job_id, ENDED)
            return False
        self.slurm.signal_batch(flight.job.slurm_job_id, "USR1")
        return True

    # -- collect ---------------------------------------------------------------

    def adopt(self, checkpoint: CheckpointRecord, job: JobRecord) -> None:
        """Follow a REQUESTED checkpoint found in the catalog (after a restart of the service).

        The previous instance may have died before the request reached the launcher,
        so it is sent again unless its result is there: harmless if it had arrived,
        since the launcher answers a seq only once.
        """
        flight = InFlight(job, checkpoint, checkpoint.created_at + self.deadline)
        with self._lock:
            self._in_flight[checkpoint.id] = flight
        self.admission.try_acquire(job.id, str(self.files.store_root))
        if self.images.reply(flight.job, checkpoint.seq) is None:
            try:
                self._send(flight)
            except (CkptError, OSError) as exc:
                log.info(
                    "job %d: request %d not sent again: %s", job.slurm_job_id, checkpoint.seq, exc
                )

    def collect(self, now: datetime) -> list[Outcome]:
        """Complete every request whose result arrived or whose deadline passed."""
        with self._completing:
            return self._collect(now)

    def _collect(self, now: datetime) -> list[Outcome]:
        outcomes = []
        for flight in self.in_flight():
            try:
                outcome = self._collect_one(flight, now)
            except CatalogError:
                raise  # the catalog is down: the whole pass waits for it
            except Exception as exc:
                # One job's unexpected failure ends that job's request, nobody else's.
                log.exception("job %d: result not collected", flight.job.slurm_job_id)
                outcome = self._finish(
                    flight, now, valid=False, detail=f"internal error: {untrusted.text(exc, 200)}"
                )
            if outcome is not None:
                outcomes.append(outcome)
        self._late.collect(now)
        return outcomes

    def _collect_one(self, flight: InFlight, now: datetime) -> Outcome | None:
        reply = self.images.reply(flight.job, flight.checkpoint.seq)
        if reply is not None:
            return self._complete(flight, reply, now)
        if now >= flight.deadline:
            outcome = self._finish(
                flight,
                now,
                valid=False,
                detail=f"no result within {self.deadline.total_seconds():.0f}s",
            )
            self._late.watch(flight)
            return outcome
        return None

    def abandon_gone(self, running: dict[int, JobRecord], now: datetime) -> list[Outcome]:
        """Fail requests no launcher will answer: the job stopped running or was requeued
        since (the new incarnation never saw the request). Results that did arrive count."""
        with self._completing:
            outcomes = self._collect(now)
            for flight in self.in_flight():
                reason = gone(flight, running)
                if reason is not None:
                    outcomes.append(self._finish(flight, now, valid=False, detail=reason))
            self._late.drop_gone(running)
            return outcomes

    def _complete(self, flight: InFlight, reply: ResultReply, now: datetime) -> Outcome:
        if not reply.ok:
            return self._finish(flight, now, valid=False, detail=reply.error)
        try:
            dump = self.images.examine(flight.job, flight.checkpoint.seq)
        except (CkptError, OSError) as exc:
            return self._finish(
                flight, now, valid=False, detail=f"image refused: {untrusted.text(exc, 500)}"
            )
        return self._finish(flight, now, valid=True, detail="", dump=dump)

    def interrupted(self, job: JobRecord, now: datetime) -> None:
        """A job stopped running or was requeued: its launcher may have taken a final
        checkpoint of its own; a stopped one leaves no dump running to stage."""
        # No collect here: this runs in the sync pass, which holds the requeue lock that a
        # completed chain step takes (a deadlock); the request's own collect records it.
        if not self.busy(job.id):  # else the request keeps its number: collect records it
            self.finals.record(job, now)
        if job.state == JobState.RUNNING:
            return
        try:
            self.clean_staging(job)
        except CatalogError:
            raise
        except Exception as exc:
            log.warning("job %d: staging not cleaned: %s", job.slurm_job_id, exc)

    def _finish(
        self,
        flight: InFlight,
        now: datetime,
        *,
        valid: bool,
        detail: str,
        dump: DumpResult | None = None,
        counted: bool = True,
    ) -> Outcome:
        """Record the request's end. `counted`: a failure that counts toward back-off."""
        job, checkpoint = flight.job, flight.checkpoint
        detail = untrusted.text(detail)
        recorded = True
        try:
            if valid and dump is not None:
                self.catalog.mark_valid(checkpoint.id, dump, now)
            else:
                self.catalog.mark_failed(checkpoint.id, detail, now)
        except IllegalTransition:
            # Already completed (by another instance, or before a crash): nothing to add.
            recorded = False
            log.info(
                "job %d: checkpoint %d was completed elsewhere", job.slurm_job_id, checkpoint.seq
            )
        except CatalogError:
            # The catalog is down: the request stays in flight and the next collect
            # completes it; nothing is decided without the catalog.
            raise
        with self._lock:
            self._in_flight.pop(checkpoint.id, None)
        self.admission.release(job.id)
        if valid:
            self.failures.succeeded(job.id)
            log.info("job %d: checkpoint %d VALID", job.slurm_job_id, checkpoint.seq)
            self.images.after_valid(job, now)
        elif not counted:
            log.info("job %d: checkpoint %d FAILED: %s", job.slurm_job_id, checkpoint.seq, detail)
        else:
            state = self.failures.failed(job.id, now)
            log.warning(
                "job %d: checkpoint %d FAILED (%d in a row): %s",
                job.slurm_job_id,
                checkpoint.seq,
                state.count,
                detail,
            )
            if state.give_up:
                self.catalog.mark_uncheckpointable(job.id, detail, now)
                log.warning("job %d: marked uncheckpointable: %s", job.slurm_job_id, detail)
        outcome = Outcome(
            job=job,
            seq=checkpoint.seq,
            valid=valid,
            detail=detail,
            total_bytes=dump.total_bytes if dump else 0,
            dump_seconds=dump.dump_seconds if dump else 0.0,
            freeze_seconds=dump.freeze_seconds if dump else 0.0,
            kind=checkpoint.kind,
            recorded=recorded,
        )
        self.finals.reserve(job)  # the number after this one
        self.on_outcome(outcome)
        return outcome

    def clean_staging(self, job: JobRecord) -> None:
        """Remove leftovers of dumps cut off by a crash; only when none is in flight."""
        if self.busy(job.id):
            return
        self.images.clean_staging(job)
