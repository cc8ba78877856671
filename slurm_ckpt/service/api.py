"""slurm-ckptd's request API: what users' ckpt-admin asks, and the service decides.

One request per connection: `POST /v1` whose body is a MUNGE credential
(at most 64 KiB) whose payload is `{"op": NAME, "args": {...}}`. unmunge gives
the caller's uid (munged refuses forged, expired and replayed credentials);
the service looks up the uid's name and groups itself and answers with the
same `Operations` root's ckpt-admin runs against the catalog. The reply is one
line of JSON: `{"result": ...}` (records as in `wire`), or
`{"error": {"kind": "not_allowed", "message": "..."}}` whose kind is the name
of ckpt-admin's exit code, with an HTTP status to match.

Bounds: the body's size, the time to read it (10 s, however slowly it
trickles), 16 requests at a time (more get 503 at once), two verifications at
a time; every request's failure is caught and answered, the server goes on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any, cast

from slurm_ckpt.cli.errors import ExitCode, exit_code_for
from slurm_ckpt.config import Settings
from slurm_ckpt.db.catalog import Catalog
from slurm_ckpt.db.states import JobState
from slurm_ckpt.errors import (
    CkptError,
    CredentialRefused,
    MungeUnavailable,
)
from slurm_ckpt.munge import Credential
from slurm_ckpt.munge import decode as unmunge
from slurm_ckpt.service import authz, wire
from slurm_ckpt.service.authz import Caller
from slurm_ckpt.service.httpd import BackgroundServer, BoundedServer
from slurm_ckpt.service.ops import JobQuery, Operations, VerifyOptions
from slurm_ckpt.store.layout import MAX_JOB_ID

log = logging.getLogger(__name__)

PATH = "/v1"
MAX_BODY = 64 * 1024
READ_DEADLINE = 10.0  # seconds to send the whole request
MAX_IN_FLIGHT = 16
MAX_VERIFYING = 2  # --read-data reads whole images; a few at a time is plenty
MAX_EVENTS = 10_000
MAX_REASON = 200
MAX_ID = 2**63 - 1  # catalog ids and seqs are 64-bit

_STATUS = {
    ExitCode.USAGE: 400,
    ExitCode.NOT_ALLOWED: 403,
    ExitCode.UNKNOWN_JOB: 404,
    ExitCode.NOT_CHECKPOINTED: 409,
    ExitCode.CATALOG_UNAVAILABLE: 503,
}
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


def _bad(message: str) -> RequestError:
    return RequestError(message, kind="bad_request", status=400)


class _Args:
    """Typed, bounded access to a request's arguments."""

    def __init__(self, raw: Mapping[str, object]) -> None:
        self.raw = raw

    def _get(self, key: str) -> object:
        return self.raw.get(key)

    def word(self, key: str, pattern: re.Pattern[str] = _WORD) -> str:
        value = self._get(key)
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise _bad(f"{key}: not a {key} name")
        return value

    def optional_word(self, key: str, pattern: re.Pattern[str] = _WORD) -> str | None:
        return None if self._get(key) is None else self.word(key, pattern)

    def integer(self, key: str, *, maximum: int, minimum: int = 1) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            raise _bad(f"{key}: a whole number from {minimum} to {maximum}")
        return value

    def optional_integer(self, key: str, *, maximum: int) -> int | None:
        return None if self._get(key) is None else self.integer(key, maximum=maximum)

    def flag(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise _bad(f"{key}: true or false")
        return value

    def states(self, key: str) -> frozenset[JobState]:
        value = self._get(key)
        if not isinstance(value, list) or len(value) > len(JobState):
            raise _bad(f"{key}: a list of job states")
        try:
            return frozenset(JobState(v) for v in value)
        except ValueError:
            raise _bad(f"{key}: one of {', '.join(JobState)}") from None

    def text(self, key: str) -> str | None:
        value = self._get(key)
        if value is None:
            return None
        if not isinstance(value, str) or len(value) > MAX_REASON:
            raise _bad(f"{key}: text of at most {MAX_REASON} characters")
        # Shown in Slurm and in admins' terminals: printable characters only.
        return "".join(ch if ch.isprintable() else " " for ch in value)


# op -> (its argument names, how to run it)
_Op = Callable[[Operations, _Args], object]
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


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]


