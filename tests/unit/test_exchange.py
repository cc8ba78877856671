"""The exchange between launcher and service: requests are parsed strictly (the
launcher acts on them), results and restart reports are read into bounded values
that never raise (the service reads what a hostile user may have written)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from slurm_ckpt.db.states import CheckpointKind
from slurm_ckpt.exchange import (
    MAX_MESSAGE_BYTES,
    Attempt,
    BadRequest,
    CheckpointRequest,
    CheckpointResult,
    RestartOutcome,
    RestartReport,
    ResultReply,
    parse_request,
    read_restart,
    read_result,
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
        (b" " * (MAX_MESSAGE_BYTES + 1), f"more than {MAX_MESSAGE_BYTES}"),
        (b"[" * 60_000, "not JSON"),
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
            kind=CheckpointKind.PERIODIC,
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
            outcome=RestartOutcome.FELL_BACK,
            at=at,
            seq=1,
            attempts=[Attempt(2, "bad")],
        ).to_json()
    )
    assert report["attempts"] == [{"seq": 2, "error": "bad"}]
    assert report["outcome"] == "fell_back"


def test_a_request_the_service_writes_is_one_the_launcher_accepts() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    sent = CheckpointRequest(job_id=7, seq=4, kind=CheckpointKind.ADMIN, requested_at=at)
    parsed = parse_request(sent.to_json(), 7)
    assert (parsed.seq, parsed.kind, parsed.job_id) == (4, CheckpointKind.ADMIN, 7)


def test_a_result_the_launcher_writes_reads_back_on_the_service_side() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    failed = CheckpointResult(7, 2, CheckpointKind.FINAL, False, at, 1, error="dump failed")
    assert read_result(json.loads(failed.to_json()), 2) == ResultReply(False, "dump failed")
    done = CheckpointResult(7, 3, CheckpointKind.FINAL, True, at, 1)
    assert read_result(json.loads(done.to_json()), 3).ok
    # Answering another seq is no answer to this one.
    assert not read_result(json.loads(done.to_json()), 4).ok


@pytest.mark.parametrize(
    "doc",
    [None, [], "text", {"seq": True, "ok": True}, {"seq": "3", "ok": True}, {"ok": True}],
)
def test_a_malformed_result_is_a_failed_answer(doc: object) -> None:
    reply = read_result(doc, 3)
    assert not reply.ok and "unreadable" in reply.error


def test_a_result_error_is_made_printable_and_bounded() -> None:
    reply = read_result({"seq": 1, "ok": False, "error": "\x1b[31mred\n" + "x" * 10_000}, 1)
    assert "\x1b" not in reply.error and "\n" not in reply.error
    assert len(reply.error) <= 2000


def test_a_restart_report_reads_back_with_its_failures() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    report = RestartReport(
        7,
        1,
        RestartOutcome.FELL_BACK,
        at,
        seq=1,
        attempts=[Attempt(2, "bad")],
        launcher_seconds=1.5,
    )
    reply = read_restart(json.loads(report.to_json()))
    assert reply.outcome == RestartOutcome.FELL_BACK and reply.seq == 1
    assert reply.failures == "image 2: bad" and reply.launcher_seconds == 1.5


@pytest.mark.parametrize(
    "doc",
    [
        None,
        [1],
        {"outcome": "restored-ish"},
        {"outcome": ["restored"]},
    ],
)
def test_a_malformed_restart_report_counts_as_failed(doc: object) -> None:
    assert read_restart(doc).outcome == RestartOutcome.FAILED


def test_a_restart_report_is_bounded() -> None:
    doc = {
        "outcome": "fresh_start",
        "seq": 2**70,
        "launcher_seconds": float("inf"),
        "attempts": [{"seq": n, "error": "e" * 5000} for n in range(1, 100)] + ["x"],
    }
    reply = read_restart(doc)
    assert reply.outcome == RestartOutcome.FRESH_START
    assert reply.seq is None and reply.launcher_seconds is None
    assert reply.failures.count("image ") <= 10 and len(reply.failures) <= 2000
