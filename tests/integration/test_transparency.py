"""Process trees plain CRIU can save are saved and restored through a node failure,
with output byte for byte that of an uninterrupted run of the same program:
a zombie in the tree at every checkpoint, POSIX and flock locks held throughout,
data files of 16 and 256 MiB updated in place, an SQLite database in WAL mode."""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from slurm_ckpt.db.catalog import Catalog

from .launcher_helpers import count_lines, wait_until
from .service_helpers import NODES, restored, tracked, valid_count
from .slurm_helpers import SlurmTestClient

STEPS = 60

# A child that exits at once and is never reaped: a zombie in every checkpoint.
# At the end the program reaps it and prints its exit status, which the restore
# must have kept.
ZOMBIE = """\
import os, sys, time
child = os.fork()
if child == 0:
    os._exit(7)
with open("counter.txt", "a") as out:
    for i in range(1, STEPS + 1):
        line = f"line {i}\\n"
        sys.stdout.write(line)
        sys.stdout.flush()
        out.write(line)
        out.flush()
        time.sleep(0.5)
pid, status = os.waitpid(child, 0)
print("zombie", pid == child, os.waitstatus_to_exitcode(status))
"""

# Locks on the data file: a POSIX lock (lockf) and a flock, held the whole run.
# Each step a child opens the file on its own and tries both: refused while the
# program holds them, so a lock the restore lost changes the output.
LOCKS = """\
import fcntl, os, sys, time
data = open("state.dat", "a+")
fcntl.lockf(data, fcntl.LOCK_EX | fcntl.LOCK_NB)
meta = open("state.lock", "a+")
fcntl.flock(meta, fcntl.LOCK_EX | fcntl.LOCK_NB)

def held(path, take):
    child = os.fork()
    if child == 0:
        with open(path, "a+") as f:
            try:
                take(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os._exit(0)
        os._exit(1)
    return os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 0

with open("counter.txt", "a") as out:
    for i in range(1, STEPS + 1):
        posix, whole = held("state.dat", fcntl.lockf), held("state.lock", fcntl.flock)
        line = f"line {i} posix={posix} flock={whole}\\n"
        sys.stdout.write(line)
        sys.stdout.flush()
        out.write(line)
        out.flush()
        data.write(f"{i}\\n")
        data.flush()
        time.sleep(0.5)
"""

# A data file updated in place at offsets (as HDF5 datasets, memmaps and databases
# are): each step reads a block, prints its checksum, and rewrites it changed, so a
# file that is not exactly as it was at the checkpoint changes every later line.
IN_PLACE = """\
import hashlib, os, sys, time
MIB = 1 << 20
size = SIZE_MIB * MIB
fd = os.open("state.dat", os.O_RDWR | os.O_CREAT, 0o600)
pattern = bytes(range(256)) * (MIB // 256)
for offset in range(0, size, MIB):
    os.pwrite(fd, pattern, offset)
with open("counter.txt", "a") as out:
    for i in range(1, STEPS + 1):
        offset = (i * 7919 % (size // 4096)) * 4096
        block = os.pread(fd, 4096, offset)
        line = f"line {i} {hashlib.sha256(block).hexdigest()[:16]}\\n"
        os.pwrite(fd, hashlib.sha256(block + bytes([i])).digest() * 128, offset)
        sys.stdout.write(line)
        sys.stdout.flush()
        out.write(line)
        out.flush()
        time.sleep(0.5)
os.lseek(fd, 0, 0)
whole = hashlib.sha256()
while chunk := os.read(fd, MIB):
    whole.update(chunk)
print("data", whole.hexdigest())
"""

# SQLite in WAL mode, written every step: POSIX locks on the database, the -wal
# file written in place, the -shm file mapped shared.
SQLITE = """\
import sqlite3, sys, time
db = sqlite3.connect("state.db", isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("CREATE TABLE IF NOT EXISTS steps (i INTEGER PRIMARY KEY, total INTEGER)")
with open("counter.txt", "a") as out:
    for i in range(1, STEPS + 1):
        previous = db.execute("SELECT coalesce(max(total), 0) FROM steps").fetchone()[0]
        db.execute("BEGIN")
        db.execute("INSERT INTO steps VALUES (?, ?)", (i, previous + i))
        db.execute("COMMIT")
        rows = db.execute("SELECT count(*), sum(total) FROM steps").fetchone()
        line = f"line {i} rows={rows[0]} sum={rows[1]}\\n"
        sys.stdout.write(line)
        sys.stdout.flush()
        out.write(line)
        out.flush()
        time.sleep(0.5)
print("integrity", db.execute("PRAGMA integrity_check").fetchone()[0])
"""

PROGRAMS = {
    "zombie": ZOMBIE,
    "locks": LOCKS,
    "in-place-16MiB": IN_PLACE.replace("SIZE_MIB", "16"),
    "in-place-256MiB": IN_PLACE.replace("SIZE_MIB", "256"),
    "sqlite-wal": SQLITE,
}
OUTPUTS = ("job.out", "counter.txt", "state.dat", "state.db")


def script(program: Path) -> str:
    # exec: the program replaces the shell, so its own children stay unreaped.
    return f"#!/bin/bash\n#SBATCH --checkpoint=10s\nexec python3 {program}\n"


def place(folder: Path, name: str) -> Path:
    program = folder / f"{name}.py"
    program.write_text(PROGRAMS[name].replace("STEPS", str(STEPS)))
    return program


@pytest.fixture
def reference_dir(test_user: pwd.struct_passwd, user_dir: Path) -> Iterator[Path]:
    path = user_dir / "reference"
    path.mkdir(mode=0o700)
    os.chown(path, test_user.pw_uid, test_user.pw_gid)
    yield path


def start_reference(user: pwd.struct_passwd, folder: Path, body: str) -> subprocess.Popen[bytes]:
    """The same script run as the same user without Slurm or checkpoints."""
    (folder / "job.sh").write_text(body)
    with open(folder / "job.out", "wb") as out:
        return subprocess.Popen(
            ["runuser", "-u", user.pw_name, "--", "bash", "job.sh"],
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_a_node_failure_is_survived_with_the_output_of_an_uninterrupted_run(
    name: str,
    cluster: SlurmTestClient,
    service_catalog: Catalog,
    test_user: pwd.struct_passwd,
    user_dir: Path,
    reference_dir: Path,
) -> None:
    body = script(place(user_dir, name))
    reference = start_reference(test_user, reference_dir, body)
    job = cluster.submit(body, user=test_user.pw_name, cwd=user_dir, args=["--output=job.out"])
    first = cluster.wait_for(job, {"RUNNING"}, timeout=60)
    dead = first["NodeList"]
    (other,) = NODES - {dead}
    record = tracked(service_catalog, job)
    try:
        wait_until(lambda: valid_count(service_catalog, record) >= 1, 60, "a VALID checkpoint")
        wait_until(lambda: count_lines(user_dir / "counter.txt") >= 25, 60, "progress")
        cluster.kill_node(dead)
        final = cluster.wait_for(job, {"COMPLETED", "FAILED"}, timeout=180)
    finally:
        cluster.cancel(job)
        cluster.start_node(dead)
        reference.wait(timeout=120)
    assert final["JobState"] == "COMPLETED" and final["ExitCode"] == "0:0", final
    assert final["Restarts"] == "1" and final["NodeList"] == other, final
    restored(service_catalog, record.id)
    assert reference.returncode == 0
    for output in OUTPUTS:
        want = reference_dir / output
        if want.exists():
            assert (user_dir / output).read_bytes() == want.read_bytes(), output
    assert count_lines(reference_dir / "counter.txt") == STEPS
