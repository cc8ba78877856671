"""What every doctor check returns, and the one way a check runs a command."""

from __future__ import annotations

from dataclasses import dataclass

from slurm_ckpt import proc
from slurm_ckpt.errors import CkptError, CommandFailed

TIMEOUT = 30.0  # seconds any command a check runs may take


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str  # what was found
    fix: str = ""  # what to do about it, when not ok


def command_check(name: str, argv: list[str], ok_detail: str, fix: str) -> CheckResult:
    """Passes when `argv` exits 0; a failure shows the last line the command printed."""
    try:
        proc.run(argv, timeout=TIMEOUT)
    except CommandFailed as err:
        last = (err.stderr or err.stdout).strip().splitlines()
        return CheckResult(name, False, last[-1] if last else str(err), fix)
    except CkptError as err:
        return CheckResult(name, False, str(err), fix)
    return CheckResult(name, True, ok_detail)
