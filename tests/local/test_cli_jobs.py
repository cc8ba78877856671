"""ckpt-admin's read-only commands against a SQLite catalog filled by fixtures: the
list-jobs table against golden files at 100 columns, --json against the schema in
docs/, who sees what, and one line plus a distinct exit code for each error.

The commands run as root does, on the catalog; `as_user` gives them instead the
answers the service's API gives that caller (the same `Operations`, in process,
with the service's settings), as tests/integration/test_admin_api.py does over
MUNGE and HTTP with the real command."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner, Result

from slurm_ckpt.cli import context
from slurm_ckpt.cli.main import cli
from slurm_ckpt.config import load_settings
from slurm_ckpt.db import migrate
from slurm_ckpt.db.catalog import Catalog, DumpResult, NewJob
from slurm_ckpt.db.session import open_database
from slurm_ckpt.db.states import EventKind, JobState
from slurm_ckpt.service.authz import ROOT, Caller
from slurm_ckpt.service.ops import Operations

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "data" / "cli"
SCHEMA = json.loads((REPO / "docs" / "cli-json.schema.json").read_text())
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CLUSTER = "test"
ALICE = Caller(2901, "ckpt-alice", is_admin=False)
BOB = Caller(2902, "ckpt-bob", is_admin=False)
GiB = 1 << 30


def at(hh: int, mm: int, ss: int = 0) -> datetime:
    return NOW.replace(hour=hh, minute=mm, second=ss)


def dump(job_id: int, seq: int, size: int) -> DumpResult:
    return DumpResult(
        store_path=f"/store/{job_id}/checkpoints/{seq:06d}",
        total_bytes=size,
        file_count=31,
        dump_seconds=4.2,
        freeze_seconds=3.9,
        criu_version="4.2.1",
        manifest_checksum="xxh3_128:" + "0" * 32,
    )


def fill(catalog: Catalog) -> None:
    """Five jobs of two users in several states, and one on another cluster."""

    def job(slurm_id: int, user: Caller, interval: int, since: datetime) -> int:
        new = NewJob(CLUSTER, slurm_id, user.name, user.uid, interval)
        (record,) = catalog.track_jobs([new], since)
        return record.id

    def valid(job_id: int, requested: datetime, took: float, size: int) -> None:
        c = catalog.request_checkpoint(job_id, requested)
        catalog.mark_valid(c.id, dump(job_id, c.seq, size), requested + timedelta(seconds=took))

    def failed(job_id: int, requested: datetime, error: str) -> None:
        c = catalog.request_checkpoint(job_id, requested)
        catalog.mark_failed(c.id, error, requested + timedelta(minutes=10))

    a = job(4242001, ALICE, 1800, at(9, 55))
    catalog.update_job(a, at(9, 56), state=JobState.RUNNING, batch_host="node1")
    valid(a, at(10, 30), 41, int(1.2 * GiB))
    valid(a, at(11, 0), 43, int(1.3 * GiB))
    valid(a, at(11, 40), 40, int(1.25 * GiB))

    b = job(4242002, BOB, 600, at(11, 0))
    catalog.update_job(b, at(11, 1), state=JobState.RUNNING, batch_host="node2")
    failed(b, at(11, 10), "criu: connected TCP socket to 10.0.0.5:443 (--tcp-established off)")
    catalog.mark_uncheckpointable(b, "5 dumps failed in a row: connected TCP socket", at(11, 50))

    job(4242003, ALICE, 3600, at(11, 58))

    d = job(4242004, ALICE, 900, NOW - timedelta(days=2))
    catalog.update_job(d, at(11, 0), state=JobState.RUNNING, batch_host="node2")
    valid(d, NOW - timedelta(days=1, hours=3), 12, 300 << 20)
    failed(d, at(11, 30), "no result by the deadline (10m)")
    catalog.record_requeue(d, "node node2 failed (NODE_FAIL)", at(11, 45))
    catalog.record_event(d, EventKind.RESTORED, at(11, 46), detail="from image 1", checkpoint_seq=1)
    catalog.update_job(d, at(11, 46), state=JobState.REQUEUED, batch_host="node1")

    e = job(4242005, BOB, 1800, at(8, 0))
    catalog.update_job(e, at(10, 0), state=JobState.COMPLETED, batch_host="node1")
    valid(e, at(8, 30), 30, 900 << 20)

    catalog.track_jobs([NewJob("other", 4242001, "ckpt-carol", 2903, 60)], at(11, 0))


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Settings for one test: a migrated, filled catalog; fixed clock, zone and width."""
    url = f"sqlite:///{tmp_path}/catalog.db"
    config = tmp_path / "config.toml"
    config.write_text(
        f'[paths]\nstate_dir = "{tmp_path}"\nstore_root = "{tmp_path}/store"\n'
        f'[catalog]\nurl = "{url}"\n[slurm]\ncluster = "{CLUSTER}"\n'
        '[admin]\ngroup = "slurm-ckpt-test-no-such-group"\n'
    )
    migrate.upgrade(url)
    db = open_database(url)
    fill(Catalog(db))
    db.dispose()
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setattr(context, "make_backend", _root_backend)
    yield {
        "SLURM_CKPT_CONFIG": str(config),
        "SLURM_CKPT_NOW": NOW.isoformat(),
        "COLUMNS": "100",
        "SLURM_CKPT_CATALOG_URL": url,
    }
    monkeypatch.undo()
    time.tzset()


