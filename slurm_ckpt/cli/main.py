"""Entry point of `ckpt-admin`: one subcommand per verb, added by the modules of this package."""

from __future__ import annotations

import click

from slurm_ckpt import __version__
from slurm_ckpt.cli.db import db


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ckpt-admin")
def cli() -> None:
    """See and steer checkpointed Slurm jobs."""


cli.add_command(db)


def main() -> None:
    cli()
