"""Check committed images, and read or write a job's published list of valid images.

verify_checkpoint checks structure by default (cheap: one manifest read and
one stat per file) and re-hashes every file with read_data=True.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Sequence
from pathlib import Path

from slurm_ckpt.errors import BadImageList, ImageCorrupt, ManifestError, StoreError
from slurm_ckpt.exchange import MAX_IMAGES_LIST_BYTES, images_list, parse_images_list
from slurm_ckpt.store import untrusted
from slurm_ckpt.store.atomic import write_atomic
from slurm_ckpt.store.checksum import ALGORITHM, hash_fd
from slurm_ckpt.store.layout import JobDir
from slurm_ckpt.store.manifest import MANIFEST_NAME, Manifest

# A manifest lists a few dozen files; anything near this is not one of ours.
_MAX_MANIFEST_BYTES = 16 * 1024 * 1024
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
    try:
        fd = untrusted.open_dir(None, str(path), owner=None)
    except untrusted.Untrusted as err:
        raise ImageCorrupt(where, "not a folder (symlink or file)") from err
    if fd is None:
        raise ImageCorrupt(where, "folder: missing")
    try:
        manifest, _ = verify_checkpoint_fd(fd, where, read_data=read_data, progress=progress)
    finally:
        os.close(fd)
    return manifest


def verify_checkpoint_fd(
    folder_fd: int,
    where: str,
    *,
    read_data: bool = False,
    progress: Callable[[int, int], None] | None = None,
    owner: int | None = None,
) -> tuple[Manifest, bytes]:
    """verify_checkpoint on an open folder; also returns the manifest's bytes as read.

    Every file is opened relative to `folder_fd` without following a symlink;
    with `owner`, the folder and every file must belong to that uid.
    """
    st = os.fstat(folder_fd)
    if not stat.S_ISDIR(st.st_mode):
        raise ImageCorrupt(where, "not a folder (symlink or file)")
    if stat.S_IMODE(st.st_mode) & 0o022:
        raise ImageCorrupt(
            where, f"folder is writable by group or others ({stat.S_IMODE(st.st_mode):04o})"
        )
    if owner is not None and st.st_uid != owner:
        raise ImageCorrupt(where, f"folder is owned by uid {st.st_uid}, not {owner}")

    manifest, raw = _read_manifest(folder_fd, where, owner)
    name = os.path.basename(where)
    if _SEQ_NAME_RE.fullmatch(name) and int(name) != manifest.seq:
        raise ImageCorrupt(where, f"{MANIFEST_NAME} says seq {manifest.seq}, folder is {name}")

    listed = {f.name for f in manifest.files}
    try:
        with os.scandir(folder_fd) as present:
            for count, found in enumerate(present):
                if count > len(listed) or (
                    found.name != MANIFEST_NAME and found.name not in listed
                ):
                    name = untrusted.text(found.name, 80)
                    raise ImageCorrupt(where, f"{name}: not listed in {MANIFEST_NAME}")
    except OSError as err:
        raise StoreError(f"cannot list {where}: {err.strerror or err}") from err
    for entry in manifest.files:
        try:
            file_st = os.stat(entry.name, dir_fd=folder_fd, follow_symlinks=False)
        except FileNotFoundError as err:
            raise ImageCorrupt(where, f"{entry.name}: missing") from err
        except OSError as err:
            raise StoreError(f"cannot stat {where}/{entry.name}: {err.strerror or err}") from err
        if not stat.S_ISREG(file_st.st_mode):
            raise ImageCorrupt(where, f"{entry.name}: not a regular file")
        if owner is not None and file_st.st_uid != owner:
            raise ImageCorrupt(where, f"{entry.name}: owned by uid {file_st.st_uid}, not {owner}")
        if file_st.st_size != entry.size:
            raise ImageCorrupt(
                where, f"{entry.name}: size {file_st.st_size}, manifest says {entry.size}"
            )

    if read_data:
        _check_data(folder_fd, where, manifest, progress, owner)
    return manifest, raw


def _check_data(
    folder_fd: int,
    where: str,
    manifest: Manifest,
    progress: Callable[[int, int], None] | None,
    owner: int | None,
) -> None:
    if manifest.checksum_algorithm != ALGORITHM:
        raise ImageCorrupt(
            where, f"checksum algorithm {manifest.checksum_algorithm!r} is not {ALGORITHM!r}"
        )
    total = manifest.total_size
    done_before = 0
    for entry in manifest.files:
        report = None if progress is None else _offset(progress, done_before, total)
        try:
            fd = untrusted.open_regular(folder_fd, entry.name, owner=owner)
        except untrusted.Untrusted as err:
            raise ImageCorrupt(where, f"{entry.name}: {err}") from err
        if fd is None:
            raise ImageCorrupt(where, f"{entry.name}: missing")
        try:
            checksum = hash_fd(fd, report, size=entry.size)
        except OSError as err:
            raise StoreError(f"cannot read {where}/{entry.name}: {err.strerror or err}") from err
        finally:
            os.close(fd)
        if checksum != entry.checksum:
            raise ImageCorrupt(where, f"{entry.name}: checksum mismatch (content changed)")
        done_before += entry.size


def published_images(job: JobDir) -> list[int]:
    """The sequence numbers the service published as valid, newest first.

    A missing images.json means nothing was published yet and gives []. Paths
    are never read from the file: callers build them with job.checkpoint(seq).
    Raises BadImageList for malformed content, StoreError when unreadable.
    """
    path = job.images_list
    try:
        data = untrusted.read_file(None, str(path), MAX_IMAGES_LIST_BYTES, owner=None)
        if data is None:
            return []
        doc = untrusted.loads(data, str(path))
    except untrusted.Untrusted as err:
        raise BadImageList(str(err)) from err
    return parse_images_list(doc, job.job_id, str(path))


def write_published_images(job: JobDir, seqs: Sequence[int]) -> None:
    """Atomically publish `seqs` as the job's valid images, as the calling user
    (the launcher's tests; the service publishes through store.jobfs).

    Raises BadPath for an invalid or repeated seq, StoreError when it cannot write.
    """
    write_atomic(job.images_list, images_list(job.job_id, seqs))


def _read_manifest(folder_fd: int, where: str, owner: int | None) -> tuple[Manifest, bytes]:
    try:
        data = untrusted.read_file(folder_fd, MANIFEST_NAME, _MAX_MANIFEST_BYTES, owner=owner)
    except untrusted.Untrusted as err:
        raise ImageCorrupt(where, str(err)) from err
    if data is None:
        raise ImageCorrupt(where, f"{MANIFEST_NAME}: missing")
    try:
        return Manifest.from_json(data), data
    except ManifestError as err:
        raise ImageCorrupt(where, f"{MANIFEST_NAME}: {err}") from err


def _offset(progress: Callable[[int, int], None], base: int, total: int) -> Callable[[int], None]:
    return lambda done: progress(base + done, total)
