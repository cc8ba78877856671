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

The ops and the checks of their arguments are in `apiops`; this module
authenticates a request, runs it and serves the API over HTTP.
"""

from __future__ import annotations

import contextlib
import json
import logging
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
from slurm_ckpt.errors import (
    CkptError,
    CredentialRefused,
    MungeUnavailable,
)
from slurm_ckpt.munge import Credential
from slurm_ckpt.munge import decode as unmunge
from slurm_ckpt.service import authz, wire
from slurm_ckpt.service.apiops import OPS, Args, RequestError, bad_request, parse_request
from slurm_ckpt.service.authz import Caller
from slurm_ckpt.service.httpd import BackgroundServer, BoundedServer
from slurm_ckpt.service.ops import Operations

log = logging.getLogger(__name__)

PATH = "/v1"
MAX_BODY = 64 * 1024
READ_DEADLINE = 10.0  # seconds to send the whole request
MAX_IN_FLIGHT = 16
MAX_VERIFYING = 2  # --read-data reads whole images; a few at a time is plenty

_STATUS = {
    ExitCode.USAGE: 400,
    ExitCode.NOT_ALLOWED: 403,
    ExitCode.UNKNOWN_JOB: 404,
    ExitCode.NOT_CHECKPOINTED: 409,
    ExitCode.CATALOG_UNAVAILABLE: 503,
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
            op, args = parse_request(credential.payload)
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
            raise bad_request(f"{op}: unknown arguments {shown}")
        ops = Operations(self.catalog, self.settings, caller, self.clock)
        if op != "verify":
            return run(ops, Args(args))
        if not self._verifying.acquire(blocking=False):
            raise RequestError(
                "the service is verifying other images; try again shortly",
                kind="busy",
                status=503,
            )
        try:
            return run(ops, Args(args))
        finally:
            self._verifying.release()

    def _refused(
        self, caller: Caller | None, op: str, kind: str, status: int, message: str
    ) -> Reply:
        who = f"{caller.name} (uid {caller.uid})" if caller else "an unverified caller"
        level = logging.WARNING if status in (400, 401, 403) else logging.INFO
        log.log(level, "api: %s by %s refused: %s", op, who, message)
        return Reply(status, _error(kind, message))


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
