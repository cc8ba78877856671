"""Entry point of `slurm-ckptd`."""

from __future__ import annotations

import click

from slurm_ckpt import __version__


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="slurm-ckptd")
def cli() -> None:
    """Schedule checkpoints for every job that asked for them, keep the catalog,
    requeue jobs that failed.

    The service loop is not available in this release; this command only
    describes itself.
    """
    click.echo(click.get_current_context().get_help())
    raise SystemExit(2)


def main() -> None:
    cli()
