"""Checkpoint requests and their results: the service's side of one checkpoint.

Order of every checkpoint, each step durable before the next:
1. the catalog records (job, seq) as REQUESTED (the database refuses a second
   request for a job with one in flight, whoever asks);
2. request.json goes into the job's folder, owned by the job's user;
3. the batch process gets SIGUSR1 (only it: the workload runs in its own session);
4. the launcher's result file is read, the image's manifest verified, and the
   checkpoint becomes VALID or FAILED with the reason; no result by the
   deadline is FAILED;
5. the job's list of valid images is published (atomically) and retention
   marks older images OBSOLETE; their files are deleted, then the rows DELETED.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from slurm_ckpt.db.catalog import Catalog, CheckpointRecord, DumpResult, JobRecord
from slurm_ckpt.db.retention import RetentionPolicy
from slurm_ckpt.db.states import CheckpointState
from slurm_ckpt.errors import (
    CatalogConflict,
    CatalogError,
    CkptError,
    IllegalTransition,
    StoreError,
)
from slurm_ckpt.service.policy import Admission, FailureTracker
from slurm_ckpt.slurm.base import SlurmAdapter
from slurm_ckpt.store.atomic import write_atomic
from slurm_ckpt.store.checksum import hash_file
from slurm_ckpt.store.layout import JobDir
from slurm_ckpt.store.manifest import MANIFEST_NAME
from slurm_ckpt.store.verify import verify_checkpoint, write_published_images
from slurm_ckpt.store.writer import clean_staging

log = logging.getLogger(__name__)

MAX_RESULT_BYTES = 64 * 1024


class Sent(StrEnum):
    """What became of an attempt to request a checkpoint."""

    SENT = "sent"
    BACKING_OFF = "backing off"  # recent failures: not before the back-off ends
    ADMISSION_FULL = "admission full"  # too many dumps in flight: try again shortly
    IN_FLIGHT = "in flight"  # this job already has one
    FAILED = "failed"  # recorded as FAILED with the reason


@dataclass(frozen=True)
class InFlight:
    job: JobRecord
    checkpoint: CheckpointRecord
    deadline: datetime
    kind: str


@dataclass(frozen=True)
class Outcome:
    """What became of one request, for metrics and callers."""

    job: JobRecord
    seq: int
    valid: bool
    detail: str
    total_bytes: int = 0
    dump_seconds: float = 0.0
    freeze_seconds: float = 0.0
    kind: str = "periodic"


class Checkpointer:
    """Sends checkpoint requests and collects their results."""

    def __init__(
        self,
        catalog: Catalog,
        slurm: SlurmAdapter,
        store_root: Path,
        *,
        admission: Admission,
        failures: FailureTracker,
        deadline: timedelta,
        retention: RetentionPolicy,
        on_outcome: Callable[[Outcome], None] = lambda outcome: None,
    ) -> None:
        self.catalog = catalog
        self.slurm = slurm
        self.store_root = store_root
        self.admission = admission
        self.failures = failures
        self.deadline = deadline
        self.retention = retention
        self.on_outcome = on_outcome
        self._lock = threading.Lock()
        # One completer at a time: the collect task and the sync task both complete.
        self._completing = threading.Lock()
        self._in_flight: dict[int, InFlight] = {}  # by checkpoint id

    def jobdir(self, job: JobRecord) -> JobDir:
        return JobDir(self.store_root, job.slurm_job_id)

    def in_flight(self) -> list[InFlight]:
        with self._lock:
            return list(self._in_flight.values())

    def busy(self, job_id: int) -> bool:
        with self._lock:
            return any(f.job.id == job_id for f in self._in_flight.values())

    # -- request ---------------------------------------------------------------

    def request(self, job: JobRecord, now: datetime, *, kind: str = "periodic") -> Sent:
        """Ask for a checkpoint of `job` now, if the back-off and admission allow."""
        retry_at = self.failures.retry_at(job.id)
        if retry_at is not None and retry_at > now and kind == "periodic":
            log.debug("job %d: backing off until %s", job.slurm_job_id, retry_at)
            return Sent.BACKING_OFF
        if self.busy(job.id):
            return Sent.IN_FLIGHT
        if not self.admission.try_acquire(job.id, str(self.store_root)):
            log.debug("job %d: admission full, not now", job.slurm_job_id)
            return Sent.ADMISSION_FULL
        try:
            checkpoint = self.catalog.request_checkpoint(job.id, now)
        except CatalogConflict as exc:
            self.admission.release(job.id)
            log.info("job %d: %s", job.slurm_job_id, exc)
            return Sent.IN_FLIGHT
        except BaseException:
            self.admission.release(job.id)
            raise
        flight = InFlight(job, checkpoint, now + self.deadline, kind)
        with self._lock:
            self._in_flight[checkpoint.id] = flight
        try:
            self._send(flight)
        except (CkptError, OSError) as exc:
            self._finish(flight, now, valid=False, detail=f"request not delivered: {exc}")
            return Sent.FAILED
        log.info("job %d: checkpoint %d requested (%s)", job.slurm_job_id, checkpoint.seq, kind)
        return Sent.SENT

    def _send(self, flight: InFlight) -> None:
        jobdir = self.jobdir(flight.job)
        try:
            st = os.stat(jobdir.path, follow_symlinks=False)
        except FileNotFoundError as exc:
            raise StoreError(
                f"{jobdir.path} does not exist: the job is not running under the launcher"
            ) from exc
        if st.st_uid != flight.job.uid:
            raise StoreError(f"{jobdir.path} is owned by uid {st.st_uid}, not {flight.job.uid}")
        body = {
            "job_id": flight.job.slurm_job_id,
            "seq": flight.checkpoint.seq,
            "kind": flight.kind,
            "requested_at": flight.checkpoint.created_at.isoformat(),
        }
        write_atomic(jobdir.request_file, json.dumps(body).encode(), owner=(st.st_uid, st.st_gid))
        self.slurm.signal_batch(flight.job.slurm_job_id, "USR1")

    # -- collect ---------------------------------------------------------------

    def adopt(self, checkpoint: CheckpointRecord, job: JobRecord) -> None:
        """Follow a REQUESTED checkpoint found in the catalog (after a restart of the service).

        The previous instance may have died before the request reached the launcher,
        so it is sent again unless its result is there: harmless if it had arrived,
        since the launcher answers a seq only once.
        """
        flight = InFlight(job, checkpoint, checkpoint.created_at + self.deadline, "periodic")
        with self._lock:
            self._in_flight[checkpoint.id] = flight
        self.admission.try_acquire(job.id, str(self.store_root))
        if self._read_result(flight) is None:
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
            result = self._read_result(flight)
            if result is not None:
                outcomes.append(self._complete(flight, result, now))
            elif now >= flight.deadline:
                outcomes.append(
                    self._finish(
                        flight,
                        now,
                        valid=False,
                        detail=f"no result within {self.deadline.total_seconds():.0f}s",
                    )
                )
        return outcomes

    def abandon_gone(self, running: dict[int, JobRecord], now: datetime) -> list[Outcome]:
        """Fail requests no launcher will answer: the job stopped running or was requeued
        since (the new incarnation never saw the request). Results that did arrive count."""
        with self._completing:
            outcomes = self._collect(now)
            for flight in self.in_flight():
                job = running.get(flight.job.id)
                if job is None:
                    reason = "the job stopped running before it answered"
                elif job.restart_count != flight.checkpoint.job_restart_count:
                    reason = (
                        f"the job was requeued (restart {job.restart_count}) before it answered"
                    )
                else:
                    continue
                outcomes.append(self._finish(flight, now, valid=False, detail=reason))
            return outcomes

    def _read_result(self, flight: InFlight) -> dict[str, Any] | None:
        path = self.jobdir(flight.job).result_file(flight.checkpoint.seq)
        return self._read_result_file(path, flight.checkpoint.seq)

    @staticmethod
    def _read_result_file(path: Path, seq: int) -> dict[str, Any] | None:
        """The launcher's result for `seq`; None while there is none."""
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_RESULT_BYTES + 1)
        except FileNotFoundError:
            return None
        try:
            result = json.loads(data) if len(data) <= MAX_RESULT_BYTES else None
        except ValueError:
            result = None
        if not isinstance(result, dict) or result.get("seq") != seq:
            return {"ok": False, "error": f"unreadable result file {path}"}
        return result

    def _complete(self, flight: InFlight, result: dict[str, Any], now: datetime) -> Outcome:
        if not result.get("ok"):
            return self._finish(flight, now, valid=False, detail=str(result.get("error")))
        try:
            dump = self.examine(flight.job, flight.checkpoint.seq)
        except (CkptError, OSError) as exc:
            return self._finish(flight, now, valid=False, detail=f"image refused: {exc}")
        return self._finish(flight, now, valid=True, detail="", dump=dump)

    def examine(self, job: JobRecord, seq: int) -> DumpResult:
        """Check a committed image's structure and owner. Raises StoreError, OSError."""
        path = self.jobdir(job).checkpoint(seq)
        # Structure only: the launcher hashed it a moment ago; restores re-hash.
        manifest = verify_checkpoint(path)
        if manifest.uid != job.uid or manifest.job_id != job.slurm_job_id:
            raise StoreError(f"manifest of {path} names uid {manifest.uid}, job {manifest.job_id}")
        return DumpResult(
            store_path=str(path),
            total_bytes=manifest.total_size,
            file_count=len(manifest.files),
            dump_seconds=manifest.dump_seconds,
            freeze_seconds=manifest.freeze_seconds,
            criu_version=manifest.criu_version,
            manifest_checksum=f"xxh3_128:{hash_file(path / MANIFEST_NAME)}",
        )

    def adopt_unrequested(self, job: JobRecord, now: datetime) -> list[int]:
        """Record the launcher's own final checkpoints (taken on Slurm's signal before a
        preemption or the time limit) that the catalog does not know, and publish them."""
        known = {c.seq for c in self.catalog.checkpoints(job.id)}
        jobdir = self.jobdir(job)
        adopted = []
        for seq in jobdir.committed_seqs():
            if seq in known or self.busy(job.id):
                continue
            result = self._read_result_file(jobdir.result_file(seq), seq)
            if not result or not result.get("ok"):
                continue
            try:
                dump = self.examine(job, seq)
                self.catalog.adopt_checkpoint(job.id, seq, dump, now)
            except (CkptError, OSError) as exc:
                log.warning(
                    "job %d: final checkpoint %d not adopted: %s", job.slurm_job_id, seq, exc
                )
                continue
            adopted.append(seq)
            log.info("job %d: adopted final checkpoint %d", job.slurm_job_id, seq)
        if adopted:
            self.publish(job)
        return adopted

    def _finish(
        self,
        flight: InFlight,
        now: datetime,
        *,
        valid: bool,
        detail: str,
        dump: DumpResult | None = None,
    ) -> Outcome:
        job, checkpoint = flight.job, flight.checkpoint
        try:
            if valid and dump is not None:
                self.catalog.mark_valid(checkpoint.id, dump, now)
            else:
                self.catalog.mark_failed(checkpoint.id, detail, now)
        except IllegalTransition:
            # Already completed (by another instance, or before a crash): nothing to add.
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
            try:
                self.publish(job)
                self.apply_retention(job, now)
            except (CkptError, OSError) as exc:
                # Retried after the next success; the newest image is listed either way
                # once a publish goes through.
                log.error("job %d: images not published or pruned: %s", job.slurm_job_id, exc)
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
            kind=flight.kind,
        )
        self.on_outcome(outcome)
        return outcome

    # -- images ----------------------------------------------------------------

    def publish(self, job: JobRecord) -> None:
        """Write the list of valid images the launcher restores from, newest first."""
        seqs = [c.seq for c in self.catalog.valid_checkpoints(job.id)]
        write_published_images(self.jobdir(job), seqs)

    def apply_retention(self, job: JobRecord, now: datetime) -> None:
        """Mark, publish, delete: a listed image is never deleted."""
        decided = self.catalog.apply_retention(job.id, self.retention, now)
        if not decided.obsolete:
            return
        self.publish(job)
        for checkpoint in decided.obsolete:
            path = self.jobdir(job).checkpoint(checkpoint.seq)
            shutil.rmtree(path, ignore_errors=True)
            if not path.exists():
                self.catalog.mark_deleted(checkpoint.id)

    def delete_obsolete(self, job: JobRecord) -> None:
        """Finish deletions a crash interrupted."""
        for checkpoint in self.catalog.checkpoints(job.id, states=[CheckpointState.OBSOLETE]):
            path = self.jobdir(job).checkpoint(checkpoint.seq)
            shutil.rmtree(path, ignore_errors=True)
            if not path.exists():
                self.catalog.mark_deleted(checkpoint.id)

    def clean_staging(self, job: JobRecord) -> None:
        """Remove leftovers of dumps cut off by a crash; only when none is in flight."""
        if self.busy(job.id):
            return
        jobdir = self.jobdir(job)
        if jobdir.path.exists():
            for removed in clean_staging(jobdir):
                log.info("job %d: removed unfinished dump %s", job.slurm_job_id, removed)
