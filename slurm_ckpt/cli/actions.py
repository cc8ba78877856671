"""`ckpt-admin checkpoint|requeue|drain|gc|action`: requests the service carries out.

The command only records the request in the catalog (through the backend,
which decides whether the caller may); the service claims it and is the one
actor that touches the job. `--wait` follows the action until it ends, showing
the service's progress text.
"""

from __future__ import annotations

import time

import click

from slurm_ckpt.cli import humanize as h
from slurm_ckpt.cli import views
from slurm_ckpt.cli.context import App, pass_app
from slurm_ckpt.cli.errors import ActionFailed, ActionTimeout
from slurm_ckpt.cli.output import Column, Writer
from slurm_ckpt.cli.params import JOB_ID, NODE, json_option, wait_options
from slurm_ckpt.db.catalog import ActionRecord
from slurm_ckpt.db.states import ActionState

POLL_SECONDS = 0.5
_ENDED = frozenset({ActionState.DONE, ActionState.FAILED})


@click.command()
@click.argument("job_id", metavar="JOB", type=JOB_ID)
@wait_options
@json_option
@pass_app
def checkpoint(app: App, job_id: int, wait: bool, timeout: int, as_json: bool) -> None:
    """Checkpoint a running job now (its owner may too)."""
    record = app.backend.checkpoint(cluster=app.cluster, job_id=job_id)
    _submitted(app, Writer(json_mode=as_json), record, wait, timeout)


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
    record = app.backend.requeue(
        cluster=app.cluster, job_id=job_id, checkpoint_first=checkpoint_first
    )
    _submitted(app, Writer(json_mode=as_json), record, wait, timeout)


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
    record = app.backend.drain(cluster=app.cluster, node=node, reason=reason)
    _submitted(app, Writer(json_mode=as_json), record, wait, timeout)


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
        _submitted(app, out, app.backend.gc(cluster=app.cluster), wait, timeout)
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
    record = app.backend.action(action_id=action_id)
    if wait:
        record = _follow(app, out, record, timeout)
    _report(out, record)


def _submitted(app: App, out: Writer, record: ActionRecord, wait: bool, timeout: int) -> None:
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
            record = app.backend.action(action_id=record.id)
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


GC_COLUMNS = (
    Column("JOB", "right"),
    Column("SEQ", "right"),
    Column("STATE"),
    Column("COMPLETED"),
    Column("SIZE", "right"),
    Column("WHY", shrink=True),
)


def _dry_run(app: App, out: Writer) -> None:
    gc_plan = app.backend.gc_plan(cluster=app.cluster)
    doomed = gc_plan.items
    total = sum(item.total_bytes or 0 for item in doomed)
    jobs = len({item.job_id for item in doomed})
    if out.json_mode:
        out.document(
            "gc_plan",
            {
                "cluster": app.cluster,
                "dry_run": True,
                "policy": {
                    "keep_last": gc_plan.keep_last,
                    "keep_within_seconds": gc_plan.keep_within_seconds,
                    "minimum": gc_plan.minimum,
                },
                "delete": [
                    {
                        "job_id": item.job_id,
                        "seq": item.seq,
                        "state": item.state.value,
                        "completed_at": h.iso(item.completed_at),
                        "total_bytes": item.total_bytes,
                        "why": item.why,
                    }
                    for item in doomed
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
                str(item.job_id),
                str(item.seq),
                item.state.value,
                h.local_time(item.completed_at),
                h.size_short(item.total_bytes),
                item.why,
            ]
            for item in doomed
        ],
    )
    out.line()
    out.line(
        f"would delete {len(doomed)} image(s) of {jobs} job(s), {h.size(total)}: "
        "run `ckpt-admin gc --yes` to delete them"
    )
