"""Entry point of `ckpt-admin`: one subcommand per verb, added by the modules of this package.

`AdminGroup.main` is the one error handler: every failure becomes one line on
stderr, `ckpt-admin: <message>`, and the exit code of `cli.errors.ExitCode`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from slurm_ckpt import __version__
from slurm_ckpt.cli import actions, doctor, jobs, verify
from slurm_ckpt.cli.context import App
from slurm_ckpt.cli.db import db
from slurm_ckpt.cli.errors import ExitCode, exit_code_for, message_for
from slurm_ckpt.cli.humanize import parse_time
from slurm_ckpt.errors import CkptError


class AdminGroup(click.Group):
    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> NoReturn:
        try:
            result = super().main(
                args, prog_name or "ckpt-admin", complete_var, standalone_mode=False, **extra
            )
        except (CkptError, click.ClickException, OSError) as err:
            _fail(message_for(err), exit_code_for(err))
        except (click.Abort, KeyboardInterrupt):
            _fail("interrupted", ExitCode.INTERRUPTED)
        sys.exit(result if isinstance(result, int) else ExitCode.OK)


def _fail(message: str, code: ExitCode) -> NoReturn:
    click.echo(f"ckpt-admin: {message}", err=True)
    sys.exit(code)


def _parse_now(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time") from None


@click.group(cls=AdminGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ckpt-admin")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Configuration file (default: $SLURM_CKPT_CONFIG or /etc/slurm-ckpt/config.toml).",
)
@click.option(
    "--cluster", metavar="NAME", help="Cluster name in the catalog (default: slurm.cluster)."
)
# Pins the clock so tests can compare output with golden files.
@click.option("--now", envvar="SLURM_CKPT_NOW", hidden=True, callback=_parse_now)
@click.pass_context
def cli(
    ctx: click.Context, config_file: Path | None, cluster: str | None, now: datetime | None
) -> None:
    """See and steer checkpointed Slurm jobs.

    Root works on the catalog; anyone else asks slurm-ckptd, which decides
    what they may see and do.

    Exit codes: 0 ok, 1 other error, 2 bad argument, 3 unknown job, 4 job not
    checkpointed, 5 catalog or service unavailable, 6 action failed, 7
    timeout, 8 not allowed, 9 a check failed, 10 bad configuration.
    """
    app = App(config_file=config_file, cluster_override=cluster, fixed_now=now)
    ctx.obj = app
    ctx.call_on_close(app.close)


for command in (
    jobs.list_jobs,
    jobs.show,
    jobs.checkpoints,
    actions.checkpoint,
    actions.requeue,
    actions.drain,
    actions.gc,
    actions.action,
    verify.verify,
    doctor.doctor,
    db,
):
    cli.add_command(command)


def main() -> None:
    cli()
