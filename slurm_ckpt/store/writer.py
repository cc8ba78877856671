"""Commit a dump into the store, atomically.

Ordering invariant (keep it):

1. The dumper writes image files into a fresh staging/<seq>.<random>/ folder.
2. commit_checkpoint fsyncs and hashes every image file, then writes
   manifest.json LAST (write_atomic: temp file, fsync, rename, fsync folder).
3. Only then is the folder renamed to checkpoints/<seq>/ and checkpoints/ fsynced.

So a folder in checkpoints/ always holds complete image files and their
manifest, and a folder in checkpoints/ without a readable manifest is never
valid (verify.py refuses it). A crash at any earlier step leaves only a
staging folder, which clean_staging removes and nobody ever restores from.
The result file and the catalog row VALID come after step 3, outside this
module; deletion runs in reverse (catalog first, then files).
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from slurm_ckpt.errors import CheckpointExists, StoreError
from slurm_ckpt.store.atomic import fsync_dir, write_atomic
from slurm_ckpt.store.checksum import ALGORITHM, hash_file
from slurm_ckpt.store.layout import JobDir, check_seq
from slurm_ckpt.store.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    FileEntry,
    Manifest,
    OpenFile,
)

log = logging.getLogger(__name__)


def begin_checkpoint(job: JobDir, seq: int) -> Path:
    """Create and return an empty private staging folder for dump `seq`.

    Raises StoreError when the job's staging folder is missing or not writable.
    """
    check_seq(seq)
    try:
        # mkdtemp creates the folder 0700 with an unpredictable name.
        return Path(tempfile.mkdtemp(prefix=f"{seq:06d}.", dir=job.staging_dir))
    except OSError as err:
        raise StoreError(
            f"cannot create a staging folder in {job.staging_dir}: {err.strerror or err}"
        ) from err


def commit_checkpoint(
    job: JobDir,
    staging: Path,
    *,
    seq: int,
    uid: int,
    gid: int,
    criu_version: str,
    kernel: str,
    dump_seconds: float,
    freeze_seconds: float,
    open_files: Sequence[OpenFile] = (),
    restart_count: int = 0,
    created_at: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Path, Manifest]:
    """Describe, seal and publish the dump in `staging` as checkpoint `seq` of `job`.

    Every entry of `staging` must be a regular file (no folders, symlinks or
    others) and there must be at least one. `progress(done, total)` reports bytes
    hashed. `created_at` defaults to now (UTC).
    Returns the committed folder and its manifest. Raises CheckpointExists when
    checkpoint `seq` is already committed, ManifestError for invalid fields,
    StoreError for anything else; on error the staging folder is left as it is
    (abort_checkpoint removes it).
    """
    check_seq(seq)
    if staging.parent.resolve() != job.staging_dir.resolve() or not staging.name.startswith(
        f"{seq:06d}."
    ):
        raise StoreError(
            f"{staging} is not a staging folder of checkpoint {seq} of job {job.job_id}"
        )
    target = job.checkpoint(seq)
    if os.path.lexists(target):
        raise CheckpointExists(str(target))

    names = _image_files(staging)
    sizes = {name: (staging / name).stat().st_size for name in names}
    total = sum(sizes.values())
    files = []
    done_before = 0
    for name in names:
        path = staging / name
        try:
            _fsync_file(path)
            checksum = hash_file(path, _offset(progress, done_before, total))
            size = path.stat().st_size
        except OSError as err:
            raise StoreError(f"cannot read image file {path}: {err.strerror or err}") from err
        if size != sizes[name]:
            raise StoreError(f"image file {path} changed size while being committed")
        files.append(FileEntry(name=name, size=size, checksum=checksum))
        done_before += size

    manifest = Manifest(
        format_version=FORMAT_VERSION,
        job_id=job.job_id,
        seq=seq,
        uid=uid,
        gid=gid,
        criu_version=criu_version,
        kernel=kernel,
        created_at=created_at if created_at is not None else datetime.now(UTC),
        dump_seconds=float(dump_seconds),
        freeze_seconds=float(freeze_seconds),
        checksum_algorithm=ALGORITHM,
        files=tuple(files),
        open_files=tuple(open_files),
        restart_count=restart_count,
    )
    # The manifest goes last: it vouches for files that are already on disk.
    write_atomic(staging / MANIFEST_NAME, manifest.to_json())

    if os.path.lexists(target):
        raise CheckpointExists(str(target))
    try:
        # A non-empty target makes rename fail, so a committed image is never replaced.
        os.rename(staging, target)
    except OSError as err:
        if os.path.lexists(target):
            raise CheckpointExists(str(target)) from err
        raise StoreError(f"cannot move {staging} to {target}: {err.strerror or err}") from err
    fsync_dir(job.checkpoints_dir)
    fsync_dir(job.staging_dir)
    log.info(
        "committed checkpoint %s of job %s: %d files, %d bytes",
        seq,
        job.job_id,
        len(files),
        total,
    )
    return target, manifest


def abort_checkpoint(staging: Path) -> None:
    """Remove a staging folder and everything in it (missing is fine).

    Raises StoreError when it cannot be removed.
    """
    try:
        shutil.rmtree(staging)
    except FileNotFoundError:
        pass
    except OSError as err:
        raise StoreError(f"cannot remove staging folder {staging}: {err.strerror or err}") from err


def clean_staging(job: JobDir) -> list[Path]:
    """Remove everything in the job's staging folder; return what was removed.

    Call only while no dump of this job is running (the launcher, at start).
    Raises StoreError when something cannot be removed.
    """
    removed = []
    try:
        with os.scandir(job.staging_dir) as it:
            entries = sorted(it, key=lambda e: e.name)
    except FileNotFoundError:
        return []
    except OSError as err:
        raise StoreError(f"cannot list {job.staging_dir}: {err.strerror or err}") from err
    for entry in entries:
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            continue
        except OSError as err:
            raise StoreError(f"cannot remove {path}: {err.strerror or err}") from err
        log.info("removed leftover of an unfinished dump: %s", path)
        removed.append(path)
    if removed:
        fsync_dir(job.staging_dir)
    return removed


def _image_files(staging: Path) -> list[str]:
    """Names of the regular files in `staging`, sorted; refuses anything else."""
    try:
        with os.scandir(staging) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as err:
        raise StoreError(f"cannot list {staging}: {err.strerror or err}") from err
    names = []
    for entry in entries:
        if entry.name == MANIFEST_NAME:
            raise StoreError(f"{staging} already holds a {MANIFEST_NAME}: refusing to commit")
        mode = entry.stat(follow_symlinks=False).st_mode
        if not stat.S_ISREG(mode):
            raise StoreError(
                f"{entry.path} is not a regular file (a folder, symlink or special file): "
                "refusing to commit"
            )
        names.append(entry.name)
    if not names:
        raise StoreError(f"{staging} holds no image files: refusing to commit")
    return names


def _offset(
    progress: Callable[[int, int], None] | None, base: int, total: int
) -> Callable[[int], None] | None:
    """Turn per-file progress into progress over all files of the dump."""
    if progress is None:
        return None
    report = progress
    return lambda done: report(base + done, total)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