def run(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=env)


def _root_backend(app: context.App) -> Operations:
    # Root's ckpt-admin, whoever runs the tests.
    return Operations(app.catalog, app.settings, ROOT, app.now)


def as_user(monkeypatch: pytest.MonkeyPatch, caller: Caller) -> None:
    """Answer the commands as the service answers `caller`: with the service's own
    settings (the file), never the ones the caller's environment sets."""

    def backend(app: context.App) -> Operations:
        assert app.settings.config_file is not None
        service_settings = load_settings(app.settings.config_file, env={})
        return Operations(app.catalog, service_settings, caller, app.now)

    monkeypatch.setattr(context, "make_backend", backend)


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("SLURM_CKPT_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text(), f"output differs from {path}"


def valid_json(result: Result, kind: str) -> dict[str, object]:
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert doc["schema_version"] == 1 and doc["kind"] == kind
    return doc  # type: ignore[no-any-return]


def one_line_error(result: Result, code: int, fragment: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.output)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ckpt-admin: "), result.stderr
    assert fragment in lines[0]
    assert "Traceback" not in result.output


# list-jobs


def test_list_jobs_table_matches_the_golden_file_and_fits_100_columns(
    env: dict[str, str],
) -> None:
    result = run(env, "list-jobs")
    assert result.exit_code == 0, result.output
    golden("list-jobs.txt", result.stdout)
    assert max(len(line) for line in result.stdout.splitlines()) <= 100


def test_list_jobs_all_includes_ended_jobs(env: dict[str, str]) -> None:
    result = run(env, "list-jobs", "--all")
    assert result.exit_code == 0, result.output
    golden("list-jobs-all.txt", result.stdout)
    assert "COMPLETED" in result.stdout and "ckpt-carol" not in result.stdout


def test_list_jobs_cuts_the_problem_column_on_a_narrow_terminal(env: dict[str, str]) -> None:
    result = run({**env, "COLUMNS": "90"}, "list-jobs")
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 90
    assert any(line.endswith("…") for line in lines)


def test_list_jobs_json_follows_the_schema(env: dict[str, str]) -> None:
    doc = valid_json(run(env, "list-jobs", "--json"), "job_list")
    jobs = {j["job_id"]: j for j in doc["jobs"]}  # type: ignore[attr-defined]
    assert sorted(jobs) == [4242001, 4242002, 4242003, 4242004]
    a = jobs[4242001]
    assert a["valid_images"] == 3 and a["last_valid_at"] == "2026-03-01T11:40:40Z"
    assert a["last_valid_age_seconds"] == 1160
    # One interval after the newest request (11:40).
    assert a["next_due_at"] == "2026-03-01T12:10:00Z" and a["next_due_in_seconds"] == 600
    b = jobs[4242002]
    assert b["next_due_at"] is None and b["problem"].startswith("uncheckpointable: ")
    assert b["last_failure"]["seq"] == 1
    d = jobs[4242004]
    assert d["restarts"] == 1 and d["state"] == "REQUEUED"
    assert d["problem"] == "checkpoint 2 failed: no result by the deadline (10m)"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--user", "ckpt-bob"], [4242002]),
        (["--state", "pending"], [4242003]),
        (["--state", "COMPLETED"], [4242005]),
        (["--node", "node1"], [4242001, 4242004]),
        (["--all", "--user", "ckpt-bob"], [4242002, 4242005]),
    ],
)
def test_list_jobs_filters(env: dict[str, str], args: list[str], expected: list[int]) -> None:
    doc = valid_json(run(env, "list-jobs", "--json", *args), "job_list")
    assert [j["job_id"] for j in doc["jobs"]] == expected  # type: ignore[attr-defined]


