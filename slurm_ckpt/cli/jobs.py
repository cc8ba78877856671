"""`ckpt-admin list-jobs`, `show JOB`, `checkpoints JOB`: what is tracked, read-only."""

from __future__ import annotations

import click

from slurm_ckpt.cli import humanize, views
from slurm_ckpt.cli.context import App, pass_app
from slurm_ckpt.cli.output import Writer
from slurm_ckpt.cli.params import JOB_ID, NODE, json_option
from slurm_ckpt.db.states import JobState
from slurm_ckpt.service.ops import JobQuery


@click.command("list-jobs")
@click.option("--user", "user_name", metavar="USER", help="Only this user's jobs.")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([s.value for s in JobState], case_sensitive=False),
    help="Only jobs in this state (repeatable); an ended state implies --all.",
)
@click.option("--node", type=NODE, help="Only jobs whose batch process runs on NODE.")
@click.option("--all", "include_ended", is_flag=True, help="Include ended jobs.")
@json_option
@pass_app
def list_jobs(
    app: App,
    user_name: str | None,
    states: tuple[str, ...],
    node: str | None,
    include_ended: bool,
    as_json: bool,
) -> None:
    """One row per tracked job: state, node, interval, last valid image, images,
    size, restarts, next checkpoint due and any problem.

    Users see their own jobs; root and the admin group see every job.
    """
    out = Writer(json_mode=as_json)
    wanted = frozenset(JobState(s.upper()) for s in states)
    now = app.now()
    query = JobQuery(user_name=user_name, states=wanted, node=node, include_ended=include_ended)
    listed = app.backend.list_jobs(cluster=app.cluster, query=query)
    rows = [views.JobView.of_summary(row.summary, row.activity) for row in listed]
    if out.json_mode:
        out.document(
            "job_list",
            {
                "cluster": app.cluster,
                "generated_at": humanize.iso(now),
                "jobs": [view.to_json(now) for view in rows],
            },
        )
        return
    out.table(
        views.JOB_COLUMNS,
        [views.job_cells(view, now) for view in rows],
        empty="no tracked jobs" + ("" if include_ended or wanted else " (--all shows ended ones)"),
    )


@click.command()
@click.argument("job_id", metavar="JOB", type=JOB_ID)
@click.option(
    "--events",
    "limit",
    type=click.IntRange(0, 10_000, clamp=True),
    default=50,
    show_default=True,
    help="Newest events shown.",
)
@json_option
@pass_app
def show(app: App, job_id: int, limit: int, as_json: bool) -> None:
    """A job's details and its event history (requeues, restores), newest first."""
    out = Writer(json_mode=as_json)
    detail = app.backend.show(cluster=app.cluster, job_id=job_id, events=limit)
    now = app.now()
    view = views.JobView.of_checkpoints(detail.job, detail.checkpoints)
    events = detail.events
    if out.json_mode:
        out.document(
            "job",
            {"job": view.to_json(now), "events": [views.event_json(e) for e in events]},
        )
        return
    out.fields(views.job_fields(view, now))
    out.line()
    out.table(views.EVENT_COLUMNS, [views.event_cells(e) for e in events], empty="No events yet.")


@click.command()
@click.argument("job_id", metavar="JOB", type=JOB_ID)
@json_option
@pass_app
def checkpoints(app: App, job_id: int, as_json: bool) -> None:
    """Every checkpoint of a job, newest first: state, size, durations, reason."""
    out = Writer(json_mode=as_json)
    listed = app.backend.checkpoints(cluster=app.cluster, job_id=job_id)
    job, records = listed.job, listed.checkpoints
    if out.json_mode:
        out.document(
            "checkpoint_list",
            {
                "job_id": job.slurm_job_id,
                "cluster": job.cluster,
                "checkpoints": [views.checkpoint_json(c) for c in records],
            },
        )
        return
    out.table(
        views.CHECKPOINT_COLUMNS,
        [views.checkpoint_cells(c) for c in records],
        empty=f"job {job.slurm_job_id} has no checkpoints yet",
    )
