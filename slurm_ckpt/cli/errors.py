"""Exit codes of `ckpt-admin` and the one place that turns errors into them.

Every failure ends as one line on stderr, `ckpt-admin: <message>`, and one of
the exit codes below (documented in README.md, "ckpt-admin"). Scripts may rely
on the numbers; they never change meaning.
"""

from __future__ import annotations

from enum import IntEnum

import click

from slurm_ckpt.errors import (
    BadPath,
    CatalogNotFound,
    CatalogSchemaError,
    CatalogUnavailable,
    CkptError,
    ConfigError,
)


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1  # anything not listed below (Slurm down, store unreadable, ...)
    USAGE = 2  # a malformed argument or option
    UNKNOWN_JOB = 3  # the job is not in the catalog
    NOT_CHECKPOINTED = 4  # the job exists but has no usable image, or cannot take this action
    CATALOG_UNAVAILABLE = 5  # the catalog (or for users, slurm-ckptd's API) is out of reach
    ACTION_FAILED = 6  # the service carried the action out and it failed
    TIMEOUT = 7  # --wait gave up before the action ended
    NOT_ALLOWED = 8  # not your job, or the command needs root or the admin group
    CHECK_FAILED = 9  # doctor found a failing check, verify a damaged image
    CONFIG = 10  # the configuration file or environment is invalid
    INTERRUPTED = 130  # Ctrl-C


class CliError(CkptError):
    """A failure `ckpt-admin` reports with its own exit code."""

    exit_code = ExitCode.ERROR


class UnknownJob(CliError):
    """The job id is not tracked in the catalog."""

    exit_code = ExitCode.UNKNOWN_JOB

    def __init__(self, job_id: int, cluster: str) -> None:
        super().__init__(
            f"job {job_id} is not tracked on cluster {cluster}: it was not submitted with "
            "--checkpoint, or the service has not seen it yet"
        )
        self.job_id = job_id


class NotCheckpointed(CliError):
    """The job has no usable image, or is in no state for the action."""

    exit_code = ExitCode.NOT_CHECKPOINTED


class NotAllowed(CliError):
    """The caller may not see or act on this job, or the command needs an admin."""

    exit_code = ExitCode.NOT_ALLOWED


class ActionFailed(CliError):
    """The service ended the requested action as FAILED."""

    exit_code = ExitCode.ACTION_FAILED


class ActionTimeout(CliError):
    """--wait ran out of time before the action ended."""

    exit_code = ExitCode.TIMEOUT


class ChecksFailed(CliError):
    """At least one doctor check or image verification failed."""

    exit_code = ExitCode.CHECK_FAILED


def exit_code_for(err: BaseException) -> ExitCode:
    """The exit code for an error that ends a command."""
    if isinstance(err, CliError):
        return err.exit_code
    if isinstance(err, CatalogUnavailable | CatalogSchemaError):
        return ExitCode.CATALOG_UNAVAILABLE
    if isinstance(err, CatalogNotFound):
        return ExitCode.UNKNOWN_JOB
    if isinstance(err, ConfigError):
        return ExitCode.CONFIG
    if isinstance(err, BadPath):
        return ExitCode.USAGE
    if isinstance(err, click.UsageError):
        return ExitCode.USAGE
    if isinstance(err, click.ClickException):
        return ExitCode(err.exit_code) if err.exit_code in set(ExitCode) else ExitCode.ERROR
    return ExitCode.ERROR


def message_for(err: BaseException) -> str:
    """The one line shown for `err` (without the `ckpt-admin: ` prefix)."""
    if isinstance(err, click.UsageError):
        text = " ".join(err.format_message().split())
        where = err.ctx.command_path if err.ctx is not None else "ckpt-admin"
        return f"{text} (see `{where} --help`)"
    if isinstance(err, click.ClickException):
        return " ".join(err.format_message().split())
    if isinstance(err, OSError):
        return " ".join(str(err).split())
    return str(err)
