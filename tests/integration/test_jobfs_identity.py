"""store.jobfs as root between real users: each operation has exactly the job owner's rights.

A store like the cluster's: root-owned root, one 0700 folder per job owned by
its user. The attacker is ckpt-bob, planting links in his own folder; the
victim is ckpt-alice. Also run from a process without root's DAC capabilities
(what a root-squashed NFS or Lustre store leaves root): the operations still
work, because they never relied on root's rights.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from slurm_ckpt.errors import StoreError
from slurm_ckpt.store import untrusted
from slurm_ckpt.store.identity import owner_of, run_as
from slurm_ckpt.store.jobfs import JobFiles, JobRef

from .conftest import TEST_USERS

DROPPED = "cap_dac_override,cap_dac_read_search,cap_fowner"


@pytest.fixture
def store(root: None) -> Iterator[Path]:
    base = Path("/tmp/slurm-ckpt-tests")
    base.mkdir(mode=0o755, exist_ok=True)
    path = base / f"store-{uuid.uuid4().hex[:8]}"
    path.mkdir(mode=0o755)
    for job_id, user in ((101, TEST_USERS[0]), (102, TEST_USERS[1])):
        entry = pwd.getpwnam(user)
        folder = path / str(job_id)
        for sub in ("", "checkpoints", "staging", "results", "restarts"):
            (folder / sub).mkdir(mode=0o700, exist_ok=True)
            os.chown(folder / sub, entry.pw_uid, entry.pw_gid)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _ref(job_id: int, user: str) -> JobRef:
    return JobRef(job_id, pwd.getpwnam(user).pw_uid)


ALICE = (101, TEST_USERS[0])
BOB = (102, TEST_USERS[1])


def _plant(path: Path, user: str, data: bytes = b"precious") -> None:
    path.write_bytes(data)
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    os.chmod(path, 0o600)


def test_the_owners_identity_cannot_read_another_users_file(store: Path) -> None:
    secret = store / "101" / "results" / "secret"
    _plant(secret, TEST_USERS[0])
    bob = owner_of(pwd.getpwnam(TEST_USERS[1]).pw_uid)
    with pytest.raises(PermissionError):
        run_as(bob, secret.read_bytes, timeout=10, what="read")
    alice = owner_of(pwd.getpwnam(TEST_USERS[0]).pw_uid)
    assert run_as(alice, secret.read_bytes, timeout=10, what="read") == b"precious"


def test_files_the_service_writes_belong_to_the_job_owner(store: Path) -> None:
    JobFiles(store).write_request(_ref(*ALICE), b'{"seq": 1}')
    st = (store / "101" / "request.json").stat()
    assert st.st_uid == pwd.getpwnam(TEST_USERS[0]).pw_uid
    assert st.st_mode & 0o077 == 0


def test_bobs_staging_symlinked_to_alices_folder_deletes_nothing(store: Path) -> None:
    precious = store / "101" / "checkpoints" / "keep"
    _plant(precious, TEST_USERS[0])
    staging = store / "102" / "staging"
    staging.rmdir()
    staging.symlink_to(store / "101" / "checkpoints")
    os.lchown(staging, pwd.getpwnam(TEST_USERS[1]).pw_uid, -1)
    with pytest.raises(StoreError):
        JobFiles(store).clean_staging(_ref(*BOB))
    assert precious.read_bytes() == b"precious"


def test_a_link_inside_bobs_staging_is_removed_not_followed(store: Path) -> None:
    precious = store / "101" / "checkpoints" / "keep"
    _plant(precious, TEST_USERS[0])
    dump = store / "102" / "staging" / "000001.x"
    dump.mkdir()
    os.chown(dump, pwd.getpwnam(TEST_USERS[1]).pw_uid, -1)
    (dump / "pages").symlink_to(store / "101" / "checkpoints")
    assert JobFiles(store).clean_staging(_ref(*BOB)) == ["000001.x"]
    assert precious.read_bytes() == b"precious" and not dump.exists()


def test_bobs_result_linked_to_alices_file_is_refused(store: Path) -> None:
    secret = store / "101" / "results" / "000001.json"
    _plant(secret, TEST_USERS[0], json.dumps({"seq": 1, "ok": True}).encode())
    (store / "102" / "results" / "000001.json").symlink_to(secret)
    with pytest.raises(untrusted.Untrusted, match="symlink"):
        JobFiles(store).read_result(_ref(*BOB), 1)


def test_a_folder_bob_made_for_alices_job_is_refused(store: Path) -> None:
    forged = store / "103"
    forged.mkdir(mode=0o700)
    os.chown(forged, pwd.getpwnam(TEST_USERS[1]).pw_uid, -1)
    with pytest.raises(StoreError):
        JobFiles(store).write_request(JobRef(103, pwd.getpwnam(TEST_USERS[0]).pw_uid), b"{}")
    assert list(forged.iterdir()) == []


_SCRIPT = """
import json, sys
from pathlib import Path
from slurm_ckpt.store import identity
from slurm_ckpt.store.jobfs import JobFiles, JobRef
if sys.argv[3] == "no-identity":
    identity._take = lambda owner: None
files = JobFiles(Path(sys.argv[1]))
ref = JobRef(101, int(sys.argv[2]))
files.write_request(ref, b'{"seq": 1}')
print(json.dumps(files.read_result(ref, 1)))
"""


@pytest.mark.parametrize("mode", ["identity", "no-identity"])
def test_without_roots_dac_capabilities_only_the_owners_identity_works(
    store: Path, mode: str
) -> None:
    _plant(
        store / "101" / "results" / "000001.json",
        TEST_USERS[0],
        json.dumps({"seq": 1, "ok": True}).encode(),
    )
    uid = str(pwd.getpwnam(TEST_USERS[0]).pw_uid)
    done = subprocess.run(
        ["capsh", f"--drop={DROPPED}", "--", "-c", 'exec "$@"', "py", sys.executable, "-c"]
        + [_SCRIPT, str(store), uid, mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if mode == "identity":
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"seq": 1, "ok": True}
    else:
        # Root without those capabilities is a stranger in a user's 0700 folder:
        # proof that the first case works by the owner's identity alone.
        assert done.returncode != 0 and "Permission denied" in done.stderr
