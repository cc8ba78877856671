"""Entry point of `slurm-ckpt-launch`."""

from __future__ import annotations

import click

from slurm_ckpt import __version__


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="slurm-ckpt-launch")
def cli() -> None:
    """Run a batch script under checkpoint control (as `#!slurm-ckpt-launch /bin/bash`).

    The launcher is not available in this release; this command only
    describes itself.
    """
    click.echo(click.get_current_context().get_help())
    raise SystemExit(2)


def main() -> None:
    cli()
