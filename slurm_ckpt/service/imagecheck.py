"""`ckpt-admin verify`'s check of one committed image, for root's ckpt-admin and the API.

The path comes from the store layout, never from the catalog row (a row is
data), and the folder is read with the job owner's identity through
store.jobfs. Structure by default; `read_data` re-hashes every byte.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from slurm_ckpt.db.catalog import CheckpointRecord, JobRecord
from slurm_ckpt.errors import ImageCorrupt, StoreError
from slurm_ckpt.store.checksum import ALGORITHM, hash_bytes
from slurm_ckpt.store.jobfs import JobFiles, JobRef

ByteReport = Callable[[int, int], None]  # (done, total) in bytes
# A progress display per checkpoint seq, entered around its re-hash.
Progress = Callable[[int], AbstractContextManager[ByteReport]]


@dataclass(frozen=True)
class Verified:
    seq: int
    result: str = "ok"  # ok | corrupt | unreadable
    total_bytes: int | None = None
    file_count: int | None = None
    detail: str = ""


def check_checkpoint(
    job: JobRecord,
    files: JobFiles,
    c: CheckpointRecord,
    *,
    read_data: bool,
    progress: Progress | None = None,
) -> Verified:
    """Verify checkpoint `c` of `job` as the job's owner (store.jobfs); failures are
    results, never raised."""
    ref = JobRef(job.user_name, job.slurm_job_id, job.uid)
    where = str(files.jobdir(ref).checkpoint(c.seq))
    total: int | None = None
    count: int | None = None
    try:
        if read_data and progress is not None:
            with progress(c.seq) as report:
                manifest, raw = files.verify(ref, c.seq, read_data=True, progress=report)
        else:
            manifest, raw = files.verify(ref, c.seq, read_data=read_data)
        total, count = manifest.total_size, len(manifest.files)
        if manifest.job_id != job.slurm_job_id or manifest.uid != job.uid:
            raise ImageCorrupt(where, f"manifest names job {manifest.job_id} uid {manifest.uid}")
        recorded = c.manifest_checksum
        prefix = f"{ALGORITHM}:"
        # A checksum of another algorithm is not comparable; structure checks still apply.
        # The bytes verified are hashed, never the path read a second time.
        comparable = recorded is not None and recorded.startswith(prefix)
        if comparable and prefix + hash_bytes(raw) != recorded:
            raise ImageCorrupt(where, "manifest differs from the one the catalog recorded")
    except ImageCorrupt as err:
        return Verified(c.seq, "corrupt", total, count, err.reason)
    except StoreError as err:
        return Verified(c.seq, "unreadable", total, count, str(err))
    return Verified(c.seq, "ok", total, count)
