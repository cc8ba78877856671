"""`ckpt-admin checkpoint|requeue|drain|gc|action`: requests the service carries out.

The command only records the request in the catalog (`Catalog.submit_action`);
the service claims it and is the one actor that touches the job. `--wait`
follows the action until it ends, showing the service's progress text.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import click

from slurm_ckpt.cli import humanize as h
from slurm_ckpt.cli import views
from slurm_ckpt.cli.context import App, pass_app
from slurm_ckpt.cli.errors import ActionFailed, ActionTimeout, NotAllowed, NotCheckpointed
from slurm_ckpt.cli.output import Column, Writer
from slurm_ckpt.cli.params import JOB_ID, NODE, json_option, wait_options
from slurm_ckpt.db.catalog import ActionRecord, CheckpointRecord, JobRecord
from slurm_ckpt.db.retention import RetentionPolicy, plan
from slurm_ckpt.db.states import ActionKind, ActionState, CheckpointState, JobState
from slurm_ckpt.errors import CatalogNotFound

POLL_SECONDS = 0.5
_ENDED = frozenset({ActionState.DONE, ActionState.FAILED})


@click.command()
@click.argument("job_id", metavar="JOB", type=JOB_ID)
@wait_options
@json_option
@pass_app
def checkpoint(app: App, job_id: int, wait: bool, timeout: int, as_json: bool) -> None:
    """Checkpoint a running job now (its owner may too)."""
    job = app.job(job_id, "checkpoint")
    _require_running(job, "checkpointed")
    _submit(app, Writer(json_mode=as_json), ActionKind.CHECKPOINT, wait, timeout, job=job)


@click.command()
@click.argument("job_id", metavar="JOB", type=JOB_ID)
@click.option(
    "--checkpoint-first",
    is_flag=True,
    help="Take a fresh checkpoint, then requeue: no work is lost.",
)
@wait_options
@json_option
@pass_app
def requeue(
    app: App, job_id: int, checkpoint_first: bool, wait: bool, timeout: int, as_json: bool
) -> None:
    """Requeue a running job; it resumes from its newest image on whatever node Slurm picks.

    Without --checkpoint-first, the work done since the newest valid image is
    redone; a job with no valid image is refused.
    """
    app.require_admin("requeue")
    job = app.job(job_id, "requeue")
    _require_running(job, "requeued")
    if not checkpoint_first and app.catalog.newest_valid(job.id) is None:
        raise NotCheckpointed(
            f"job {job_id} has no valid checkpoint: a requeue would start it over; "
            "use --checkpoint-first"
        )
    _submit(
        app,
        Writer(json_mode=as_json),
        ActionKind.REQUEUE,
        wait,
        timeout,
        job=job,
        options={"checkpoint_first": checkpoint_first},
    )


@click.command()
@click.argument("node", type=NODE)
@click.option("--reason", help="Reason shown in Slurm (default: who drained it, with ckpt-admin).")
@wait_options
@json_option
@pass_app
def drain(app: App, node: str, reason: str | None, wait: bool, timeout: int, as_json: bool) -> None:
    """Checkpoint and requeue every checkpointed job on NODE, then drain it in Slurm.

    Maintenance without losing work: the jobs resume on other nodes.
    """
    app.require_admin("drain")
    reason = reason or f"ckpt-admin drain by {app.actor.name}"
    _submit(
        app,
        Writer(json_mode=as_json),
        ActionKind.DRAIN,
        wait,
        timeout,
        node=node,
        options={"reason": " ".join(reason.split())},
    )


@click.command()
@click.option("--yes", is_flag=True, help="Delete for real (the service does it); else a dry run.")
@wait_options
@json_option
@pass_app
def gc(app: App, yes: bool, wait: bool, timeout: int, as_json: bool) -> None:
    """Apply the retention policy to every job; a dry run unless --yes.

    The dry run lists the images that would be deleted: those retention gives
    up now, and those given up already whose files are still there.
    """
    out = Writer(json_mode=as_json)
    if yes:
        app.require_admin("gc --yes")
        _submit(app, out, ActionKind.GC, wait, timeout, options={"dry_run": False})
        return
    _dry_run(app, out)


@click.command()
@click.argument("action_id", metavar="ID", type=click.IntRange(min=1))
@wait_options
@json_option
@pass_app
def action(app: App, action_id: int, wait: bool, timeout: int, as_json: bool) -> None:
    """Show an action by its id; with --wait, follow it to its end."""
    out = Writer(json_mode=as_json)
    try:
        record = app.catalog.get_action(action_id)
    except CatalogNotFound:
        raise CatalogNotFound(f"action {action_id} is not in the catalog") from None
    if not app.actor.is_admin and record.requested_by != app.actor.name:
        raise NotAllowed(f"action {action_id} was requested by another user")
    if wait:
        record = _follow(app, out, record, timeout)
    _report(out, record)


def _require_running(job: JobRecord, verb: str) -> None:
    if job.state != JobState.RUNNING:
        raise NotCheckpointed(
            f"job {job.slurm_job_id} is {job.state}: only a running job can be {verb}"
        )


def _submit(
    app: App,
    out: Writer,
    kind: ActionKind,
    wait: bool,
    timeout: int,
    *,
    job: JobRecord | None = None,
    node: str | None = None,
    options: dict[str, Any] | None = None,
) -> None:
    record = app.catalog.submit_action(
        kind,
        cluster=app.cluster,
        requested_by=app.actor.name,
        now=app.now(),
        slurm_job_id=None if job is None else job.slurm_job_id,
        node=node,
        options=options or {},
    )
    if wait:
        record = _follow(app, out, record, timeout)
    elif not out.json_mode:
        out.note(f"follow it with `ckpt-admin action {record.id} --wait`")
    _report(out, record)


def _follow(app: App, out: Writer, record: ActionRecord, timeout: int) -> ActionRecord:
    """Poll the action until it ends; ActionTimeout after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    title = f"{record.kind} of {views.action_target(record)}"
    with out.spinner(title) as update:
        while record.state not in _ENDED:
            update(record.progress or record.state.value.lower())
            if time.monotonic() >= deadline:
                raise ActionTimeout(
                    f"action {record.id} ({title}) is still {record.state} after "
                    f"{h.duration(timeout)}; it goes on: `ckpt-admin action {record.id} --wait`"
                )
            time.sleep(POLL_SECONDS)
            record = app.catalog.get_action(record.id)
    return record