@dataclass(eq=False)
class Api:
    """Turns one request body into one reply; raises nothing."""

    catalog: Catalog
    settings: Settings
    _: KW_ONLY
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    verify: Callable[[bytes], Credential] = unmunge
    lookup: Callable[[int, str], Caller] = authz.lookup_caller
    _verifying: threading.BoundedSemaphore = field(
        init=False, default_factory=lambda: threading.BoundedSemaphore(MAX_VERIFYING)
    )

    def handle(self, body: bytes) -> Reply:
        caller: Caller | None = None
        op = "?"
        try:
            credential = self.verify(body)
            caller = self.lookup(credential.uid, self.settings.admin.group)
            op, args = _parse(credential.payload)
            result = self._run(caller, op, args)
            _log_done(caller, op, args)
            return Reply(200, {"result": wire.dump(result)})
        except RequestError as err:
            return self._refused(caller, op, err.kind, err.status, str(err))
        except CredentialRefused as err:
            return self._refused(caller, op, "unauthenticated", 401, str(err))
        except MungeUnavailable as err:
            log.error("api: %s", err)
            return Reply(503, _error("service_unavailable", f"on the service host: {err}"))
        except CkptError as err:
            code = exit_code_for(err)
            return self._refused(caller, op, code.name.lower(), _STATUS.get(code, 500), str(err))
        except Exception:
            log.exception("api: %s by %s failed", op, caller.name if caller else "?")
            return Reply(500, _error("error", "internal error in slurm-ckptd; see its log"))

    def _run(self, caller: Caller, op: str, args: Mapping[str, object]) -> object:
        names, run = OPS[op]
        unknown = set(args) - names
        if unknown:
            # repr: the names are the caller's text, and end up in the log.
            shown = ", ".join(sorted(repr(name[:40]) for name in unknown)[:5])
            raise _bad(f"{op}: unknown arguments {shown}")
        ops = Operations(self.catalog, self.settings, caller, self.clock)
        if op != "verify":
            return run(ops, _Args(args))
        if not self._verifying.acquire(blocking=False):
            raise RequestError(
                "the service is verifying other images; try again shortly",
                kind="busy",
                status=503,
            )
        try:
            return run(ops, _Args(args))
        finally:
            self._verifying.release()

    def _refused(
        self, caller: Caller | None, op: str, kind: str, status: int, message: str
    ) -> Reply:
        who = f"{caller.name} (uid {caller.uid})" if caller else "an unverified caller"
        level = logging.WARNING if status in (400, 401, 403) else logging.INFO
        log.log(level, "api: %s by %s refused: %s", op, who, message)
        return Reply(status, _error(kind, message))


def _parse(payload: bytes) -> tuple[str, Mapping[str, object]]:
    try:
        request = json.loads(payload)
    except (ValueError, RecursionError):
        raise _bad("the credential's payload is not JSON") from None
    shape = 'the payload must be {"op": NAME, "args": {...}}'
    if not isinstance(request, dict) or set(request) - {"op", "args"}:
        raise _bad(shape)
    op, args = request.get("op"), request.get("args", {})
    if not isinstance(op, str) or op not in OPS:
        raise _bad(f"{shape}, NAME one of {', '.join(OPS)}")
    if not isinstance(args, dict):
        raise _bad(shape)
    return op, args


def _log_done(caller: Caller, op: str, args: Mapping[str, object]) -> None:
    # Actions are what an audit wants; reads are many and only debug.
    level = logging.INFO if op in ("checkpoint", "requeue", "drain", "gc") else logging.DEBUG
    shown = {k: v for k, v in args.items() if k != "reason"}
    log.log(level, "api: %s %s by %s (uid %d)", op, shown, caller.name, caller.uid)


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"error": {"kind": kind, "message": message}}


class _Server(BoundedServer):
    def __init__(self, address: tuple[str, int], api: Api) -> None:
        self.api = api
        super().__init__(address, _Handler, slots=MAX_IN_FLIGHT)

    def refuse(self, request: socket.socket) -> None:
        _busy(request)


def _busy(sock: socket.socket) -> None:
    """Answer 503 without a handler thread; the acceptor waits at most a moment."""
    body = json.dumps(_error("busy", "slurm-ckptd is busy; try again shortly")).encode() + b"\n"
    head = (
        "HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with contextlib.suppress(OSError):  # a client that went away needs no answer
        sock.settimeout(0.1)
        sock.sendall(head.encode() + body)
        sock.shutdown(socket.SHUT_WR)
        # Read what the client sent: closing on unread data would reset the
        # connection and lose the answer.
        unread, until = MAX_BODY + 8192, time.monotonic() + 0.2
        while unread > 0 and time.monotonic() < until and (chunk := sock.recv(16384)):
            unread -= len(chunk)


class _Handler(BaseHTTPRequestHandler):
    server_version = "slurm-ckptd"
    timeout = READ_DEADLINE  # each read of the socket

    def setup(self) -> None:
        super().setup()
        # The whole request must arrive by the deadline, however slowly it trickles.
        self._deadline = threading.Timer(READ_DEADLINE, self._cut)
        self._deadline.daemon = True
        self._deadline.start()

    def _cut(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        self._deadline.cancel()
        with contextlib.suppress(OSError):  # the client went away first
            super().finish()

    def do_POST(self) -> None:
        if self.path != PATH:
            self._reply(Reply(404, _error("not_found", f"POST {PATH} only")))
            return
        length = self.headers.get("Content-Length", "")
        if not length.isdigit():
            self._reply(Reply(411, _error("bad_request", "Content-Length is required")))
            return
        if int(length) > MAX_BODY:
            self._reply(Reply(413, _error("bad_request", f"body above {MAX_BODY} bytes")))
            return
        body = self.rfile.read(int(length))
        self._deadline.cancel()
        if len(body) != int(length):
            return  # cut at the deadline or closed by the client: nobody to answer
        self._reply(cast(_Server, self.server).api.handle(body))

    def do_GET(self) -> None:
        self._reply(Reply(405, _error("bad_request", f"POST {PATH} only")))

    do_PUT = do_DELETE = do_HEAD = do_GET

    def _reply(self, reply: Reply) -> None:
        data = json.dumps(reply.body, separators=(",", ":")).encode("utf-8") + b"\n"
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("api http %s: " + format, self.address_string(), *args)


class ApiServer(BackgroundServer):
    """The API in a daemon thread, on `host`:`port` (0: a port the kernel picks)."""

    def __init__(self, api: Api, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(
            "ckpt-admin API",
            lambda address: _Server(address, api),
            host=host,
            port=port,
            path=PATH,
        )
