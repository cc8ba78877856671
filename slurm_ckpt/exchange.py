"""What the launcher and the service exchange through the job's folder: one typed
protocol for both ends. Pure: documents in, documents out; paths come from
store.layout.JobDir.

- request.json (service -> launcher): which checkpoint to take, and why.
- results/<seq>.json (launcher -> service): how that checkpoint went.
- restarts/<restart>.json (launcher -> service): how a restart went.
- images.json (service -> launcher): the valid images, newest first.

The launcher runs as the job's user, and the folder is theirs: to the
service every result and report is hostile. `read_result` and
`read_restart` turn whatever a parsed document holds into a small frozen
value (an outcome from a fixed set, integers in the catalog's range, texts
without control characters and of bounded length) and never raise. The
launcher parses a request strictly: it acts on it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from slurm_ckpt.db.states import CheckpointKind
from slurm_ckpt.errors import BadImageList, BadPath, LauncherError
from slurm_ckpt.store import untrusted
from slurm_ckpt.store.layout import MAX_SEQ, check_seq

# Every request, result and restart report is read up to this size.
MAX_MESSAGE_BYTES = 64 * 1024
# final-request.json reserves this many numbers from its seq for the launcher's own
# final checkpoints, so that they go on while the service is away (service/finals.py).
FINAL_BLOCK = 16
# images.json names every valid image: a job without retention may have thousands.
MAX_IMAGES_LIST_BYTES = 16 * 1024 * 1024
MAX_ATTEMPTS_SHOWN = 10  # failed images named in a restart's event
MAX_ATTEMPT_ERROR = 500  # characters of each image's reason


class RestartOutcome(StrEnum):
    """How a restart went."""

    RESTORED = "restored"  # from the newest image
    FELL_BACK = "fell_back"  # from an older image, the newer ones being unusable
    FRESH_START = "fresh_start"  # no usable image: the script started from the beginning
    FAILED = "failed"  # no usable image and the site wants such jobs to fail


_OUTCOMES = frozenset(RestartOutcome)
_KINDS = frozenset(CheckpointKind)


class BadRequest(LauncherError):
    """A checkpoint request file the launcher cannot act on."""


def _iso(value: datetime) -> str:
    return value.isoformat()


def _report(doc: CheckpointResult | RestartReport) -> bytes:
    """The launcher's result or restart file: its fields, enums as their values (they
    are str), times in ISO 8601."""
    data = {k: _iso(v) if isinstance(v, datetime) else v for k, v in asdict(doc).items()}
    return json.dumps(data, sort_keys=True).encode()


# -- request.json -------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointRequest:
    job_id: int
    seq: int
    kind: CheckpointKind
    requested_at: datetime | None = None

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {"job_id": self.job_id, "seq": self.seq, "kind": str(self.kind)}
        if self.requested_at is not None:
            doc["requested_at"] = _iso(self.requested_at)
        return json.dumps(doc, sort_keys=True).encode()


def parse_request(data: bytes, job_id: int) -> CheckpointRequest:
    """Parse request.json for `job_id`. Raises BadRequest with a one-line reason."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise BadRequest(f"request file is {len(data)} bytes, more than {MAX_MESSAGE_BYTES}")
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest(f"request file is not JSON: {untrusted.text(exc, 200)}") from exc
    if not isinstance(raw, dict):
        raise BadRequest("request file must hold a JSON object")
    unknown = set(raw) - {"job_id", "seq", "kind", "requested_at"}
    if unknown:
        shown = untrusted.text(", ".join(sorted(unknown)), 200)
        raise BadRequest(f"request file has unknown keys: {shown}")
    if raw.get("job_id") != job_id:
        raise BadRequest(f"request is for job {raw.get('job_id')!r:.40}, this is job {job_id}")
    seq = raw.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq <= MAX_SEQ:
        raise BadRequest(f"request seq must be an integer from 1 to {MAX_SEQ}, got {seq!r:.40}")
    kind = raw.get("kind", CheckpointKind.PERIODIC.value)
    if not isinstance(kind, str) or kind not in _KINDS:
        kinds = ", ".join(CheckpointKind)
        raise BadRequest(f"request kind must be one of {kinds}, got {kind!r:.40}")
    return CheckpointRequest(job_id=job_id, seq=seq, kind=CheckpointKind(kind))


# -- results/<seq>.json ---------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointResult:
    """The launcher's answer to one request (or to its own final checkpoint)."""

    job_id: int
    seq: int
    kind: CheckpointKind
    ok: bool
    finished_at: datetime
    restart_count: int
    error: str | None = None
    # What the job's user and the benchmarks read; the service takes sizes and
    # times from the verified manifest instead.
    dump_seconds: float = 0.0
    freeze_seconds: float = 0.0
    commit_seconds: float = 0.0  # hashing, manifest, rename

    def to_json(self) -> bytes:
        return _report(self)


