"""`ckpt-admin list-jobs`, `show JOB`, `checkpoints JOB`: what is tracked, read-only."""

from __future__ import annotations

import click

from slurm_ckpt.cli import humanize, views
from slurm_ckpt.cli.context import App, pass_app
from slurm_ckpt.cli.errors import NotAllowed
from slurm_ckpt.cli.output import Writer
from slurm_ckpt.cli.params import JOB_ID, NODE, json_option
from slurm_ckpt.db.states import JobState


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
    actor = app.actor
    if not actor.is_admin:
        if user_name is not None and user_name != actor.name:
            raise NotAllowed(
                f"only root and the group {app.settings.admin.group} may list other users' jobs"
            )
        user_name = actor.name
    wanted = {JobState(s.upper()) for s in states}
    now = app.now()
    catalog = app.catalog
    summaries = catalog.job_summaries(cluster=app.cluster, user_name=user_name)
    activity = catalog.checkpoint_activity(cluster=app.cluster, user_name=user_name)
    rows = []
    for summary in summaries:
        job = summary.job
        if not actor.may_see(job):
            continue  # same name, other uid: not theirs
        if wanted and job.state not in wanted:
            continue
        if not wanted and not include_ended and job.state not in views.OPEN_STATES:
            continue
        if node is not None and job.batch_host != node:
            continue
        rows.append(views.JobView.of_summary(summary, activity.get(job.id)))

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
@click.option("--events", "limit", default=50, show_default=True, help="Newest events shown.")
@json_option
@pass_app
def show(app: App, job_id: int, limit: int, as_json: bool) -> None:
    """A job's details and its event history (requeues, restores), newest first."""
    out = Writer(json_mode=as_json)
    job = app.job(job_id, "see")
    now = app.now()
    view = views.JobView.of_checkpoints(job, app.catalog.checkpoints(job.id))
    events = app.catalog.events(job.id, limit=max(limit, 0))
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
    job = app.job(job_id, "see")
    records = app.catalog.checkpoints(job.id)
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
