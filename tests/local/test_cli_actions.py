"""ckpt-admin's actions, gc dry run and verify against a SQLite catalog: what is
recorded for the service, how --wait follows an action to its end (a thread
plays the service), who may do what (as the service decides it: see as_user), and
each failure's exit code."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from slurm_ckpt.db.catalog import ActionRecord, Catalog, DumpResult, NewJob
from slurm_ckpt.db.session import open_database
from slurm_ckpt.db.states import ActionKind, ActionState, JobState
from slurm_ckpt.store.checksum import hash_file
from slurm_ckpt.store.folders import ensure_job_dir
from slurm_ckpt.store.layout import JobDir
from slurm_ckpt.store.manifest import MANIFEST_NAME
from slurm_ckpt.store.writer import begin_checkpoint, commit_checkpoint

from .test_cli_jobs import ALICE, BOB, CLUSTER, NOW, as_user, env, golden, one_line_error, run
from .test_cli_jobs import valid_json as valid_json

__all__ = ["env"]  # the fixture, shared with test_cli_jobs


@pytest.fixture
def catalog(env: dict[str, str]) -> Iterator[Catalog]:
    db = open_database(env["SLURM_CKPT_CATALOG_URL"])
    yield Catalog(db)
    db.dispose()


def pending(catalog: Catalog) -> list[ActionRecord]:
    return catalog.claim_actions(CLUSTER, datetime.now(UTC))


class FakeService:
    """Claims actions like slurm-ckptd, reports progress, then ends them as told."""

    def __init__(self, catalog: Catalog, end: ActionState, detail: str) -> None:
        self.catalog, self.end, self.detail = catalog, end, detail
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for _ in range(100):
            claimed = self.catalog.claim_actions(CLUSTER, datetime.now(UTC))
            for a in claimed:
                self.catalog.update_action(
                    a.id, datetime.now(UTC), progress="checkpoint 4 in flight"
                )
                time.sleep(0.6)
                self.catalog.update_action(
                    a.id, datetime.now(UTC), state=self.end, detail=self.detail
                )
                return
            time.sleep(0.1)

    def __enter__(self) -> FakeService:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join(timeout=20)


def test_checkpoint_records_a_pending_action_for_the_service(
    env: dict[str, str], catalog: Catalog
) -> None:
    doc = valid_json(run(env, "checkpoint", "4242001", "--json"), "action")
    action = doc["action"]
    assert action["state"] == "PENDING" and action["kind"] == "checkpoint"  # type: ignore[index]
    (claimed,) = pending(catalog)
    assert claimed.kind == ActionKind.CHECKPOINT and claimed.slurm_job_id == 4242001
    assert claimed.requested_by == "root" and claimed.cluster == CLUSTER


def test_checkpoint_wait_follows_the_action_to_done(env: dict[str, str], catalog: Catalog) -> None:
    with FakeService(catalog, ActionState.DONE, "checkpoint 4 VALID (1.2 GiB)"):
        result = run(env, "checkpoint", "4242001", "--wait")
    assert result.exit_code == 0, result.output
    assert "DONE: checkpoint 4 VALID (1.2 GiB)" in result.stdout
    assert "checkpoint 4 in flight" in result.stderr  # the progress, line by line


def test_a_failed_action_exits_6_with_its_reason(env: dict[str, str], catalog: Catalog) -> None:
    with FakeService(catalog, ActionState.FAILED, "dump failed: TCP socket"):
        result = run(env, "requeue", "4242001", "--checkpoint-first", "--wait")
    assert result.exit_code == 6, result.output
    assert result.stderr.splitlines()[-1].startswith("ckpt-admin: action ")
    assert "failed: dump failed: TCP socket" in result.stderr
    assert "Traceback" not in result.output


def test_wait_gives_up_after_the_timeout_with_exit_7(env: dict[str, str]) -> None:
    started = time.monotonic()
    result = run(env, "checkpoint", "4242001", "--wait", "--timeout", "1s")
    assert time.monotonic() - started < 10
    assert result.exit_code == 7, result.output
    assert "still PENDING after 1s" in result.stderr.splitlines()[-1]


def test_requeue_options_are_recorded(env: dict[str, str], catalog: Catalog) -> None:
    assert run(env, "requeue", "4242001").exit_code == 0
    assert run(env, "requeue", "4242001", "--checkpoint-first").exit_code == 0
    first, second = pending(catalog)
    assert first.options == {"checkpoint_first": False}
    assert second.options == {"checkpoint_first": True}


def test_requeue_without_an_image_is_refused_with_exit_4(env: dict[str, str]) -> None:
    result = run(env, "requeue", "4242002")
    one_line_error(result, 4, "use --checkpoint-first")


def test_drain_records_the_node_and_reason(env: dict[str, str], catalog: Catalog) -> None:
    assert run(env, "drain", "node1", "--reason", "disk swap").exit_code == 0
    (drain,) = pending(catalog)
    assert drain.kind == ActionKind.DRAIN and drain.node == "node1"
    assert drain.options == {"reason": "disk swap"}
    one_line_error(run(env, "drain", "--bad"), 2, "No such option")
    one_line_error(run(env, "drain", "node/../x"), 2, "is not a node name")


def test_users_may_checkpoint_their_own_jobs_only_and_not_requeue_or_drain(
    env: dict[str, str], catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_user(monkeypatch, ALICE)
    assert run(env, "checkpoint", "4242001").exit_code == 0
    (mine,) = pending(catalog)
    assert mine.requested_by == "ckpt-alice"
    one_line_error(run(env, "checkpoint", "4242002"), 8, "belongs to another user")
    one_line_error(run(env, "requeue", "4242001"), 8, "needs root or membership")
    one_line_error(run(env, "drain", "node1"), 8, "needs root or membership")
    one_line_error(run(env, "gc", "--yes"), 8, "needs root or membership")
    assert pending(catalog) == []


def test_action_shows_an_action_and_refuses_another_users(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(env, "checkpoint", "4242002").exit_code == 0
    doc = valid_json(run(env, "action", "1", "--json"), "action")
    assert doc["action"]["job_id"] == 4242002  # type: ignore[index]
    one_line_error(run(env, "action", "77"), 3, "action 77 is not in the catalog")
    as_user(monkeypatch, BOB)
    one_line_error(run(env, "action", "1"), 8, "requested by another user")


def test_gc_dry_run_lists_what_would_go(env: dict[str, str], catalog: Catalog) -> None:
    # keep_last 1: of job 4242001's three images the two older go; the failed ones go.
    gc_env = {**env, "SLURM_CKPT_RETENTION_KEEP_LAST": "1"}
    result = run(gc_env, "gc")
    assert result.exit_code == 0, result.output
    golden("gc-dry-run.txt", result.stdout)
    doc = valid_json(run(gc_env, "gc", "--json"), "gc_plan")
    assert [(d["job_id"], d["seq"], d["why"]) for d in doc["delete"]] == [  # type: ignore[attr-defined]
        (4242001, 2, "retention"),
        (4242001, 1, "retention"),
        (4242002, 1, "failed"),
        (4242004, 2, "failed"),
    ]
    assert pending(catalog) == []  # a dry run records nothing


def test_gc_yes_submits_a_gc_action(env: dict[str, str], catalog: Catalog) -> None:
    assert run(env, "gc", "--yes").exit_code == 0
    (gc,) = pending(catalog)
    assert gc.kind == ActionKind.GC and gc.options == {}


def verifiable_job(catalog: Catalog, store: Path, *, slurm_job_id: int = 4242009) -> None:
    """A running job of ALICE's with one committed image in `store`, recorded as VALID.
    Its uid is whoever runs the tests: verify reads the folder with the owner's identity,
    so the user's folder (made here as the trusted side would) is the caller's."""
    owner = os.geteuid()
    (record,) = catalog.track_jobs(
        [NewJob(CLUSTER, slurm_job_id, ALICE.name, owner, 600, state=JobState.RUNNING)], NOW
    )
    c = catalog.request_checkpoint(record.id, NOW)
    (store / ALICE.name).mkdir(mode=0o700, exist_ok=True)
    job_dir = ensure_job_dir(store, ALICE.name, slurm_job_id)
    staging = begin_checkpoint(job_dir, c.seq)
    (staging / "pages-1.img").write_bytes(b"x" * 300_000)
    path, manifest = commit_checkpoint(
        job_dir,
        staging,
        seq=c.seq,
        uid=owner,
        gid=os.getegid(),
        criu_version="4.2.1",
        kernel="6.1",
        dump_seconds=0.2,
        freeze_seconds=0.1,
    )
    result = DumpResult(
        str(path),
        manifest.total_size,
        len(manifest.files),
        0.2,
        0.1,
        "4.2.1",
        f"xxh3_128:{hash_file(path / MANIFEST_NAME)}",
    )
    catalog.mark_valid(c.id, result, NOW)


def test_verify_checks_structure_and_data(
    env: dict[str, str], catalog: Catalog, tmp_path: Path
) -> None:
    (tmp_path / "store").mkdir()
    verifiable_job(catalog, tmp_path / "store")
    doc = valid_json(run(env, "verify", "4242009", "--read-data", "--json"), "verify")
    assert doc["ok"] is True and doc["checkpoints"][0]["total_bytes"] == 300_000  # type: ignore[index]
    image = JobDir(tmp_path / "store", ALICE.name, 4242009).checkpoint(1) / "pages-1.img"
    image.write_bytes(b"y" * 300_000)  # same size: only a re-hash sees it
    assert run(env, "verify", "4242009").exit_code == 0
    result = run(env, "verify", "4242009", "--read-data")
    assert result.exit_code == 9, result.output
    assert "corrupt" in result.stdout and "checksum mismatch" in result.stdout
    assert result.stderr.strip() == (
        "ckpt-admin: 1 of 1 checkpoint(s) of job 4242009 failed verification"
    )
