"""`ckpt-admin verify JOB`: check a job's valid images in the store, read-only.

The check (`service.imagecheck`) runs where the backend is: in root's own
process, or in slurm-ckptd for anyone else, once it decided the caller may
verify that job. Structure by default (manifest, sizes, stray files, modes);
`--read-data` re-hashes every byte.
"""

from __future__ import annotations

from dataclasses import asdict

import click

from slurm_ckpt.cli import humanize as h
from slurm_ckpt.cli.context import App, pass_app
from slurm_ckpt.cli.errors import ChecksFailed
from slurm_ckpt.cli.output import Column, Writer
from slurm_ckpt.cli.params import JOB_ID, json_option
from slurm_ckpt.service.ops import VerifyOptions

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
    report = app.backend.verify(
        cluster=app.cluster,
        job_id=job_id,
        options=VerifyOptions(seq=seq, read_data=read_data),
        progress=lambda n: out.bytes_bar(f"checkpoint {n}"),
    )
    results = report.results
    bad = [r for r in results if r.result != "ok"]
    if out.json_mode:
        out.document(
            "verify",
            {
                "job_id": report.job_id,
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