def test_an_ordinary_user_sees_only_their_own_jobs(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    as_user(monkeypatch, BOB)
    doc = valid_json(run(env, "list-jobs", "--json", "--all"), "job_list")
    assert [j["job_id"] for j in doc["jobs"]] == [4242002, 4242005]  # type: ignore[attr-defined]
    one_line_error(run(env, "list-jobs", "--user", "ckpt-alice"), 8, "other users' jobs")
    one_line_error(run(env, "show", "4242001"), 8, "belongs to another user")


def test_a_member_of_the_admin_group_sees_every_job(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    as_user(monkeypatch, Caller(2902, "ckpt-bob", is_admin=True))
    doc = valid_json(run(env, "list-jobs", "--json"), "job_list")
    assert len(doc["jobs"]) == 4  # type: ignore[arg-type]


def test_the_callers_own_settings_grant_nothing(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    as_user(monkeypatch, BOB)
    env = {**env, "SLURM_CKPT_ADMIN_GROUP": "ckpt-bob"}
    doc = valid_json(run(env, "list-jobs", "--json", "--all"), "job_list")
    assert [j["job_id"] for j in doc["jobs"]] == [4242002, 4242005]  # type: ignore[attr-defined]
    one_line_error(run(env, "requeue", "4242002"), 8, "needs root or membership")


# show, checkpoints


def test_show_prints_the_job_and_its_events(env: dict[str, str]) -> None:
    result = run(env, "show", "4242004")
    assert result.exit_code == 0, result.output
    golden("show.txt", result.stdout)
    doc = valid_json(run(env, "show", "4242004", "--json"), "job")
    kinds = [e["kind"] for e in doc["events"]]  # type: ignore[attr-defined]
    assert kinds == ["restored", "requeued"]


def test_checkpoints_lists_every_checkpoint_newest_first(env: dict[str, str]) -> None:
    result = run(env, "checkpoints", "4242001")
    assert result.exit_code == 0, result.output
    golden("checkpoints.txt", result.stdout)
    doc = valid_json(run(env, "checkpoints", "4242002", "--json"), "checkpoint_list")
    (only,) = doc["checkpoints"]  # type: ignore[misc]
    assert only["state"] == "FAILED" and "TCP" in only["error"]


# errors: one line, one exit code each


def test_unknown_job_exits_3(env: dict[str, str]) -> None:
    one_line_error(run(env, "show", "999"), 3, "job 999 is not tracked on cluster test")


def test_malformed_job_id_exits_2(env: dict[str, str]) -> None:
    one_line_error(run(env, "show", "12abc"), 2, "'12abc' is not a Slurm job id")
    one_line_error(run(env, "list-jobs", "--state", "SLEEPING"), 2, "--state")
    one_line_error(run(env, "list-jobs", "--bogus"), 2, "No such option")


def test_job_not_checkpointed_exits_4(env: dict[str, str]) -> None:
    one_line_error(run(env, "verify", "4242003"), 4, "no valid checkpoint")
    one_line_error(run(env, "checkpoint", "4242003"), 4, "is PENDING")


def test_catalog_down_exits_5(env: dict[str, str], tmp_path: Path) -> None:
    down = {**env, "SLURM_CKPT_CATALOG_URL": f"sqlite:///{tmp_path}/missing/dir/catalog.db"}
    one_line_error(run(down, "list-jobs"), 5, "unavailable")


def test_catalog_not_migrated_exits_5(env: dict[str, str], tmp_path: Path) -> None:
    empty = {**env, "SLURM_CKPT_CATALOG_URL": f"sqlite:///{tmp_path}/empty.db"}
    one_line_error(run(empty, "list-jobs"), 5, "ckpt-admin db upgrade")


def test_bad_configuration_exits_10(env: dict[str, str]) -> None:
    bad = {**env, "SLURM_CKPT_SLURM_CLUSTER": "no spaces allowed"}
    one_line_error(run(bad, "list-jobs"), 10, "slurm.cluster")