@dataclass(frozen=True)
class ResultReply:
    """A result as the service takes it: did the dump of `seq` work, and if not, why."""

    ok: bool
    error: str = ""


def read_result(doc: Any, seq: int) -> ResultReply:
    """The answer for request `seq` held in a parsed result file."""
    if not isinstance(doc, dict) or doc.get("seq") != seq or isinstance(doc.get("seq"), bool):
        return ResultReply(False, f"unreadable result file for checkpoint {seq}")
    if doc.get("ok") is True:
        return ResultReply(True)
    return ResultReply(False, untrusted.text(doc.get("error") or "the launcher gave no reason"))


# -- restarts/<restart>.json ------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One image a restart tried and could not use."""

    seq: int
    error: str


@dataclass(frozen=True)
class RestartReport:
    job_id: int
    restart_count: int
    outcome: RestartOutcome
    at: datetime
    seq: int | None = None  # the image restored from
    attempts: list[Attempt] = field(default_factory=list)
    restore_seconds: float = 0.0  # the image's verify, roll-back and CRIU restore
    launcher_seconds: float = 0.0  # from the launcher's process start to this report

    def to_json(self) -> bytes:
        return _report(self)


@dataclass(frozen=True)
class RestartReply:
    """A restart report as the service takes it."""

    outcome: RestartOutcome
    seq: int | None  # the image restored from
    failures: str  # "image 3: reason; image 2: reason"
    launcher_seconds: float | None


def read_restart(doc: Any) -> RestartReply:
    """The outcome held in a parsed restart report; FAILED when it is malformed."""
    if not isinstance(doc, dict):
        return RestartReply(RestartOutcome.FAILED, None, "unreadable report", None)
    outcome = doc.get("outcome")
    attempts = doc.get("attempts")
    failures = "; ".join(
        f"image {untrusted.integer(a.get('seq'), minimum=1)}: "
        + untrusted.text(a.get("error"), MAX_ATTEMPT_ERROR)
        for a in (attempts[:MAX_ATTEMPTS_SHOWN] if isinstance(attempts, list) else [])
        if isinstance(a, dict)
    )
    took = doc.get("launcher_seconds")
    seconds = (
        float(took)
        if isinstance(took, int | float) and not isinstance(took, bool) and 0 < took < 1e9
        else None
    )
    return RestartReply(
        outcome=(
            RestartOutcome(outcome)
            if isinstance(outcome, str) and outcome in _OUTCOMES
            else RestartOutcome.FAILED
        ),
        seq=untrusted.integer(doc.get("seq"), minimum=1, maximum=MAX_SEQ),
        failures=untrusted.text(failures),
        launcher_seconds=seconds,
    )


def unreadable_restart(reason: str) -> RestartReply:
    """What a restart report that could not be read at all stands for."""
    return RestartReply(RestartOutcome.FAILED, None, untrusted.text(reason), None)


# -- images.json ------------------------------------------------------------------------


def images_list(job_id: int, seqs: Sequence[int]) -> bytes:
    """The content of images.json publishing `seqs` (any order; stored newest first).

    Raises BadPath for an invalid or repeated seq.
    """
    ordered = sorted((check_seq(s) for s in seqs), reverse=True)
    if len(set(ordered)) != len(ordered):
        raise BadPath(f"repeated sequence number in {list(seqs)!r:.80}", value=repr(list(seqs)))
    doc = {"job_id": job_id, "images": [{"seq": s} for s in ordered]}
    return json.dumps(doc, sort_keys=True).encode() + b"\n"


def parse_images_list(doc: Any, job_id: int, where: str) -> list[int]:
    """The seqs a parsed images.json publishes, newest first ({"job_id": N,
    "images": [{"seq": N}, ...]}, strictly). Raises BadImageList."""
    if not isinstance(doc, dict) or set(doc) != {"job_id", "images"}:
        raise BadImageList(f'{where}: must be an object with exactly "job_id" and "images"')
    if doc["job_id"] != job_id or isinstance(doc["job_id"], bool):
        raise BadImageList(f"{where}: job_id {doc['job_id']!r:.40} is not {job_id}")
    images = doc["images"]
    if not isinstance(images, list):
        raise BadImageList(f'{where}: "images" must be a list')
    seqs = [_image_seq(item, where) for item in images]
    if any(a <= b for a, b in zip(seqs, seqs[1:], strict=False)):
        raise BadImageList(f"{where}: images must be newest first without repeats")
    return seqs


def _image_seq(item: Any, where: str) -> int:
    if not isinstance(item, dict) or set(item) != {"seq"}:
        raise BadImageList(f'{where}: each image must be an object with exactly "seq"')
    try:
        return check_seq(item["seq"])
    except BadPath as err:
        raise BadImageList(f"{where}: {err}") from err
