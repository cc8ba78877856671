"""CRIU, built by the set-up, dumps and restores an ordinary user's process in
unprivileged mode through pycriu, and the process carries on where it was; so does
a process tree through the product's backend (slurm_ckpt/dump/criu.py)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sys
from pathlib import Path

from slurm_ckpt import proc
from tests.contract.dump_scenarios import COUNT, run

HERE = Path(__file__).parent


def test_unprivileged_dump_and_restore_continues_the_counter(
    test_user: pwd.struct_passwd, user_dir: Path, criu_unpriv: Path
) -> None:
    script = user_dir / "roundtrip.py"
    shutil.copy(HERE / "criu_roundtrip_as_user.py", script)
    os.chmod(script, 0o644)

    done = proc.run(
        [
            "runuser",
            "-u",
            test_user.pw_name,
            "--",
            sys.executable,
            str(script),
            str(user_dir),
            str(criu_unpriv),
        ],
        timeout=120,
        check=False,
    )
    logs = (
        "".join(
            f"\n--- {p.name}\n{p.read_text()[-2000:]}" for p in (user_dir / "images").glob("*.log")
        )
        if (user_dir / "images").exists()
        else ""
    )
    assert done.returncode == 0, f"round trip failed: {done.stderr[-3000:]}{logs}"
    result = json.loads(done.stdout)

    assert result["uid"] == test_user.pw_uid
    assert result["restored_pid"] == result["original_pid"]
    assert 10 <= result["lines_at_dump"] < 60
    # Nothing lost, nothing repeated: the restored process went on from where it was.
    assert result["lines"] == list(range(1, 61))
    assert result["exit_status"] == 0
    # Image files belong to the user, not to root.
    images = list((user_dir / "images").glob("*.img"))
    assert images and all(p.stat().st_uid == test_user.pw_uid for p in images)


def test_the_criu_backend_restores_the_tree_to_go_on_from_its_dump(
    test_user: pwd.struct_passwd, user_dir: Path, criu_unpriv: Path
) -> None:
    # The dump contract's round trip (tests/contract/test_dumpers.py), through the
    # product's backend: what only a backend that saves memory can show.
    seen = run("criu", "roundtrip", user_dir, user=test_user.pw_name, binary=criu_unpriv)
    (frozen,) = seen["frozen"]
    at_dump, killed_at = frozen["lines"], seen["killed_at"]
    assert 10 <= at_dump < killed_at < COUNT
    assert seen["exit_code"] == 0
    # Counted to the kill, then again from the line after the dump to the end: the
    # restored root is the same process, frozen where the dump saw it.
    assert seen["lines"] == [*range(1, killed_at + 1), *range(at_dump + 1, COUNT + 1)]
