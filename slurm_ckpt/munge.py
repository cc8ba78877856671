"""MUNGE credentials through the `munge` and `unmunge` commands.

A credential carries a payload and the uid and gid of the process that made
it, sealed by munged with the cluster's key: nobody can forge one for another
uid, and munged refuses it once decoded (replay) or after its time to live.
The maintained way to use MUNGE from Python is its own commands; the PyPI
bindings are unmaintained.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from slurm_ckpt import proc
from slurm_ckpt.errors import CommandNotFound, CredentialRefused, MungeUnavailable, ProcError

TIMEOUT = 10.0  # seconds munge or unmunge may take; munged answers in milliseconds
SERVICE_UID = 0  # slurm-ckptd runs as root: only root may decode what ckpt-admin sends
MAX_CREDENTIAL = 64 * 1024

# munge.h: the statuses that mean "this credential is not acceptable", as opposed to
# "munged could not be asked".
_REFUSED = {
    8: "not a valid credential",
    9: "unknown credential version",
    10: "unknown cipher",
    11: "unknown MAC",
    12: "unknown compression",
    13: "unknown security realm",
    14: "invalid credential (forged or garbled)",
    15: "expired credential",
    16: "credential from the future (clock skew)",
    17: "replayed credential",
    18: "credential not meant for this service's user",
}
_ARMOR = re.compile(rb"MUNGE:[A-Za-z0-9+/=]+:\s*")


@dataclass(frozen=True)
class Credential:
    """What munged vouches for: who made the credential, and what it says."""

    uid: int
    gid: int
    payload: bytes


def encode(payload: bytes, *, restrict_uid: int | None = SERVICE_UID) -> bytes:
    """A credential for `payload` made by this process's uid; MungeUnavailable."""
    argv = ["munge"]
    if restrict_uid is not None:
        argv.append(f"--restrict-uid={restrict_uid}")
    try:
        # The payload goes through stdin: argv is visible to every user in ps.
        done = proc.run(argv, timeout=TIMEOUT, input=payload)
    except CommandNotFound as err:
        raise MungeUnavailable("munge is not installed on this host") from err
    except ProcError as err:
        raise MungeUnavailable(
            f"cannot make a MUNGE credential (is munged running?): {err}"
        ) from err
    return done.stdout.strip().encode("ascii", errors="replace")


def decode(credential: bytes) -> Credential:
    """The uid, gid and payload munged vouches for.

    Raises CredentialRefused for anything munged does not accept (garbage,
    forged, expired, replayed, restricted to another uid), MungeUnavailable
    when munged cannot be asked.
    """
    if len(credential) > MAX_CREDENTIAL or not _ARMOR.fullmatch(credential):
        raise CredentialRefused("not a MUNGE credential")
    try:
        done = proc.run(
            ["unmunge", "--numeric", "--keys=STATUS,UID,GID"],
            timeout=TIMEOUT,
            input=credential,
            check=False,
        )
    except CommandNotFound as err:
        raise MungeUnavailable("unmunge is not installed on this host") from err
    except ProcError as err:
        raise MungeUnavailable(f"cannot check a MUNGE credential: {err}") from err
    head, _, payload = done.stdout.partition("\n\n")
    meta = _metadata(head)
    status = meta.get("STATUS", done.returncode)
    if done.returncode in _REFUSED or status in _REFUSED:
        code = done.returncode if done.returncode in _REFUSED else status
        raise CredentialRefused(f"MUNGE credential refused: {_REFUSED[code]}", status=code)
    if done.returncode != 0 or status != 0 or "UID" not in meta or "GID" not in meta:
        detail = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        raise MungeUnavailable(f"cannot check a MUNGE credential: {detail[0]}")
    return Credential(uid=meta["UID"], gid=meta["GID"], payload=payload.encode("utf-8"))


def _metadata(text: str) -> dict[str, int]:
    """`KEY: number` lines of `unmunge --numeric`; anything else is left out."""
    meta: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip().isdigit():
            meta[key.strip()] = int(value.strip())
    return meta
