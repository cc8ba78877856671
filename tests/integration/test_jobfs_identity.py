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
SUBFOLDERS = ("checkpoints", "staging", "results", "restarts")


@pytest.fixture
def store(root: None) -> Iterator[Path]:
    base = Path("/tmp/slurm-ckpt-tests")
    base.mkdir(mode=0o755, exist_ok=True)
    path = base / f"store-{uuid.uuid4().hex[:8]}"
    path.mkdir(mode=0o755)
    for job_id, user in ((101, TEST_USERS[0]), (102, TEST_USERS[1])):
        entry = pwd.getpwnam(user)
        for folder in (
            path / user,
            *(path / user / str(job_id) / sub for sub in ("", *SUBFOLDERS)),
        ):
            folder.mkdir(mode=0o700)
            os.chown(folder, entry.pw_uid, entry.pw_gid)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _ref(job_id: int, user: str) -> JobRef:
    return JobRef(user, job_id, pwd.getpwnam(user).pw_uid)


ALICE = (101, TEST_USERS[0])
BOB = (102, TEST_USERS[1])
A = f"{TEST_USERS[0]}/101"  # job folders, below the store root
B = f"{TEST_USERS[1]}/102"


def _plant(path: Path, user: str, data: bytes = b"precious") -> None:
    path.write_bytes(data)
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    os.chmod(path, 0o600)


def test_the_owners_identity_cannot_read_another_users_file(store: Path) -> None:
    secret = store / A / "results" / "secret"
    _plant(secret, TEST_USERS[0])
    bob = owner_of(pwd.getpwnam(TEST_USERS[1]).pw_uid)
    with pytest.raises(PermissionError):
        run_as(bob, secret.read_bytes, timeout=10, what="read")
    alice = owner_of(pwd.getpwnam(TEST_USERS[0]).pw_uid)
    assert run_as(alice, secret.read_bytes, timeout=10, what="read") == b"precious"


def test_files_the_service_writes_belong_to_the_job_owner(store: Path) -> None:
    JobFiles(store).write_request(_ref(*ALICE), b'{"seq": 1}')
    st = (store / A / "request.json").stat()
    assert st.st_uid == pwd.getpwnam(TEST_USERS[0]).pw_uid
    assert st.st_mode & 0o077 == 0


def test_bobs_staging_symlinked_to_alices_folder_deletes_nothing(store: Path) -> None:
    precious = store / A / "checkpoints" / "keep"
    _plant(precious, TEST_USERS[0])
    staging = store / B / "staging"
    staging.rmdir()
    staging.symlink_to(store / A / "checkpoints")
    os.lchown(staging, pwd.getpwnam(TEST_USERS[1]).pw_uid, -1)
    with pytest.raises(StoreError):
        JobFiles(store).clean_staging(_ref(*BOB))
    assert precious.read_bytes() == b"precious"


def test_a_link_inside_bobs_staging_is_removed_not_followed(store: Path) -> None:
    precious = store / A / "checkpoints" / "keep"
    _plant(precious, TEST_USERS[0])
    dump = store / B / "staging" / "000001.x"
    dump.mkdir()
    os.chown(dump, pwd.getpwnam(TEST_USERS[1]).pw_uid, -1)
    (dump / "pages").symlink_to(store / A / "checkpoints")
    assert JobFiles(store).clean_staging(_ref(*BOB)) == ["000001.x"]
    assert precious.read_bytes() == b"precious" and not dump.exists()


def test_bobs_result_linked_to_alices_file_is_refused(store: Path) -> None:
    secret = store / A / "results" / "000001.json"
    _plant(secret, TEST_USERS[0], json.dumps({"seq": 1, "ok": True}).encode())
    (store / B / "results" / "000001.json").symlink_to(secret)
    with pytest.raises(untrusted.Untrusted, match="symlink"):
        JobFiles(store).read_result(_ref(*BOB), 1)


def test_bob_cannot_make_a_folder_for_alices_job(store: Path) -> None:
    # The store root is root's; alice's level is hers: bob has nowhere to plant one.
    bob = owner_of(pwd.getpwnam(TEST_USERS[1]).pw_uid)
    for where in (store / TEST_USERS[0] / "103", store / "103"):
        with pytest.raises(PermissionError):
            run_as(bob, lambda w=where: w.mkdir(), timeout=10, what="mkdir")


def test_a_user_folder_of_another_uid_is_refused(store: Path) -> None:
    # As if bob's folder had been made for alice's name: nothing is written into it.
    (store / TEST_USERS[0]).rename(store / "spare")
    (store / B).parent.rename(store / TEST_USERS[0])
    with pytest.raises(StoreError):
        JobFiles(store).write_request(_ref(102, TEST_USERS[0]), b"{}")
    assert not (store / TEST_USERS[0] / "102" / "request.json").exists()


_SCRIPT = """
import json, sys
from pathlib import Path
from slurm_ckpt.store import identity
from slurm_ckpt.store.jobfs import JobFiles, JobRef
if sys.argv[3] == "no-identity":
    identity._take = lambda owner: None
files = JobFiles(Path(sys.argv[1]))
ref = JobRef(sys.argv[4], 101, int(sys.argv[2]))
files.write_request(ref, b'{"seq": 1}')
print(json.dumps(files.read_result(ref, 1)))
"""


@pytest.mark.parametrize("mode", ["identity", "no-identity"])
def test_without_roots_dac_capabilities_only_the_owners_identity_works(
    store: Path, mode: str
) -> None:
    _plant(
        store / A / "results" / "000001.json",
        TEST_USERS[0],
        json.dumps({"seq": 1, "ok": True}).encode(),
    )
    uid = str(pwd.getpwnam(TEST_USERS[0]).pw_uid)
    done = subprocess.run(
        ["capsh", f"--drop={DROPPED}", "--", "-c", 'exec "$@"', "py", sys.executable, "-c"]
        + [_SCRIPT, str(store), uid, mode, TEST_USERS[0]],
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


def test_the_service_makes_a_users_folder_without_roots_dac_capabilities(store: Path) -> None:
    script = (
        "import sys; from pathlib import Path;"
        "from slurm_ckpt.store.folders import ensure_user_dir;"
        "root, uid, gid = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]);"
        "ensure_user_dir(root, 'ckpt-new', uid, gid); ensure_user_dir(root, 'ckpt-new', uid, gid)"
    )
    entry = pwd.getpwnam(TEST_USERS[0])
    done = subprocess.run(
        ["capsh", f"--drop={DROPPED}", "--", "-c", 'exec "$@"', "py", sys.executable, "-c"]
        + [script, str(store), str(entry.pw_uid), str(entry.pw_gid)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    st = (store / "ckpt-new").stat()
    assert (st.st_uid, st.st_mode & 0o777) == (entry.pw_uid, 0o700)
