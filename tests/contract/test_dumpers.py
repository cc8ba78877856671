"""The dump backend contract (slurm_ckpt/dump/base.py), for every backend: CRIU,
unprivileged, as the test user, and the fake the launcher's unit tests run on.

Each test runs a scenario of dump_scenarios.py in a process of its own (as the
test user for CRIU) on a real small process tree, and judges what it saw. The
fake saves no memory, so only a real backend brings the tree back to life; that
part (the restored tree carries on counting) is in
tests/integration/test_criu_smoke.py.
"""

from __future__ import annotations

import pwd
from dataclasses import dataclass
from pathlib import Path

import pytest

from slurm_ckpt.dump import registry

from .dump_scenarios import COUNT, Result, run

DUMPERS = [
    pytest.param("criu", marks=pytest.mark.integration, id="criu"),
    pytest.param("fake", marks=pytest.mark.local, id="fake"),
]


@dataclass(frozen=True)
class Backend:
    name: str
    work: Path  # the scenario's folder, the user's
    user: str | None = None  # who runs the scenario; None: whoever runs the tests
    binary: Path | None = None

    def scenario(self, name: str) -> Result:
        return run(self.name, name, self.work, user=self.user, binary=self.binary)


@pytest.fixture(params=DUMPERS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "fake":
        return Backend("fake", tmp_path)
    user: pwd.struct_passwd = request.getfixturevalue("test_user")
    work: Path = request.getfixturevalue("user_dir")
    binary: Path = request.getfixturevalue("criu_unpriv")
    return Backend("criu", work, user.pw_name, binary)


@pytest.mark.unit
def test_every_registered_backend_is_in_the_contract() -> None:
    assert set(registry.BACKENDS) <= {p.values[0] for p in DUMPERS}


def test_capabilities_say_what_the_backend_can_do_here(backend: Backend) -> None:
    caps = backend.scenario("capabilities")
    assert caps["available"] is True
    assert caps["version"]
    assert caps["incremental"] or caps["reason"]


def test_a_dump_saves_the_running_tree_and_the_tree_runs_on(backend: Backend) -> None:
    seen = backend.scenario("roundtrip")
    root, child = seen["tree"]
    assert 0 <= seen["frozen_seconds"] <= seen["seconds"]
    # The hook ran once, with the whole tree, root first.
    (frozen,) = seen["frozen"]
    assert frozen["pids"][0] == root and set(frozen["pids"]) == {root, child}
    assert seen["runs_on"]
    assert seen["image_files"] and seen["image_owners"] == [seen["uid"]]


def test_inspect_names_the_saved_pids_and_credentials(backend: Backend) -> None:
    seen = backend.scenario("roundtrip")
    saved = seen["inspect"]
    assert saved["pids"][0] == seen["tree"][0]
    assert set(seen["tree"]) <= set(saved["pids"])
    assert saved["uids"] == [seen["uid"]]
    assert saved["gids"] == [seen["gid"]]


def test_restore_brings_the_saved_root_back_with_its_pid(backend: Backend) -> None:
    seen = backend.scenario("roundtrip")
    assert seen["restored_pid"] == seen["tree"][0]
    assert seen["restore_seconds"] >= 0
    # The tree was killed before it was done: the restore had something to bring back.
    assert seen["killed_at"] < COUNT


def test_inspect_and_restore_refuse_a_folder_without_images(backend: Backend) -> None:
    seen = backend.scenario("no_images")
    for case in ("inspect missing", "restore missing", "inspect empty", "restore empty"):
        assert seen[case]["error"] == "RestoreFailed", case
        assert seen[case]["reason"], case


def test_corrupt_images_are_refused_and_nothing_is_left_running(backend: Backend) -> None:
    seen = backend.scenario("corrupt_images")
    assert seen["inspect"]["error"] == "RestoreFailed" and seen["inspect"]["reason"]
    assert seen["restore"]["error"] == "RestoreFailed" and seen["restore"]["reason"]
    assert seen["left_running"] == []


def test_a_dump_that_cannot_save_fails_with_its_reason_and_the_tree_runs_on(
    backend: Backend,
) -> None:
    seen = backend.scenario("dump_failures")
    assert seen["missing"]["error"] == "DumpFailed" and seen["missing"]["reason"]
    assert seen["failed hook"]["error"] == "DumpFailed"
    assert "the hook broke" in seen["failed hook"]["reason"]
    assert seen["runs_on"]
