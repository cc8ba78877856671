"""The requests slurm-ckptd's API runs: each op's argument names and how it calls
`Operations`, every argument checked (type, pattern, bound) before it is used.

Pure: a request's payload in, an op name and checked arguments out; the
caller (`api.Api`) authenticates and runs it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping

from slurm_ckpt.db.states import JobState
from slurm_ckpt.errors import CkptError
from slurm_ckpt.service.ops import JobQuery, Operations, VerifyOptions
from slurm_ckpt.store.layout import MAX_JOB_ID

MAX_EVENTS = 10_000
MAX_REASON = 200
MAX_ID = 2**63 - 1  # catalog ids and seqs are 64-bit

# The config's cluster names, ckpt-admin's node names, POSIX and directory user names.
_WORD = re.compile(r"[A-Za-z0-9._-]{1,64}")
_NODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_USER = re.compile(r"[A-Za-z0-9._@$-]{1,64}")


class RequestError(CkptError):
    """A request the API will not run; `kind` and `status` go into the reply."""

    def __init__(self, message: str, *, kind: str, status: int) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


def bad_request(message: str) -> RequestError:
    """The error of a malformed request: 400, kind bad_request."""
    return RequestError(message, kind="bad_request", status=400)


class Args:
    """Typed, bounded access to a request's arguments."""

    def __init__(self, raw: Mapping[str, object]) -> None:
        self.raw = raw

    def _get(self, key: str) -> object:
        return self.raw.get(key)

    def word(self, key: str, pattern: re.Pattern[str] = _WORD) -> str:
        value = self._get(key)
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise bad_request(f"{key}: not a {key} name")
        return value

    def optional_word(self, key: str, pattern: re.Pattern[str] = _WORD) -> str | None:
        return None if self._get(key) is None else self.word(key, pattern)

    def integer(self, key: str, *, maximum: int, minimum: int = 1) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            raise bad_request(f"{key}: a whole number from {minimum} to {maximum}")
        return value

    def optional_integer(self, key: str, *, maximum: int) -> int | None:
        return None if self._get(key) is None else self.integer(key, maximum=maximum)

    def flag(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise bad_request(f"{key}: true or false")
        return value

    def states(self, key: str) -> frozenset[JobState]:
        value = self._get(key)
        if not isinstance(value, list) or len(value) > len(JobState):
            raise bad_request(f"{key}: a list of job states")
        try:
            return frozenset(JobState(v) for v in value)
        except ValueError:
            raise bad_request(f"{key}: one of {', '.join(JobState)}") from None

    def text(self, key: str) -> str | None:
        value = self._get(key)
        if value is None:
            return None
        if not isinstance(value, str) or len(value) > MAX_REASON:
            raise bad_request(f"{key}: text of at most {MAX_REASON} characters")
        # Shown in Slurm and in admins' terminals: printable characters only.
        return "".join(ch if ch.isprintable() else " " for ch in value)


# op -> (its argument names, how to run it)
_Op = Callable[[Operations, Args], object]
OPS: dict[str, tuple[frozenset[str], _Op]] = {
    "list-jobs": (
        frozenset({"cluster", "user", "states", "node", "all"}),
        lambda ops, a: ops.list_jobs(
            cluster=a.word("cluster"),
            query=JobQuery(
                user_name=a.optional_word("user", _USER),
                states=a.states("states"),
                node=a.optional_word("node", _NODE),
                include_ended=a.flag("all"),
            ),
        ),
    ),
    "show": (
        frozenset({"cluster", "job_id", "events"}),
        lambda ops, a: ops.show(
            cluster=a.word("cluster"),
            job_id=a.integer("job_id", maximum=MAX_JOB_ID),
            events=a.integer("events", minimum=0, maximum=MAX_EVENTS),
        ),
    ),
    "checkpoints": (
        frozenset({"cluster", "job_id"}),
        lambda ops, a: ops.checkpoints(
            cluster=a.word("cluster"), job_id=a.integer("job_id", maximum=MAX_JOB_ID)
        ),
    ),
    "checkpoint": (
        frozenset({"cluster", "job_id"}),
        lambda ops, a: ops.checkpoint(
            cluster=a.word("cluster"), job_id=a.integer("job_id", maximum=MAX_JOB_ID)
        ),
    ),
    "requeue": (
        frozenset({"cluster", "job_id", "checkpoint_first"}),
        lambda ops, a: ops.requeue(
            cluster=a.word("cluster"),
            job_id=a.integer("job_id", maximum=MAX_JOB_ID),
            checkpoint_first=a.flag("checkpoint_first"),
        ),
    ),
    "drain": (
        frozenset({"cluster", "node", "reason"}),
        lambda ops, a: ops.drain(
            cluster=a.word("cluster"), node=a.word("node", _NODE), reason=a.text("reason")
        ),
    ),
    "gc": (frozenset({"cluster"}), lambda ops, a: ops.gc(cluster=a.word("cluster"))),
    "gc-plan": (frozenset({"cluster"}), lambda ops, a: ops.gc_plan(cluster=a.word("cluster"))),
    "action": (
        frozenset({"action_id"}),
        lambda ops, a: ops.action(action_id=a.integer("action_id", maximum=MAX_ID)),
    ),
    "verify": (
        frozenset({"cluster", "job_id", "read_data", "seq"}),
        lambda ops, a: ops.verify(
            cluster=a.word("cluster"),
            job_id=a.integer("job_id", maximum=MAX_JOB_ID),
            options=VerifyOptions(
                read_data=a.flag("read_data"), seq=a.optional_integer("seq", maximum=MAX_ID)
            ),
        ),
    ),
}


def parse_request(payload: bytes) -> tuple[str, Mapping[str, object]]:
    """The op and its raw arguments in a credential's payload; RequestError otherwise."""
    try:
        request = json.loads(payload)
    except (ValueError, RecursionError):
        raise bad_request("the credential's payload is not JSON") from None
    shape = 'the payload must be {"op": NAME, "args": {...}}'
    if not isinstance(request, dict) or set(request) - {"op", "args"}:
        raise bad_request(shape)
    op, args = request.get("op"), request.get("args", {})
    if not isinstance(op, str) or op not in OPS:
        raise bad_request(f"{shape}, NAME one of {', '.join(OPS)}")
    if not isinstance(args, dict):
        raise bad_request(shape)
    return op, args
