"""Admin actions in the catalog, on SQLite and on PostgreSQL (see catalog_fixtures)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, timedelta

import pytest
from sqlalchemy import delete, select

from slurm_ckpt.db.catalog import ActionRecord, Catalog
from slurm_ckpt.db.models import Action
from slurm_ckpt.db.session import Database
from slurm_ckpt.db.states import ActionKind, ActionState
from slurm_ckpt.errors import CatalogConflict, CatalogError, CatalogNotFound, IllegalTransition

from .catalog_fixtures import (  # noqa: F401 (fixtures: pytest finds them by name)
    NOW,
    catalog_fixture,
    catalog_url_fixture,
    database_fixture,
    open_instance_fixture,
    postgres_catalog_url_fixture,
    postgres_server_fixture,
)

K = ActionKind
A = ActionState


@pytest.fixture(autouse=True)
def no_actions(database: Database) -> None:
    # The PostgreSQL catalog is shared by the session and its fixture empties only
    # the older tables.
    with database.session(write=True) as session:
        session.execute(delete(Action))


def checkpoint_request(catalog: Catalog, job: int = 1001, **fields: object) -> ActionRecord:
    values: dict[str, object] = {"cluster": "test", "requested_by": "root", "now": NOW}
    values.update(fields)
    return catalog.submit_action(K.CHECKPOINT, slurm_job_id=job, **values)  # type: ignore[arg-type]


def test_submit_and_get_an_action(catalog: Catalog) -> None:
    action = catalog.submit_action(
        K.REQUEUE,
        cluster="test",
        requested_by="alice",
        now=NOW,
        slurm_job_id=4242,
        options={"checkpoint_first": True},
    )
    assert action.id > 0
    assert catalog.get_action(action.id) == action
    assert (action.kind, action.state, action.slurm_job_id, action.node) == (
        K.REQUEUE,
        A.PENDING,
        4242,
        None,
    )
    assert action.options == {"checkpoint_first": True}
    assert (action.detail, action.progress, action.requested_by) == ("", "", "alice")
    assert action.created_at == action.updated_at == NOW
    assert action.created_at.tzinfo is UTC


def test_drain_and_gc_store_their_options(catalog: Catalog) -> None:
    drain = catalog.submit_action(
        K.DRAIN, cluster="test", requested_by="root", now=NOW, node="node1",
        options={"reason": "disk \"sdb\" failing, ünïcode"},
    )  # fmt: skip
    gc = catalog.submit_action(K.GC, cluster="test", requested_by="root", now=NOW)
    assert catalog.get_action(drain.id).options == {"reason": 'disk "sdb" failing, ünïcode'}
    assert (drain.node, drain.slurm_job_id) == ("node1", None)
    assert catalog.get_action(gc.id).options == {}


def test_an_unknown_action_is_not_found(catalog: Catalog) -> None:
    with pytest.raises(CatalogNotFound, match="action 999"):
        catalog.get_action(999)
    with pytest.raises(CatalogNotFound, match="action 999"):
        catalog.update_action(999, NOW, progress="x")


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        (K.CHECKPOINT, {}),
        (K.REQUEUE, {"node": "node1"}),
        (K.DRAIN, {"slurm_job_id": 5}),
        (K.CHECKPOINT, {"slurm_job_id": 0}),
    ],
)
def test_an_action_without_its_target_is_refused(
    catalog: Catalog, database: Database, kind: ActionKind, fields: dict[str, object]
) -> None:
    with pytest.raises(CatalogConflict, match="constraint"):
        catalog.submit_action(kind, cluster="test", requested_by="root", now=NOW, **fields)  # type: ignore[arg-type]
    with database.session() as session:
        assert session.scalars(select(Action)).all() == []


def test_options_must_be_json(catalog: Catalog) -> None:
    with pytest.raises(CatalogError, match="not JSON serializable"):
        catalog.submit_action(
            K.GC, cluster="test", requested_by="root", now=NOW, options={"when": NOW}
        )


def test_claim_takes_the_oldest_pending_of_its_cluster_once(catalog: Catalog) -> None:
    first, second, third = (checkpoint_request(catalog, job) for job in (1, 2, 3))
    checkpoint_request(catalog, 4, cluster="other")
    later = NOW + timedelta(seconds=1)

    claimed = catalog.claim_actions("test", later, limit=2)

    assert [a.id for a in claimed] == [first.id, second.id]
    assert all(a.state == A.RUNNING and a.updated_at == later for a in claimed)
    assert catalog.get_action(third.id).state == A.PENDING
    assert [a.id for a in catalog.claim_actions("test", later)] == [third.id]
    assert catalog.claim_actions("test", later) == []
    assert [a.id for a in catalog.running_actions("test")] == [first.id, second.id, third.id]
    assert catalog.running_actions("nowhere") == []


def test_progress_then_the_end_and_nothing_after_it(catalog: Catalog) -> None:
    action = checkpoint_request(catalog)
    catalog.claim_actions("test", NOW)
    step = NOW + timedelta(seconds=2)

    moving = catalog.update_action(action.id, step, progress="checkpoint 3 in flight")
    assert (moving.state, moving.progress, moving.updated_at) == (
        A.RUNNING,
        "checkpoint 3 in flight",
        step,
    )
    done = catalog.update_action(
        action.id, step, state=A.DONE, detail="checkpoint 3 VALID", progress=""
    )
    assert (done.state, done.detail, done.progress) == (A.DONE, "checkpoint 3 VALID", "")
    assert catalog.running_actions("test") == []

    with pytest.raises(IllegalTransition, match="DONE"):
        catalog.update_action(action.id, step, progress="late news from a stale runner")
    with pytest.raises(IllegalTransition, match="DONE"):
        catalog.update_action(action.id, step, state=A.FAILED, detail="no")
    assert catalog.get_action(action.id) == done


def test_an_action_ends_only_after_it_was_claimed(catalog: Catalog) -> None:
    action = checkpoint_request(catalog)
    with pytest.raises(IllegalTransition, match="cannot become DONE"):
        catalog.update_action(action.id, NOW, state=A.DONE)
    refused = catalog.update_action(action.id, NOW, state=A.FAILED, detail="refused")
    assert refused.state == A.FAILED
    assert catalog.claim_actions("test", NOW) == []


def test_two_claimers_racing_claim_each_action_exactly_once(
    catalog: Catalog, open_instance: Callable[..., Catalog]
) -> None:
    total = 60
    for job in range(1, total + 1):
        checkpoint_request(catalog, job)
    instances = [open_instance(), open_instance()]
    claimed: list[list[int]] = [[], []]
    errors: list[BaseException] = []
    start = threading.Barrier(len(instances))

    def claimer(index: int) -> None:
        mine = instances[index]
        try:
            start.wait()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                got = mine.claim_actions("test", NOW, limit=4)
                claimed[index].extend(a.id for a in got)
                if not got and len(mine.running_actions("test")) == total:
                    return
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(len(instances))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)

    assert errors == []
    counts = Counter(claimed[0] + claimed[1])
    assert len(counts) == total
    assert set(counts.values()) == {1}, [i for i, n in counts.items() if n > 1]
    assert {a.state for a in (catalog.get_action(i) for i in counts)} == {A.RUNNING}
