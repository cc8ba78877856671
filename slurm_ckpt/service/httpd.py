"""A small HTTP server in a daemon thread: what the metrics endpoint and the API share."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from slurm_ckpt.errors import ServiceError

log = logging.getLogger(__name__)


class BoundedServer(ThreadingHTTPServer):
    """At most `slots` requests in hand: one more is handed to `refuse` and closed,
    never given a thread (anyone on the host can connect, and flood)."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], *, slots: int
    ) -> None:
        self._slots = threading.BoundedSemaphore(slots)
        super().__init__(address, handler)

    def refuse(self, request: socket.socket) -> None:
        """Answer a request beyond the slots before it is closed; by default, nothing."""

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refuse(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class BackgroundServer:
    """Serves `make_server((host, port))` in a daemon thread (port 0: the kernel picks)."""

    def __init__(
        self,
        what: str,
        make_server: Callable[[tuple[str, int]], ThreadingHTTPServer],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/",
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {port}")
        self._what = what
        self._make = make_server
        self._host = host
        self._port = port
        self._path = path
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and serve; raises ServiceError when the address cannot be used."""
        if self._server is not None:
            raise ServiceError(f"{self._what} is already running")
        try:
            server = self._make((self._host, self._port))
        except OSError as err:
            reason = err.strerror or str(err)
            raise ServiceError(
                f"{self._what} cannot listen on {self._host}:{self._port}: {reason}"
            ) from err
        thread = threading.Thread(
            target=server.serve_forever, name=f"slurm-ckptd {self._what}", daemon=True
        )
        thread.start()
        self._server, self._thread = server, thread
        log.info("%s on http://%s:%d%s", self._what, self._host, self.port, self._path)

    def stop(self) -> None:
        """Stop serving and close the socket; stopping a stopped server does nothing."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join()
        self._server = self._thread = None

    @property
    def port(self) -> int:
        """The port listened on (the one the kernel chose for port 0), else the configured one."""
        if self._server is None:
            return self._port
        return int(self._server.server_address[1])

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
