"""Prometheus metrics of slurm-ckptd and the small HTTP server that exposes them.

`Metrics` keeps its own registry rather than prometheus_client's global one,
so several instances (tests, a stand-by service) never clash over names.
`MetricsServer` serves `GET /metrics` and `GET /healthz` from a daemon thread.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, cast

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from slurm_ckpt.service.httpd import BackgroundServer, BoundedServer
from slurm_ckpt.service.requests import Outcome

log = logging.getLogger(__name__)

OUTCOMES = ("valid", "failed")
_PREFIX = "slurm_ckpt_"  # of every name; counters' also end in _total

# Dumps and freezes of large jobs take minutes; a poll of Slurm and the catalog seconds.
_DUMP_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
_SYNC_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_DELAY_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)

# Every metric's help text, by its name between _PREFIX and a counter's _total.
_HELP = {
    "checkpoints": "Checkpoints finished, by outcome (valid or failed).",
    "checkpoint_bytes": "Bytes written in valid checkpoint images.",
    "requeues": "Jobs the service requeued, by cause.",
    "dump_seconds": "Time one dump took, from the launcher's result.",
    "freeze_seconds": "Time the workload was frozen during one dump.",
    "sync_seconds": "Time one sync of Slurm's jobs with the catalog took.",
    "schedule_delay_seconds": "How late a checkpoint request went out after its due time.",
    "jobs_tracked": "Checkpointed jobs the service tracks.",
    "checkpoints_in_flight": "Checkpoint requests sent and not answered yet.",
    "catalog_up": "1 when the last catalog access worked.",
    "slurm_up": "1 when the last Slurm query worked.",
}


class Metrics:
    """Every metric the service exports, in one dedicated registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.checkpoints = self._counter("checkpoints", "outcome")
        self.checkpoint_bytes = self._counter("checkpoint_bytes")
        self.requeues = self._counter("requeues", "cause")
        self.dump_seconds = self._histogram("dump_seconds", _DUMP_BUCKETS)
        self.freeze_seconds = self._histogram("freeze_seconds", _DUMP_BUCKETS)
        self.sync_seconds = self._histogram("sync_seconds", _SYNC_BUCKETS)
        self.schedule_delay_seconds = self._histogram("schedule_delay_seconds", _DELAY_BUCKETS)
        self.jobs_tracked = self._gauge("jobs_tracked")
        self.checkpoints_in_flight = self._gauge("checkpoints_in_flight")
        self.catalog_up = self._gauge("catalog_up")
        self.slurm_up = self._gauge("slurm_up")
        # Known label values show up as 0 before the first event, so rate() works at once.
        for outcome in OUTCOMES:
            self.checkpoints.labels(outcome=outcome)

    def _counter(self, name: str, *labels: str) -> Counter:
        return Counter(f"{_PREFIX}{name}_total", _HELP[name], labels, registry=self.registry)

    def _histogram(self, name: str, buckets: tuple[float, ...]) -> Histogram:
        return Histogram(_PREFIX + name, _HELP[name], buckets=buckets, registry=self.registry)

    def _gauge(self, name: str) -> Gauge:
        return Gauge(_PREFIX + name, _HELP[name], registry=self.registry)

    def checkpoint_finished(self, outcome: Outcome) -> None:
        """Count one finished checkpoint; observe a valid one's size and times."""
        self.checkpoints.labels(outcome="valid" if outcome.valid else "failed").inc()
        if outcome.valid:
            self.checkpoint_bytes.inc(outcome.total_bytes)
            self.dump_seconds.observe(outcome.dump_seconds)
            self.freeze_seconds.observe(outcome.freeze_seconds)

    def render(self) -> bytes:
        """The registry in Prometheus' text exposition format."""
        return generate_latest(self.registry)


@dataclass(frozen=True)
class Health:
    """What the service reports on /healthz."""

    healthy: bool
    last_sync_age_seconds: float | None  # None before the first sync
    detail: str = ""  # one line saying what is wrong, when unhealthy


HealthCheck = Callable[[], Health]


MAX_CLIENTS = 8  # scrapers and probes at a time; more are closed at once
CLIENT_TIMEOUT = 5.0  # seconds a client may take to send its request


class _Server(BoundedServer):
    """An idle or flooding client costs one slot for a few seconds, never a thread
    and a descriptor for ever."""

    def __init__(self, address: tuple[str, int], metrics: Metrics, health: HealthCheck) -> None:
        self.metrics = metrics
        self.health = health
        super().__init__(address, _Handler, slots=MAX_CLIENTS)


class _Handler(BaseHTTPRequestHandler):
    server_version = "slurm-ckptd"
    timeout = CLIENT_TIMEOUT  # on the socket: a client that sends nothing is dropped

    def do_GET(self) -> None:
        server = cast(_Server, self.server)
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._reply(200, CONTENT_TYPE_LATEST, server.metrics.render())
        elif path == "/healthz":
            status, body = _health_reply(server.health)
            self._reply(status, "application/json", body)
        else:
            self._reply(404, "text/plain; charset=utf-8", b"not found: try /metrics or /healthz\n")

    def _reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # Scrapes every few seconds would flood stderr; keep them at debug level.
        log.debug("metrics http %s: " + format, self.address_string(), *args)


def _health_reply(check: HealthCheck) -> tuple[int, bytes]:
    try:
        health = check()
    except Exception as err:  # a failing check must answer 503, not drop the connection
        log.warning("health check failed: %s", err)
        health = Health(healthy=False, last_sync_age_seconds=None, detail=f"check failed: {err}")
    body: dict[str, object] = {
        "status": "ok" if health.healthy else "unhealthy",
        "last_sync_age_seconds": health.last_sync_age_seconds,
    }
    if health.detail:
        body["detail"] = health.detail
    return (200 if health.healthy else 503), json.dumps(body).encode("utf-8") + b"\n"


class MetricsServer(BackgroundServer):
    """HTTP server for /metrics and /healthz in a daemon thread."""

    def __init__(
        self,
        metrics: Metrics,
        health: HealthCheck,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(
            "metrics",
            lambda address: _Server(address, metrics, health),
            host=host,
            port=port,
            path="/metrics",
        )
