"""The service's API without a socket or munged: `Api.handle` turns a credential into
a reply, with a stand-in for unmunge that trusts the uid written in the body; and
ckpt-admin's client wired straight to it, so every command's output through the
API is compared with root's on the catalog."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from slurm_ckpt.cli import context, remote
from slurm_ckpt.config import Settings, load_settings
from slurm_ckpt.db.catalog import Catalog
from slurm_ckpt.db.models import Action
from slurm_ckpt.db.session import open_database
from slurm_ckpt.errors import CatalogUnavailable, CredentialRefused, MungeUnavailable
from slurm_ckpt.munge import Credential
from slurm_ckpt.service import wire
from slurm_ckpt.service.api import Api, Reply
from slurm_ckpt.service.authz import ROOT, Caller
from slurm_ckpt.service.ops import JobListing, Operations

from .test_cli_jobs import ALICE, BOB, NOW, env, run

__all__ = ["env"]  # the fixture, shared with test_cli_jobs

CALLERS = {0: ROOT, ALICE.uid: ALICE, BOB.uid: BOB}


def fake_unmunge(body: bytes) -> Credential:
    """`<uid>\\n<payload>`: what munged would vouch for, minus the cryptography."""
    head, _, payload = body.partition(b"\n")
    if not head.isdigit():
        raise CredentialRefused("MUNGE credential refused: not a valid credential", status=8)
    return Credential(int(head), int(head), payload)


def signer(caller: Caller) -> Callable[[bytes], bytes]:
    return lambda payload: f"{caller.uid}\n".encode() + payload


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return load_settings(Path(env["SLURM_CKPT_CONFIG"]), env={})


@pytest.fixture
def catalog(env: dict[str, str]) -> Iterator[Catalog]:
    db = open_database(env["SLURM_CKPT_CATALOG_URL"])
    yield Catalog(db)
    db.dispose()


@pytest.fixture
def api(catalog: Catalog, settings: Settings) -> Api:
    return Api(
        catalog,
        settings,
        clock=lambda: NOW,
        verify=fake_unmunge,
        lookup=lambda uid, _: CALLERS[uid],
    )


def ask(api: Api, caller: Caller, op: str, **args: Any) -> Reply:
    return api.handle(signer(caller)(json.dumps({"op": op, "args": args}).encode()))


def recorded(catalog: Catalog) -> int:
    with catalog.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(Action)) or 0)


def refused(reply: Reply, status: int, kind: str, fragment: str = "") -> None:
    assert reply.status == status, reply
    assert set(reply.body) == {"error"} and reply.body["error"]["kind"] == kind, reply
    assert fragment in reply.body["error"]["message"]


LIST = {"cluster": "test", "user": None, "states": [], "node": None, "all": True}


def test_a_user_sees_only_their_own_jobs(api: Api) -> None:
    reply = ask(api, ALICE, "list-jobs", **LIST)
    assert reply.status == 200
    rows = wire.load(list[JobListing], reply.body["result"])
    assert {row.summary.job.uid for row in rows} == {ALICE.uid}
    refused(ask(api, ALICE, "list-jobs", **{**LIST, "user": "ckpt-bob"}), 403, "not_allowed")
    refused(ask(api, ALICE, "show", cluster="test", job_id=4242002, events=5), 403, "not_allowed")


def test_users_may_not_requeue_drain_gc_or_checkpoint_anothers_job(
    api: Api, catalog: Catalog
) -> None:
    before = recorded(catalog)
    for op, args in [
        ("requeue", {"job_id": 4242001, "checkpoint_first": True}),
        ("drain", {"node": "node1", "reason": None}),
        ("gc", {}),
        ("checkpoint", {"job_id": 4242002}),
    ]:
        refused(ask(api, ALICE, op, cluster="test", **args), 403, "not_allowed")
    assert recorded(catalog) == before


def test_an_action_is_recorded_with_the_verified_name(api: Api, catalog: Catalog) -> None:
    reply = ask(api, ALICE, "checkpoint", cluster="test", job_id=4242001)
    assert reply.status == 200, reply
    assert reply.body["result"]["requested_by"] == "ckpt-alice"
    action_id = reply.body["result"]["id"]
    assert catalog.get_action(action_id).requested_by == "ckpt-alice"
    assert ask(api, ALICE, "action", action_id=action_id).status == 200
    refused(ask(api, BOB, "action", action_id=action_id), 403, "not_allowed", "another user")
    # Who asked is never an argument.
    injected = ask(api, ALICE, "checkpoint", cluster="test", job_id=4242001, requested_by="root")
    refused(injected, 400, "bad_request", "unknown arguments 'requested_by'")
    assert recorded(catalog) == 1


def test_refused_credentials_and_malformed_requests_get_one_line_errors(api: Api) -> None:
    refused(api.handle(b"garbage"), 401, "unauthenticated", "not a valid credential")
    for payload, why in [
        (b"not json", "not JSON"),
        (b"[" * 60_000, "not JSON"),
        (b'["list-jobs"]', '{"op"'),
        (b'{"op": "list-jobs", "args": [], "x": 1}', '{"op"'),
        (b'{"op": "rm -rf", "args": {}}', "NAME one of list-jobs"),
        (b'{"op": "show", "args": {"cluster": "test", "job_id": -1, "events": 1}}', "job_id"),
        (b'{"op": "show", "args": {"cluster": "a b", "job_id": 1, "events": 1}}', "cluster"),
        (b'{"op": "drain", "args": {"cluster": "t", "node": "-x", "reason": null}}', "node"),
    ]:
        refused(api.handle(b"2901\n" + payload), 400, "bad_request", why)


def test_a_failing_operation_is_answered_and_the_next_request_served(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Operations, **kwargs: object) -> None:
        raise RuntimeError("boom")

    with monkeypatch.context() as m:
        m.setattr(Operations, "list_jobs", broken)
        refused(ask(api, ALICE, "list-jobs", **LIST), 500, "error", "see its log")
    assert ask(api, ALICE, "list-jobs", **LIST).status == 200


def test_an_unavailable_catalog_or_munged_is_503(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(self: Operations, **kwargs: object) -> None:
        raise CatalogUnavailable("catalog sqlite:///x unavailable: disk I/O error")

    with monkeypatch.context() as m:
        m.setattr(Operations, "list_jobs", down)
        refused(ask(api, ALICE, "list-jobs", **LIST), 503, "catalog_unavailable", "disk I/O")

    def no_munged(body: bytes) -> Credential:
        raise MungeUnavailable("cannot check a MUNGE credential: Failed to connect")

    api.verify = no_munged
    refused(ask(api, ALICE, "list-jobs", **LIST), 503, "service_unavailable", "MUNGE")


# The client, wired to the Api in process


@pytest.fixture
def through_api(api: Api, monkeypatch: pytest.MonkeyPatch) -> Callable[[Caller], None]:
    def post(url: str, body: bytes, timeout: float) -> tuple[int, bytes]:
        reply = api.handle(body)
        return reply.status, json.dumps(reply.body).encode()

    monkeypatch.setattr(remote, "_post", post)

    def as_caller(caller: Caller) -> None:
        backend = remote.RemoteBackend("http://127.0.0.1:1", sign=signer(caller))
        monkeypatch.setattr(context, "make_backend", lambda app: backend)

    return as_caller


@pytest.mark.parametrize(
    "args",
    [
        ["list-jobs"],
        ["list-jobs", "--json", "--all"],
        ["list-jobs", "--json", "--state", "requeued", "--node", "node1"],
        ["show", "4242004"],
        ["show", "4242004", "--json", "--events", "1"],
        ["checkpoints", "4242001", "--json"],
        ["gc", "--json"],
        ["action", "1", "--json"],
    ],
)
def test_output_through_the_api_is_the_same_as_roots_on_the_catalog(
    env: dict[str, str], through_api: Callable[[Caller], None], args: list[str]
) -> None:
    first = run(env, "checkpoint", "4242002", "--json")  # action 1, for `action`
    assert first.exit_code == 0, first.output
    local = run(env, *args)
    through_api(ROOT)
    remote_result = run(env, *args)
    assert local.exit_code == remote_result.exit_code == 0, remote_result.output
    assert remote_result.stdout == local.stdout


def test_the_clients_errors_keep_their_exit_codes(
    env: dict[str, str], through_api: Callable[[Caller], None]
) -> None:
    through_api(ALICE)
    for args, code, fragment in [
        (["show", "4242002"], 8, "belongs to another user"),
        (["requeue", "4242001"], 8, "needs root or membership"),
        (["show", "999"], 3, "job 999 is not tracked on cluster test"),
        (["checkpoint", "4242003"], 4, "is PENDING"),
        (["action", "77"], 3, "action 77 is not in the catalog"),
    ]:
        result = run(env, *args)
        assert result.exit_code == code, (args, result.output)
        assert result.stderr.splitlines() == [result.stderr.strip()]
        assert fragment in result.stderr and result.stderr.startswith("ckpt-admin: ")


def test_no_api_configured_is_exit_5_with_what_to_set(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(context, "make_backend", lambda app: remote.RemoteBackend(None))
    result = run(env, "list-jobs")
    assert result.exit_code == 5 and "[api] url" in result.stderr, result.output


def test_replies_are_rebuilt_exactly_or_refused_as_malformed(api: Api) -> None:
    body = ask(api, ROOT, "list-jobs", **LIST).body["result"]
    rows = wire.load(list[JobListing], body)
    assert wire.dump(rows) == body and len(rows) == 5
    job = body[0]["summary"]["job"]
    for field, bad in [
        ("uid", "2901"),
        ("state", "SLEEPING"),
        ("created_at", "noon"),
        ("id", True),
    ]:
        broken = [{**body[0], "summary": {**body[0]["summary"], "job": {**job, field: bad}}}]
        with pytest.raises(wire.WireError, match=f"reply: summary: job: {field}: "):
            wire.load(list[JobListing], broken)
    with pytest.raises(wire.WireError, match="fields"):
        wire.load(list[JobListing], [{"summary": body[0]["summary"]}])


def test_a_reply_one_release_apart_still_loads(api: Api) -> None:
    body = ask(api, ROOT, "list-jobs", **LIST).body["result"]
    job = body[0]["summary"]["job"]
    # From a service before jobs.chained_runs, and from one with a field not known here.
    older = {k: v for k, v in job.items() if k != "chained_runs"}
    newer = {**job, "a_later_field": [1, 2]}
    for sent in (older, newer):
        row = [{**body[0], "summary": {**body[0]["summary"], "job": sent}}]
        (listing,) = wire.load(list[JobListing], row)
        assert listing.summary.job.chained_runs == job["chained_runs"]
