"""The manifest: what one checkpoint image holds, written last into its folder.

A JSON object with sorted keys. Reading is strict: an unknown format version,
a missing or unknown key, a value of the wrong type or a file name that is not
a plain name is a ManifestError, because a restore must never act on a
description it only half understands.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slurm_ckpt.errors import ManifestError
from slurm_ckpt.store import untrusted
from slurm_ckpt.store.layout import MAX_JOB_ID, MAX_SEQ

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"

_HEX_RE = re.compile(r"[0-9a-f]{1,128}")
_STAMP_RE = re.compile(r"\d{1,20}:\d{1,20}:-?\d{1,25}:-?\d{1,25}")
# The catalog's columns and common sense: a manifest is written by the job's user.
_STRING_LIMITS = {"criu_version": 32, "kernel": 256, "checksum_algorithm": 32}
MAX_FILES = 100_000
MAX_OPEN_FILES = 10_000


def check_plain_name(name: str) -> str:
    """Return `name` if it can name a file directly inside an image folder.

    Raises ManifestError for '', '.', '..', names with '/' or NUL, and the manifest's own name.
    """
    if (
        not isinstance(name, str)
        or name in ("", ".", "..", MANIFEST_NAME)
        or "/" in name
        or "\0" in name
    ):
        raise ManifestError(f"manifest: {name!r} is not a plain image file name")
    return name


@dataclass(frozen=True)
class FileEntry:
    """One image file: its name inside the image folder, size in bytes, checksum (hex)."""

    name: str
    size: int
    checksum: str

    def __post_init__(self) -> None:
        check_plain_name(self.name)
        _check_int(self.size, f"files[{self.name}].size", 0)
        if not isinstance(self.checksum, str) or not _HEX_RE.fullmatch(self.checksum):
            raise ManifestError(f"manifest: files[{self.name}].checksum must be lowercase hex")


@dataclass(frozen=True)
class OpenFile:
    """A regular file the tree had open for writing at dump time.

    `size` is its size then (restore truncates it back); `saved_copy` names a
    copy of it kept in the image folder (e.g. the job's stdout), or None; without
    a copy, `content` is the checksum of its bytes [content_from, size), which a
    restore checks before it uses the image (a file changed in place refuses it):
    all of them (0) for a file the tree may write anywhere, the last block for
    one it only appends to.
    """

    path: str
    size: int
    append: bool
    saved_copy: str | None
    content: str | None = None
    content_from: int = 0
    # Instead of either, for a file the job held a lease on (reading it would break
    # the lease): "inode:size:mtime_ns:ctime_ns", which any write changes.
    stamp: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path.startswith("/") or "\0" in self.path:
            raise ManifestError(f"manifest: open file path must be absolute: {self.path!r}")
        _check_int(self.size, f"open_files[{self.path}].size", 0)
        if not isinstance(self.append, bool):
            raise ManifestError(f"manifest: open_files[{self.path}].append must be true or false")
        if self.saved_copy is not None:
            check_plain_name(self.saved_copy)
        if self.content is not None and (
            not isinstance(self.content, str) or not _HEX_RE.fullmatch(self.content)
        ):
            raise ManifestError(f"manifest: open_files[{self.path}].content is not a checksum")
        _check_int(self.content_from, f"open_files[{self.path}].content_from", 0)
        if self.stamp is not None and (
            not isinstance(self.stamp, str) or not _STAMP_RE.fullmatch(self.stamp)
        ):
            raise ManifestError(f"manifest: open_files[{self.path}].stamp is malformed")
        if self.content_from > self.size:
            raise ManifestError(f"manifest: open_files[{self.path}].content_from is past its size")


@dataclass(frozen=True)
class Manifest:
    format_version: int
    job_id: int
    seq: int
    uid: int
    gid: int
    criu_version: str
    kernel: str
    created_at: datetime  # timezone-aware, UTC
    dump_seconds: float
    freeze_seconds: float
    checksum_algorithm: str
    files: tuple[FileEntry, ...]
    open_files: tuple[OpenFile, ...]
    restart_count: int

    def __post_init__(self) -> None:
        if self.format_version != FORMAT_VERSION or isinstance(self.format_version, bool):
            raise ManifestError(
                f"manifest: unknown format_version {self.format_version!r} "
                f"(this version reads {FORMAT_VERSION})"
            )
        _check_int(self.job_id, "job_id", 1, MAX_JOB_ID)
        _check_int(self.seq, "seq", 1, MAX_SEQ)
        _check_int(self.uid, "uid", 0)
        _check_int(self.gid, "gid", 0)
        _check_int(self.restart_count, "restart_count", 0)
        for key, longest in _STRING_LIMITS.items():
            value = getattr(self, key)
            if not isinstance(value, str) or not value or len(value) > longest:
                raise ManifestError(
                    f"manifest: {key} must be a non-empty string of at most {longest} characters"
                )
            if untrusted.has_control(value):
                raise ManifestError(f"manifest: {key} holds control characters")
        created = self.created_at
        if not isinstance(created, datetime) or created.utcoffset() != UTC.utcoffset(None):
            raise ManifestError("manifest: created_at must be a UTC datetime")
        for key in ("dump_seconds", "freeze_seconds"):
            value = getattr(self, key)
            if not isinstance(value, float) or not math.isfinite(value) or value < 0:
                raise ManifestError(f"manifest: {key} must be a finite number >= 0")
        if not isinstance(self.files, tuple) or not all(
            isinstance(f, FileEntry) for f in self.files
        ):
            raise ManifestError("manifest: files must be a tuple of FileEntry")
        if not isinstance(self.open_files, tuple) or not all(
            isinstance(f, OpenFile) for f in self.open_files
        ):
            raise ManifestError("manifest: open_files must be a tuple of OpenFile")
        if len(self.files) > MAX_FILES or len(self.open_files) > MAX_OPEN_FILES:
            raise ManifestError(
                f"manifest: more than {MAX_FILES} files or {MAX_OPEN_FILES} open files listed"
            )
        if sum(f.size for f in self.files) > untrusted.MAX_INT:
            raise ManifestError("manifest: the files add up to more than 2**63 - 1 bytes")
        names = {f.name for f in self.files}  # a set: a listing is checked in linear time
        if len(names) != len(self.files):
            raise ManifestError("manifest: a file is listed twice")
        for open_file in self.open_files:
            if open_file.saved_copy is not None and open_file.saved_copy not in names:
                raise ManifestError(
                    f"manifest: saved copy {open_file.saved_copy!r} of {open_file.path} "
                    "is not among the listed files"
                )

    def file(self, name: str) -> FileEntry | None:
        """The entry for image file `name`, or None."""
        return next((f for f in self.files if f.name == name), None)

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> bytes:
        doc = {
            "format_version": self.format_version,
            "job_id": self.job_id,
            "seq": self.seq,
            "uid": self.uid,
            "gid": self.gid,
            "criu_version": self.criu_version,
            "kernel": self.kernel,
            "created_at": self.created_at.isoformat(),
            "dump_seconds": self.dump_seconds,
            "freeze_seconds": self.freeze_seconds,
            "checksum_algorithm": self.checksum_algorithm,
            "files": [{"name": f.name, "size": f.size, "checksum": f.checksum} for f in self.files],
            "open_files": [
                {
                    "path": o.path,
                    "size": o.size,
                    "append": o.append,
                    "saved_copy": o.saved_copy,
                    **({"content": o.content} if o.content is not None else {}),
                    **({"content_from": o.content_from} if o.content_from else {}),
                    **({"stamp": o.stamp} if o.stamp is not None else {}),
                }
                for o in self.open_files
            ],
            "restart_count": self.restart_count,
        }
        return json.dumps(doc, sort_keys=True, indent=1, allow_nan=False).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Parse a manifest. Raises ManifestError with a one-line reason."""
        try:
            doc = untrusted.loads(data, "manifest")
        except untrusted.Untrusted as err:
            raise ManifestError(str(err)) from err
        obj = _object(doc, "manifest", _MANIFEST_KEYS)
        version = obj["format_version"]
        if isinstance(version, bool) or version != FORMAT_VERSION:
            raise ManifestError(
                f"manifest: unknown format_version {version!r:.20} "
                f"(this version reads {FORMAT_VERSION})"
            )
        return cls(
            format_version=FORMAT_VERSION,
            job_id=_int(obj, "job_id"),
            seq=_int(obj, "seq"),
            uid=_int(obj, "uid"),
            gid=_int(obj, "gid"),
            criu_version=_str(obj, "criu_version"),
            kernel=_str(obj, "kernel"),
            created_at=_datetime(obj, "created_at"),
            dump_seconds=_number(obj, "dump_seconds"),
            freeze_seconds=_number(obj, "freeze_seconds"),
            checksum_algorithm=_str(obj, "checksum_algorithm"),
            files=tuple(
                FileEntry(name=_str(f, "name"), size=_int(f, "size"), checksum=_str(f, "checksum"))
                for f in (_object(item, "files[]", _FILE_KEYS) for item in _list(obj, "files"))
            ),
            open_files=tuple(
                OpenFile(
                    path=_str(o, "path"),
                    size=_int(o, "size"),
                    append=_bool(o, "append"),
                    saved_copy=_optional_str(o, "saved_copy"),
                    content=_optional_str(o, "content") if "content" in o else None,
                    content_from=_int(o, "content_from") if "content_from" in o else 0,
                    stamp=_optional_str(o, "stamp") if "stamp" in o else None,
                )
                for o in (
                    _object(item, "open_files[]", _OPEN_FILE_KEYS, _OPEN_FILE_OPTIONAL)
                    for item in _list(obj, "open_files")
                )
            ),
            restart_count=_int(obj, "restart_count"),
        )


_MANIFEST_KEYS = frozenset(
    (
        "format_version",
        "job_id",
        "seq",
        "uid",
        "gid",
        "criu_version",
        "kernel",
        "created_at",
        "dump_seconds",
        "freeze_seconds",
        "checksum_algorithm",
        "files",
        "open_files",
        "restart_count",
    )
)
_FILE_KEYS = frozenset(("name", "size", "checksum"))
_OPEN_FILE_KEYS = frozenset(("path", "size", "append", "saved_copy"))
_OPEN_FILE_OPTIONAL = frozenset(("content", "content_from", "stamp"))


def _object(
    value: object, what: str, keys: frozenset[str], optional: frozenset[str] = frozenset()
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ManifestError(f"manifest: {what} must be a JSON object")
    missing = sorted(keys - value.keys())
    if missing:
        raise ManifestError(f"manifest: {what} lacks {', '.join(missing)}")
    unknown = sorted(value.keys() - keys - optional)
    if unknown:
        raise ManifestError(f"manifest: {what} has unknown keys {', '.join(unknown)}")
    return value


def _int(obj: dict[str, Any], key: str) -> int:
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ManifestError(f"manifest: {key} must be an integer, not {value!r:.40}")
    return value


def _number(obj: dict[str, Any], key: str) -> float:
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ManifestError(f"manifest: {key} must be a number, not {value!r:.40}")
    return float(value)


def _str(obj: dict[str, Any], key: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise ManifestError(f"manifest: {key} must be a string, not {value!r:.40}")
    return value


def _optional_str(obj: dict[str, Any], key: str) -> str | None:
    return None if obj[key] is None else _str(obj, key)


def _bool(obj: dict[str, Any], key: str) -> bool:
    value = obj[key]
    if not isinstance(value, bool):
        raise ManifestError(f"manifest: {key} must be true or false, not {value!r:.40}")
    return value


def _list(obj: dict[str, Any], key: str) -> list[Any]:
    value = obj[key]
    if not isinstance(value, list):
        raise ManifestError(f"manifest: {key} must be a list")
    return value


def _datetime(obj: dict[str, Any], key: str) -> datetime:
    text = _str(obj, key)
    try:
        value = datetime.fromisoformat(text)
    except ValueError as err:
        raise ManifestError(f"manifest: {key} is not an ISO 8601 time: {text!r:.40}") from err
    if value.utcoffset() != UTC.utcoffset(None):
        raise ManifestError(f"manifest: {key} must be in UTC: {text!r:.40}")
    return value.astimezone(UTC)


def _check_int(
    value: object, what: str, minimum: int, maximum: int | None = untrusted.MAX_INT
) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        bound = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise ManifestError(f"manifest: {what} must be an integer {bound}, not {value!r:.40}")
