"""The launcher's answers as the service takes them: typed, bounded, printable.

A result file and a restart report are written by the job's user. Whatever
they hold, the service gets a small frozen value: an outcome from a fixed
set, integers within the catalog's range, texts without control characters
and of bounded length. Malformed documents are answers too ("unreadable"),
never exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slurm_ckpt.store import untrusted

# How a restart went (launcher/messages.py writes these names).
OUTCOMES = ("restored", "fell_back", "fresh_start", "failed")
MAX_ATTEMPTS_SHOWN = 10


@dataclass(frozen=True)
class ResultReply:
    """results/<seq>.json: did the dump of `seq` work, and if not, why."""

    ok: bool
    error: str = ""


@dataclass(frozen=True)
class RestartReply:
    """restarts/<n>.json: how restart n went."""

    outcome: str  # one of OUTCOMES
    seq: int | None  # the image restored from
    failures: str  # "image 3: reason; image 2: reason"
    launcher_seconds: float | None


def result_reply(doc: Any, seq: int) -> ResultReply:
    """The answer for request `seq` held in a parsed result file."""
    if not isinstance(doc, dict) or doc.get("seq") != seq or isinstance(doc.get("seq"), bool):
        return ResultReply(False, f"unreadable result file for checkpoint {seq}")
    if doc.get("ok") is True:
        return ResultReply(True)
    return ResultReply(False, untrusted.text(doc.get("error") or "the launcher gave no reason"))


def restart_reply(doc: Any) -> RestartReply:
    """The outcome held in a parsed restart report; "failed" when it is malformed."""
    if not isinstance(doc, dict):
        return RestartReply("failed", None, "unreadable report", None)
    outcome = doc.get("outcome")
    seq = untrusted.integer(doc.get("seq"), minimum=1)
    attempts = doc.get("attempts")
    failures = "; ".join(
        f"image {untrusted.integer(a.get('seq'), minimum=1)}: {untrusted.text(a.get('error'), 500)}"
        for a in (attempts[:MAX_ATTEMPTS_SHOWN] if isinstance(attempts, list) else [])
        if isinstance(a, dict)
    )
    took = doc.get("launcher_seconds")
    seconds = (
        float(took)
        if isinstance(took, int | float) and not isinstance(took, bool) and 0 < took < 1e9
        else None
    )
    return RestartReply(
        outcome=outcome if outcome in OUTCOMES else "failed",
        seq=seq,
        failures=untrusted.text(failures),
        launcher_seconds=seconds,
    )
