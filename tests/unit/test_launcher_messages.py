"""Request parsing is strict: a request comes from outside the launcher's control."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from slurm_ckpt.launcher.messages import (
    BadRequest,
    CheckpointResult,
    RestartReport,
    parse_request,
)


def req(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_a_valid_request_parses() -> None:
    parsed = parse_request(req(job_id=7, seq=3, kind="final"), 7)
    assert (parsed.seq, parsed.kind) == (3, "final")


def test_kind_defaults_to_periodic() -> None:
    assert parse_request(req(job_id=7, seq=1), 7).kind == "periodic"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (req(job_id=8, seq=1), "this is job 7"),
        (req(seq=1), "this is job 7"),
        (req(job_id=7, seq="../../etc"), "seq must be an integer"),
        (req(job_id=7, seq=0), "seq must be an integer"),
        (req(job_id=7, seq=1_000_000), "seq must be an integer"),
        (req(job_id=7, seq=True), "seq must be an integer"),
        (req(job_id=7, seq=1, kind="rm -rf"), "kind must be one of"),
        (req(job_id=7, seq=1, path="/etc/passwd"), "unknown keys: path"),
        (b" " * 5000, "more than 4096"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(BadRequest) as err:
        parse_request(data, 7)
    assert reason in str(err.value)
    assert "\n" not in str(err.value)


def test_result_and_report_serialise_to_json() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    result = json.loads(
        CheckpointResult(
            job_id=7,
            seq=2,
            kind="periodic",
            ok=False,
            finished_at=at,
            restart_count=1,
            error="dump failed: x",
        ).to_json()
    )
    assert result["finished_at"] == "2026-01-02T03:04:05+00:00"
    assert (result["ok"], result["error"], result["seq"]) == (False, "dump failed: x", 2)
    report = json.loads(
        RestartReport(
            job_id=7,
            restart_count=1,
            outcome="fell_back",
            at=at,
            seq=1,
            attempts=[{"seq": 2, "error": "bad"}],
        ).to_json()
    )
    assert report["attempts"] == [{"seq": 2, "error": "bad"}]
    assert report["outcome"] == "fell_back"
