"""The files the launcher and the service exchange through the job's folder. Pure.

- request.json (service -> launcher): which checkpoint to take.
- results/<seq>.json (launcher -> service): how a checkpoint went.
- restarts/<restart count>.json (launcher -> service): how a restart went.

A request comes from outside the launcher's control, so it is parsed strictly.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from slurm_ckpt.errors import LauncherError

KINDS = ("periodic", "final", "admin")
MAX_SEQ = 999_999  # the store names checkpoint folders with six digits
MAX_REQUEST_BYTES = 4096

# How a restart went, as reported to the service.
RESTORED = "restored"  # from the newest image
FELL_BACK = "fell_back"  # from an older image, the newer ones being unusable
FRESH_START = "fresh_start"  # no usable image: the script started from the beginning
FAILED = "failed"  # no usable image and the site wants such jobs to fail


class BadRequest(LauncherError):
    """A checkpoint request file the launcher cannot act on."""


@dataclass(frozen=True)
class CheckpointRequest:
    seq: int
    kind: str


def parse_request(data: bytes, job_id: int) -> CheckpointRequest:
    """Parse request.json. Raises BadRequest with a one-line reason."""
    if len(data) > MAX_REQUEST_BYTES:
        raise BadRequest(f"request file is {len(data)} bytes, more than {MAX_REQUEST_BYTES}")
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request file is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise BadRequest("request file must hold a JSON object")
    unknown = set(raw) - {"job_id", "seq", "kind", "requested_at"}
    if unknown:
        raise BadRequest(f"request file has unknown keys: {', '.join(sorted(unknown))}")
    if raw.get("job_id") != job_id:
        raise BadRequest(f"request is for job {raw.get('job_id')!r}, this is job {job_id}")
    seq = raw.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq <= MAX_SEQ:
        raise BadRequest(f"request seq must be an integer from 1 to {MAX_SEQ}, got {seq!r}")
    kind = raw.get("kind", "periodic")
    if kind not in KINDS:
        raise BadRequest(f"request kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return CheckpointRequest(seq=seq, kind=kind)


@dataclass(frozen=True)
class CheckpointResult:
    job_id: int
    seq: int
    kind: str
    ok: bool
    finished_at: datetime
    restart_count: int
    error: str | None = None
    path: str | None = None  # relative to the job's folder
    total_bytes: int = 0
    file_count: int = 0
    dump_seconds: float = 0.0
    freeze_seconds: float = 0.0
    commit_seconds: float = 0.0  # hashing, manifest, rename
    criu_log: str | None = None

    def to_json(self) -> bytes:
        data: dict[str, Any] = asdict(self)
        data["finished_at"] = self.finished_at.isoformat()
        return json.dumps(data, sort_keys=True).encode()


@dataclass(frozen=True)
class RestartReport:
    job_id: int
    restart_count: int
    outcome: str  # RESTORED, FELL_BACK, FRESH_START or FAILED
    at: datetime
    seq: int | None = None  # the image restored from
    attempts: list[dict[str, Any]] = field(default_factory=list)  # [{"seq": N, "error": "..."}]
    restore_seconds: float = 0.0  # the image's verify, roll-back and CRIU restore
    launcher_seconds: float = 0.0  # from the launcher's process start to this report

    def to_json(self) -> bytes:
        data: dict[str, Any] = asdict(self)
        data["at"] = self.at.isoformat()
        return json.dumps(data, sort_keys=True).encode()
