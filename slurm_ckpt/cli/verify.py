"""`ckpt-admin verify JOB`: check a job's valid images in the store, read-only.

Runs in the caller's process, with the caller's rights: a user can read only
their own job's folder, which is the permission model. Structure by default
(manifest, sizes, stray files, modes); `--read-data` re-hashes every byte.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import click

from slurm_ckpt.cli import humanize as h
from slurm_ckpt.cli.context import App, pass_app
from slurm_ckpt.cli.errors import ChecksFailed, NotCheckpointed
from slurm_ckpt.cli.output import Column, Writer
from slurm_ckpt.cli.params import JOB_ID, json_option
from slurm_ckpt.db.catalog import CheckpointRecord, JobRecord
from slurm_ckpt.errors import ImageCorrupt, StoreError
from slurm_ckpt.store.checksum import ALGORITHM, hash_file
from slurm_ckpt.store.layout import JobDir
from slurm_ckpt.store.manifest import MANIFEST_NAME
from slurm_ckpt.store.verify import verify_checkpoint

COLUMNS = (
    Column("SEQ", "right"),
    Column("RESULT"),
    Column("SIZE", "right"),
    Column("FILES", "right"),
    Column("DETAIL", shrink=True),
)


@click.command()
@click.argument("job_id", metavar="JOB", type=JOB_ID)
@click.option("--read-data", is_flag=True, help="Re-hash every file (reads the whole image).")
@click.option("--seq", type=click.IntRange(min=1), help="Only this checkpoint.")
@json_option
@pass_app
def verify(app: App, job_id: int, read_data: bool, seq: int | None, as_json: bool) -> None:
    """Verify a job's valid checkpoints in the image store (its owner may too)."""
    out = Writer(json_mode=as_json)
    job = app.job(job_id, "verify")
    records = [c for c in app.catalog.valid_checkpoints(job.id) if seq is None or c.seq == seq]
    if not records:
        which = f"valid checkpoint {seq}" if seq is not None else "valid checkpoint"
        raise NotCheckpointed(f"job {job_id} has no {which} to verify")
    folder = JobDir(app.settings.paths.store_root, job.slurm_job_id)
    results = [_check(out, job, folder, c, read_data) for c in records]
    bad = [r for r in results if r.result != "ok"]
    if out.json_mode:
        out.document(
            "verify",
            {
                "job_id": job.slurm_job_id,
                "read_data": read_data,
                "ok": not bad,
                "checkpoints": [asdict(r) for r in results],
            },
        )
    else:
        out.table(
            COLUMNS,
            [
                [
                    str(r.seq),
                    r.result,
                    h.size_short(r.total_bytes),
                    "-" if r.file_count is None else str(r.file_count),
                    r.detail or "-",
                ]
                for r in results
            ],
        )
    if bad:
        raise ChecksFailed(
            f"{len(bad)} of {len(results)} checkpoint(s) of job {job_id} failed verification"
        )


@dataclass
class Verified:
    seq: int
    result: str = "ok"  # ok | corrupt | unreadable
    total_bytes: int | None = None
    file_count: int | None = None
    detail: str = ""


def _check(
    out: Writer, job: JobRecord, folder: JobDir, c: CheckpointRecord, read_data: bool
) -> Verified:
    # The path comes from the layout, never from the catalog row: a row is data.
    path = folder.checkpoint(c.seq)
    result = Verified(c.seq)
    try:
        if read_data:
            with out.bytes_bar(f"checkpoint {c.seq}") as report:
                manifest = verify_checkpoint(path, read_data=True, progress=report)
        else:
            manifest = verify_checkpoint(path)
        result.total_bytes = manifest.total_size
        result.file_count = len(manifest.files)
        if manifest.job_id != job.slurm_job_id or manifest.uid != job.uid:
            raise ImageCorrupt(
                str(path), f"manifest names job {manifest.job_id} uid {manifest.uid}"
            )
        recorded = c.manifest_checksum
        prefix = f"{ALGORITHM}:"
        # A checksum of another algorithm is not comparable; structure checks still apply.
        comparable = recorded is not None and recorded.startswith(prefix)
        if comparable and prefix + hash_file(path / MANIFEST_NAME) != recorded:
            raise ImageCorrupt(str(path), "manifest differs from the one the catalog recorded")
    except ImageCorrupt as err:
        result.result, result.detail = "corrupt", err.reason
    except (StoreError, OSError) as err:
        result.result, result.detail = "unreadable", str(err)
    return result
