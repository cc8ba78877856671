"""slurm-ckptd's metrics endpoint over a real socket on localhost (no Slurm needed)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from slurm_ckpt.errors import ServiceError
from slurm_ckpt.service.metrics import Health, Metrics, MetricsServer


class HealthSwitch:
    """A health callback the test can flip."""

    def __init__(self) -> None:
        self.health = Health(healthy=True, last_sync_age_seconds=1.5)
        self.calls = 0

    def __call__(self) -> Health:
        self.calls += 1
        return self.health


@pytest.fixture
def health() -> HealthSwitch:
    return HealthSwitch()


@pytest.fixture
def server(health: HealthSwitch) -> Iterator[MetricsServer]:
    srv = MetricsServer(Metrics(), health)
    srv.start()
    yield srv
    srv.stop()


def get(srv: MetricsServer, path: str) -> tuple[int, str, bytes]:
    url = f"http://127.0.0.1:{srv.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers["Content-Type"], err.read()


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def test_port_zero_gets_a_real_port(server: MetricsServer) -> None:
    assert server.port > 0


def test_metrics_shows_what_was_counted(health: HealthSwitch) -> None:
    metrics = Metrics()
    with MetricsServer(metrics, health) as srv:
        # What the service sets: two valid checkpoints and a failed one (its outcome
        # handler), a requeue, a sync pass.
        for size, dump, freeze in ((4096, 2.5, 0.7), (1024, 0.4, 0.1)):
            metrics.checkpoints.labels(outcome="valid").inc()
            metrics.checkpoint_bytes.inc(size)
            metrics.dump_seconds.observe(dump)
            metrics.freeze_seconds.observe(freeze)
        metrics.checkpoints.labels(outcome="failed").inc()
        metrics.requeues.labels(cause="node_fail").inc()
        metrics.jobs_tracked.set(17)
        metrics.slurm_up.set(1)
        metrics.sync_seconds.observe(0.2)

        status, content_type, body = get(srv, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    found = samples(body)
    assert found[("slurm_ckpt_checkpoints_total", (("outcome", "valid"),))] == 2
    assert found[("slurm_ckpt_checkpoints_total", (("outcome", "failed"),))] == 1
    assert found[("slurm_ckpt_checkpoint_bytes_total", ())] == 5120
    assert found[("slurm_ckpt_requeues_total", (("cause", "node_fail"),))] == 1
    assert found[("slurm_ckpt_dump_seconds_count", ())] == 2
    assert found[("slurm_ckpt_dump_seconds_sum", ())] == 2.9
    assert found[("slurm_ckpt_dump_seconds_bucket", (("le", "0.5"),))] == 1
    assert found[("slurm_ckpt_freeze_seconds_bucket", (("le", "1.0"),))] == 2
    assert found[("slurm_ckpt_sync_seconds_count", ())] == 1
    assert found[("slurm_ckpt_jobs_tracked", ())] == 17
    assert found[("slurm_ckpt_slurm_up", ())] == 1
    assert found[("slurm_ckpt_catalog_up", ())] == 0
    assert found[("slurm_ckpt_checkpoints_in_flight", ())] == 0
    assert found[("slurm_ckpt_schedule_delay_seconds_count", ())] == 0


def test_each_metrics_instance_has_its_own_registry(health: HealthSwitch) -> None:
    first, second = Metrics(), Metrics()
    first.checkpoints.labels(outcome="failed").inc()
    found = samples(second.render())
    assert found[("slurm_ckpt_checkpoints_total", (("outcome", "failed"),))] == 0


def test_healthz_ok(server: MetricsServer, health: HealthSwitch) -> None:
    status, content_type, body = get(server, "/healthz")
    assert status == 200
    assert content_type == "application/json"
    assert json.loads(body) == {"status": "ok", "last_sync_age_seconds": 1.5}
    assert health.calls == 1


def test_healthz_unhealthy(server: MetricsServer, health: HealthSwitch) -> None:
    health.health = Health(healthy=False, last_sync_age_seconds=None, detail="no sync yet")
    status, _, body = get(server, "/healthz")
    assert status == 503
    assert json.loads(body) == {
        "status": "unhealthy",
        "last_sync_age_seconds": None,
        "detail": "no sync yet",
    }
    # And back.
    health.health = Health(healthy=True, last_sync_age_seconds=0.0)
    assert get(server, "/healthz")[0] == 200


def test_healthz_when_the_check_raises() -> None:
    def broken() -> Health:
        raise RuntimeError("catalog gone")

    with MetricsServer(Metrics(), broken) as srv:
        status, _, body = get(srv, "/healthz")
    assert status == 503
    reply = json.loads(body)
    assert reply["status"] == "unhealthy"
    assert "catalog gone" in reply["detail"]


def test_unknown_path_is_404(server: MetricsServer) -> None:
    assert get(server, "/")[0] == 404
    assert get(server, "/metricsx")[0] == 404


def test_metrics_path_with_a_query(server: MetricsServer) -> None:
    assert get(server, "/metrics?name[]=x")[0] == 200


def test_stop_closes_the_port_and_is_idempotent(health: HealthSwitch) -> None:
    srv = MetricsServer(Metrics(), health)
    srv.start()
    port = srv.port
    srv.stop()
    srv.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)


def test_start_twice_and_a_busy_port(server: MetricsServer, health: HealthSwitch) -> None:
    with pytest.raises(ServiceError, match="already running"):
        server.start()
    other = MetricsServer(Metrics(), health, port=server.port)
    with pytest.raises(ServiceError, match=f"cannot listen on 127.0.0.1:{server.port}"):
        other.start()


def test_bad_port_is_refused(health: HealthSwitch) -> None:
    with pytest.raises(ValueError):
        MetricsServer(Metrics(), health, port=70000)