def _report(out: Writer, record: ActionRecord) -> None:
    """Print the action; raise ActionFailed (after printing) when it failed."""
    if out.json_mode:
        out.document("action", {"action": views.action_json(record)})
    else:
        target = views.action_target(record)
        text = f"action {record.id}: {record.kind} of {target}: {record.state}"
        if record.detail:
            text += f": {record.detail}"
        elif record.state == ActionState.PENDING:
            text += " (the service takes it within seconds)"
        out.line(text)
    if record.state == ActionState.FAILED:
        raise ActionFailed(
            f"action {record.id} ({record.kind} of {views.action_target(record)}) failed: "
            f"{record.detail or 'no reason given'}"
        )


def retention_policy(app: App) -> RetentionPolicy:
    r = app.settings.retention
    return RetentionPolicy(
        keep_last=r.keep_last or None,
        keep_within=None if r.keep_within is None else timedelta(seconds=r.keep_within),
        minimum=r.minimum,
    )


GC_COLUMNS = (
    Column("JOB", "right"),
    Column("SEQ", "right"),
    Column("STATE"),
    Column("COMPLETED"),
    Column("SIZE", "right"),
    Column("WHY", shrink=True),
)


def _dry_run(app: App, out: Writer) -> None:
    policy = retention_policy(app)
    now = app.now()
    actor = app.actor
    user = None if actor.is_admin else actor.name
    doomed: list[tuple[JobRecord, CheckpointRecord, str]] = []
    for summary in app.catalog.job_summaries(cluster=app.cluster, user_name=user):
        job = summary.job
        if not actor.may_see(job):
            continue
        records = app.catalog.checkpoints(job.id)
        decided = plan(records, policy, now)
        for c in decided.obsolete:
            why = "failed" if c.state == CheckpointState.FAILED else "retention"
            doomed.append((job, c, why))
        for c in records:
            if c.state == CheckpointState.OBSOLETE:
                doomed.append((job, c, "already obsolete"))
    total = sum(c.total_bytes or 0 for _, c, _ in doomed)
    jobs = len({job.id for job, _, _ in doomed})
    if out.json_mode:
        out.document(
            "gc_plan",
            {
                "cluster": app.cluster,
                "dry_run": True,
                "policy": {
                    "keep_last": policy.keep_last,
                    "keep_within_seconds": None
                    if policy.keep_within is None
                    else int(policy.keep_within.total_seconds()),
                    "minimum": policy.minimum,
                },
                "delete": [
                    {
                        "job_id": job.slurm_job_id,
                        "seq": c.seq,
                        "state": c.state.value,
                        "completed_at": h.iso(c.completed_at),
                        "total_bytes": c.total_bytes,
                        "why": why,
                    }
                    for job, c, why in doomed
                ],
                "total_bytes": total,
            },
        )
        return
    if not doomed:
        out.line("nothing to delete")
        return
    out.table(
        GC_COLUMNS,
        [
            [
                str(job.slurm_job_id),
                str(c.seq),
                c.state.value,
                h.local_time(c.completed_at),
                h.size_short(c.total_bytes),
                why,
            ]
            for job, c, why in doomed
        ],
    )
    out.line()
    out.line(
        f"would delete {len(doomed)} image(s) of {jobs} job(s), {h.size(total)}: "
        "run `ckpt-admin gc --yes` to delete them"
    )
