"""`ckpt-admin doctor`: named checks of an installation, each with the fix when it fails.

The checks are in `cli/checks/` (CRIU and the node, the store and the
catalog, the cluster); this module runs them in order and prints the results.
Each check is a function returning a `CheckResult`; it never raises, so one
broken part never hides the state of the others.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from slurm_ckpt.cli.checks import cluster, criu, store
from slurm_ckpt.cli.checks.base import CheckResult
from slurm_ckpt.cli.context import App, pass_app
from slurm_ckpt.cli.errors import ChecksFailed
from slurm_ckpt.cli.output import Column, Writer
from slurm_ckpt.cli.params import json_option
from slurm_ckpt.config import Settings
from slurm_ckpt.errors import CkptError

CHECKS: tuple[Callable[[Settings], CheckResult], ...] = (
    criu.check_criu_version,
    criu.check_criu_check,
    criu.check_criu_group,
    criu.check_criu_unprivileged,
    criu.check_criu_capability,
    criu.check_pid_max,
    store.check_store_root,
    store.check_catalog,
    cluster.check_slurm,
    cluster.check_slurm_release,
    cluster.check_spank_plugin,
    cluster.check_job_submit,
    cluster.check_service,
)


def run_checks(settings: Settings) -> list[CheckResult]:
    results = []
    for check in CHECKS:
        try:
            results.append(check(settings))
        except Exception as err:  # a bug in one check must not hide the others
            name = check.__name__.removeprefix("check_").replace("_", "-")
            results.append(CheckResult(name, False, f"check crashed: {err!r}", "report this"))
    return results


COLUMNS = (Column("CHECK"), Column("RESULT"), Column("DETAIL", shrink=True))


@click.command()
@json_option
@pass_app
def doctor(app: App, as_json: bool) -> None:
    """Check CRIU, its capability, the store, the catalog, Slurm, the plugins and the
    service; print the fix for each failure. Exit 9 when a check fails."""
    out = Writer(json_mode=as_json)
    try:
        results = run_checks(app.settings)
    except CkptError as err:
        results = [CheckResult("config", False, str(err), "correct the setting it names")]
    failed = [r for r in results if not r.ok]
    if out.json_mode:
        out.document(
            "doctor",
            {
                "ok": not failed,
                "checks": [
                    {"name": r.name, "ok": r.ok, "detail": r.detail, "fix": r.fix or None}
                    for r in results
                ],
            },
        )
    else:
        out.table(COLUMNS, [[r.name, "ok" if r.ok else "FAIL", r.detail] for r in results])
        for r in failed:
            out.line(f"fix {r.name}: {r.fix}")
    if failed:
        names = ", ".join(r.name for r in failed)
        raise ChecksFailed(f"{len(failed)} of {len(results)} checks failed: {names}")
