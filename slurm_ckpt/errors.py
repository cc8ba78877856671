"""Every error slurm-ckpt raises on purpose.

One root (`CkptError`), one base per area. `str(err)` is always a single line
meant for a person; the details a program needs live in attributes.
"""

from __future__ import annotations

import shlex
import signal
from collections.abc import Sequence
from typing import Any

# Long commands and stderr lines are cut so a message stays readable in a log line.
_MAX_SHOWN = 200


def _one_line(text: str) -> str:
    # Messages end up in log lines and CLI output; a stray newline splits them.
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _shorten(text: str, limit: int = _MAX_SHOWN) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_command(cmd: Sequence[str]) -> str:
    """Return a command as one shell-quoted, shortened line for messages."""
    return _shorten(_one_line(shlex.join(cmd)))


def _restore(cls: type[CkptError], args: tuple[Any, ...], state: dict[str, Any]) -> CkptError:
    err = cls.__new__(cls, *args)
    err.args = args
    err.__dict__.update(state)
    return err


class CkptError(Exception):
    """Root of every error slurm-ckpt raises on purpose."""

    def __init__(self, message: str) -> None:
        self.message = _one_line(message)
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take other constructor arguments than `args`; rebuild from the
        # attributes so errors survive pickling (process pools, multiprocessing).
        return (_restore, (type(self), self.args, dict(self.__dict__)))


class ConfigError(CkptError):
    """The configuration file or environment holds an invalid setting."""

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.source = source


