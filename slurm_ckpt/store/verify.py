"""Check committed images, and read or write a job's published list of valid images.

verify_checkpoint checks structure by default (cheap: one manifest read and
one stat per file) and re-hashes every file with read_data=True.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from slurm_ckpt.errors import BadImageList, BadPath, ImageCorrupt, ManifestError, StoreError
from slurm_ckpt.store.atomic import write_atomic
from slurm_ckpt.store.checksum import ALGORITHM, hash_file
from slurm_ckpt.store.layout import JobDir, check_seq
from slurm_ckpt.store.manifest import MANIFEST_NAME, Manifest

# A manifest lists a few dozen files; anything near this is not one of ours.
_MAX_MANIFEST_BYTES = 16 * 1024 * 1024
_MAX_IMAGES_LIST_BYTES = 16 * 1024 * 1024
_SEQ_NAME_RE = re.compile(r"[0-9]{6}")


def verify_checkpoint(
    path: Path,
    *,
    read_data: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Manifest:
    """Return the manifest of the checkpoint folder `path` once it checks out.

    Structure: the folder is a real folder not writable by group or others;
    manifest.json parses (and its seq matches a 6-digit folder name); every
    listed file is a regular file of the recorded size; nothing else is there.
    With read_data, every file is also re-hashed (`progress(done, total)` in bytes).
    Raises ImageCorrupt naming the file; StoreError when the image cannot be read
    for another reason (permissions, I/O).
    """
    where = str(path)
    st = _lstat(path, where, "folder")
    if not stat.S_ISDIR(st.st_mode):
        raise ImageCorrupt(where, "not a folder (symlink or file)")
    if stat.S_IMODE(st.st_mode) & 0o022:
        raise ImageCorrupt(
            where, f"folder is writable by group or others ({stat.S_IMODE(st.st_mode):04o})"
        )

    manifest = _read_manifest(path)
    if _SEQ_NAME_RE.fullmatch(path.name) and int(path.name) != manifest.seq:
        raise ImageCorrupt(where, f"{MANIFEST_NAME} says seq {manifest.seq}, folder is {path.name}")

    try:
        present = sorted(os.listdir(path))
    except OSError as err:
        raise StoreError(f"cannot list {path}: {err.strerror or err}") from err
    listed = {f.name for f in manifest.files}
    for name in present:
        if name != MANIFEST_NAME and name not in listed:
            raise ImageCorrupt(where, f"{name}: not listed in {MANIFEST_NAME}")
    for entry in manifest.files:
        file_st = _lstat(path / entry.name, where, entry.name)
        if not stat.S_ISREG(file_st.st_mode):
            raise ImageCorrupt(where, f"{entry.name}: not a regular file")
        if file_st.st_size != entry.size:
            raise ImageCorrupt(
                where, f"{entry.name}: size {file_st.st_size}, manifest says {entry.size}"
            )

    if read_data:
        if manifest.checksum_algorithm != ALGORITHM:
            raise ImageCorrupt(
                where, f"checksum algorithm {manifest.checksum_algorithm!r} is not {ALGORITHM!r}"
            )
        total = manifest.total_size
        done_before = 0
        for entry in manifest.files:
            base = done_before
            report = None if progress is None else _offset(progress, base, total)
            try:
                checksum = hash_file(path / entry.name, report)
            except FileNotFoundError as err:
                raise ImageCorrupt(where, f"{entry.name}: missing") from err
            except OSError as err:
                raise StoreError(f"cannot read {path / entry.name}: {err.strerror or err}") from err
            if checksum != entry.checksum:
                raise ImageCorrupt(where, f"{entry.name}: checksum mismatch (content changed)")
            done_before += entry.size
    return manifest


def published_images(job: JobDir) -> list[int]:
    """The sequence numbers the service published as valid, newest first.

    Reads images.json ({"job_id": N, "images": [{"seq": N}, ...]}) strictly;
    a missing file means nothing was published yet and gives []. Paths are
    never read from the file: callers build them with job.checkpoint(seq).
    Raises BadImageList for malformed content, StoreError when unreadable.
    """
    path = job.images_list
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    except OSError as err:
        raise StoreError(f"cannot read {path}: {err.strerror or err}") from err
    with os.fdopen(fd, "rb") as f:
        data = f.read(_MAX_IMAGES_LIST_BYTES + 1)
    if len(data) > _MAX_IMAGES_LIST_BYTES:
        raise BadImageList(f"{path}: too large")
    try:
        doc = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as err:
        raise BadImageList(f"{path}: not valid JSON: {err}") from err
    if not isinstance(doc, dict) or set(doc) != {"job_id", "images"}:
        raise BadImageList(f'{path}: must be an object with exactly "job_id" and "images"')
    if doc["job_id"] != job.job_id or isinstance(doc["job_id"], bool):
        raise BadImageList(f"{path}: job_id {doc['job_id']!r:.40} is not {job.job_id}")
    images = doc["images"]
    if not isinstance(images, list):
        raise BadImageList(f'{path}: "images" must be a list')
    seqs = [_image_seq(item, path) for item in images]
    if any(a <= b for a, b in zip(seqs, seqs[1:], strict=False)):
        raise BadImageList(f"{path}: images must be newest first without repeats")
    return seqs


def write_published_images(job: JobDir, seqs: Sequence[int]) -> None:
    """Atomically publish `seqs` as the job's valid images (any order; stored newest first).

    Run as root (the service), the file is given to the owner of the job's
    folder so the launcher, running as that user, can read it.
    Raises BadPath for an invalid or repeated seq, StoreError when it cannot write.
    """
    ordered = sorted((check_seq(s) for s in seqs), reverse=True)
    if len(set(ordered)) != len(ordered):
        raise BadPath(f"repeated sequence number in {list(seqs)!r:.80}", value=repr(list(seqs)))
    doc = {"job_id": job.job_id, "images": [{"seq": s} for s in ordered]}
    owner = None
    if os.geteuid() == 0:
        st = _lstat(job.path, str(job.path), "job folder", error=StoreError)
        if not stat.S_ISDIR(st.st_mode):
            raise StoreError(f"{job.path} is not a folder")
        owner = (st.st_uid, st.st_gid)
    write_atomic(job.images_list, json.dumps(doc, sort_keys=True).encode() + b"\n", owner=owner)


def _read_manifest(path: Path) -> Manifest:
    where = str(path)
    try:
        fd = os.open(path / MANIFEST_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError as err:
        raise ImageCorrupt(where, f"{MANIFEST_NAME}: missing") from err
    except OSError as err:
        if err.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink
            raise ImageCorrupt(where, f"{MANIFEST_NAME}: is a symlink") from err
        raise StoreError(f"cannot read {path / MANIFEST_NAME}: {err.strerror or err}") from err
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ImageCorrupt(where, f"{MANIFEST_NAME}: not a regular file")
        data = f.read(_MAX_MANIFEST_BYTES + 1)
    if len(data) > _MAX_MANIFEST_BYTES:
        raise ImageCorrupt(where, f"{MANIFEST_NAME}: too large")
    try:
        return Manifest.from_json(data)
    except ManifestError as err:
        raise ImageCorrupt(where, f"{MANIFEST_NAME}: {err}") from err


def _image_seq(item: Any, path: Path) -> int:
    if not isinstance(item, dict) or set(item) != {"seq"}:
        raise BadImageList(f'{path}: each image must be an object with exactly "seq"')
    try:
        return check_seq(item["seq"])
    except BadPath as err:
        raise BadImageList(f"{path}: {err}") from err


def _lstat(
    path: Path, where: str, what: str, error: type[StoreError] | None = None
) -> os.stat_result:
    try:
        return os.lstat(path)
    except FileNotFoundError as err:
        if error is not None:
            raise error(f"{path} does not exist") from err
        raise ImageCorrupt(where, f"{what}: missing") from err
    except OSError as err:
        raise StoreError(f"cannot stat {path}: {err.strerror or err}") from err


def _offset(progress: Callable[[int, int], None], base: int, total: int) -> Callable[[int], None]:
    return lambda done: progress(base + done, total)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")