class IntervalError(CkptError, ValueError):
    """A text is not a valid interval (checkpoint interval, poll interval, ...)."""

    def __init__(self, message: str, *, value: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.value = value
        self.reason = reason


class ProcError(CkptError):
    """An external command could not be run or did not succeed."""

    def __init__(self, message: str, *, cmd: Sequence[str]) -> None:
        super().__init__(message)
        self.cmd: tuple[str, ...] = tuple(cmd)


class CommandNotFound(ProcError):
    """The executable of a command does not exist."""

    def __init__(self, cmd: Sequence[str]) -> None:
        program = cmd[0] if cmd else ""
        hint = "check the path" if "/" in program else "install it or give its absolute path"
        super().__init__(f"command not found: {_shorten(program)} ({hint})", cmd=cmd)


class CommandFailed(ProcError):
    """A command exited with a non-zero status."""

    def __init__(self, cmd: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        if returncode < 0:
            what = f"killed by signal {_signal_name(-returncode)}"
        else:
            what = f"failed with exit code {returncode}"
        message = f"command {what}: {format_command(cmd)}"
        last = _last_line(stderr)
        if last:
            message += f" (stderr: {last})"
        super().__init__(message, cmd=cmd)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


class CommandTimeout(ProcError):
    """A command ran longer than its timeout and was killed with its process group."""

    def __init__(self, cmd: Sequence[str], timeout: float, stdout: str, stderr: str) -> None:
        super().__init__(
            f"command timed out after {timeout:g}s and was killed: {format_command(cmd)}",
            cmd=cmd,
        )
        self.timeout = timeout
        self.stdout = stdout
        self.stderr = stderr


class CatalogError(CkptError):
    """The checkpoint catalog (database) refused or failed an operation."""


class CatalogUnavailable(CatalogError):
    """The catalog database cannot be reached, opened or kept connected."""


class CatalogBusy(CatalogUnavailable):
    """The catalog database stayed locked by another writer past the busy timeout."""


class CatalogSchemaError(CatalogError):
    """The catalog's schema is missing, out of date, or a migration failed."""


class CatalogNotFound(CatalogError):
    """A job or checkpoint the caller named is not in the catalog."""


class CatalogConflict(CatalogError):
    """A write clashed with the catalog's constraints or with another writer."""


class IllegalTransition(CatalogConflict):
    """A checkpoint state change that the state machine does not allow."""

    def __init__(
        self, message: str, *, current: str, target: str, checkpoint_id: int | None = None
    ) -> None:
        super().__init__(message)
        self.current = current
        self.target = target
        self.checkpoint_id = checkpoint_id


class BackendUnavailable(CkptError):
    """A backend chosen by name cannot be used here: `name` says which, `reason` why."""

    template = "backend {name!r} is unavailable: {reason}"

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(self.template.format(name=name, reason=reason))
        self.name = name
        self.reason = reason


class SlurmError(CkptError):
    """Slurm could not be queried or did not accept a request."""


class SlurmUnavailable(SlurmError):
    """The Slurm controller did not answer (after the bounded retries)."""

    def __init__(self, message: str, *, attempts: int = 1) -> None:
        super().__init__(message)
        self.attempts = attempts


class JobNotFound(SlurmError):
    """Slurm does not know the job (never existed, or finished and purged)."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"Slurm job {job_id} not found (unknown or already finished)")
        self.job_id = job_id


class SlurmRejected(SlurmError):
    """Slurm answered and refused the request (permission, job state, bad value)."""

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class SlurmOutputError(SlurmError):
    """Slurm's output could not be parsed (an unexpected format or Slurm release)."""

    def __init__(self, message: str, *, line: str = "") -> None:
        super().__init__(message)
        self.line = line


class SlurmBackendUnavailable(BackendUnavailable, SlurmError):
    """The selected Slurm adapter cannot be used here (e.g. pyslurm does not import)."""

    template = "Slurm adapter {name!r} is not available: {reason}"


class DumpError(CkptError):
    """Dumping or restoring a process tree failed."""


class DumperUnavailable(BackendUnavailable, DumpError):
    """The selected dump backend cannot run on this machine."""

    template = "dump backend {name!r} is unavailable: {reason}"


class DumpFailed(DumpError):
    """The backend could not save the process tree."""

    def __init__(self, reason: str, *, log: str | None = None) -> None:
        super().__init__(f"dump failed: {reason}")
        self.reason = _one_line(reason)
        self.log = log


class RestoreFailed(DumpError):
    """The backend could not bring a saved tree back."""

    def __init__(self, reason: str, *, log: str | None = None) -> None:
        super().__init__(f"restore failed: {reason}")
        self.reason = _one_line(reason)
        self.log = log


class StoreError(CkptError):
    """The image store is missing, inconsistent or not writable."""


class BadPath(StoreError, ValueError):
    """A job id, sequence number or file name from outside is not acceptable."""

    def __init__(self, message: str, *, value: str) -> None:
        super().__init__(message)
        self.value = value


class UnsafeJobDir(StoreError):
    """A job's store folder is not a private folder of the job's user."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class MissingUserDir(StoreError):
    """The user's own level of the store (<root>/<user>/) is not there yet."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class ManifestError(StoreError):
    """A checkpoint manifest is malformed or of an unknown format version."""


class CheckpointExists(StoreError):
    """A checkpoint with this sequence number is already committed."""

    def __init__(self, path: str) -> None:
        super().__init__(f"checkpoint {path} already exists: never overwritten")
        self.path = path


class ImageCorrupt(StoreError):
    """A committed checkpoint image fails verification."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"checkpoint image {path} is corrupt: {reason}")
        self.path = path
        self.reason = _one_line(reason)


class BadImageList(StoreError):
    """A job's published list of valid images (images.json) is malformed."""


class LauncherError(CkptError):
    """The in-job launcher could not start, checkpoint or restore the workload."""


class ServiceError(CkptError):
    """The checkpoint service cannot run or schedule its work."""


class AuthError(CkptError):
    """A request's MUNGE credential could not be made or checked."""


class CredentialRefused(AuthError):
    """munged refused a credential: forged, garbled, expired, replayed or not for us."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class MungeUnavailable(AuthError):
    """munge, unmunge or munged cannot be used on this host."""


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return _shorten(lines[-1]) if lines else ""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
