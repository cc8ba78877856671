"""Pieces of the security tests (test_security.py): the attacker ckpt-bob acting through
his own job and files, the victim ckpt-alice's checkpointed job and canaries, and the
checks every attack ends with (nothing of others deleted, read or changed, the victim
checkpointed on schedule, the service alive and healthy with the same pid)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import queue
import shutil
import stat
import subprocess
import threading
import time
import unicodedata
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from slurm_ckpt import proc
from slurm_ckpt.db.catalog import Catalog, CheckpointRecord, JobRecord
from slurm_ckpt.db.states import CheckpointState

from .launcher_helpers import wait_until
from .slurm_helpers import SlurmTestClient

PREFIX = Path(os.environ.get("SLURM_CKPT_PREFIX", "/opt/slurm-ckpt"))
ADMIN = PREFIX / "venv/bin/ckpt-admin"
# The installed venv: executable by every user, with xxhash (the attacker's tool uses it).
USER_PYTHON = PREFIX / "venv/bin/python"
SERVICE_PID_FILE = (
    Path(os.environ.get("SLURM_CKPT_CLUSTER_STATE", "/var/lib/slurm-ckpt-cluster"))
    / "slurm-ckptd.pid"
)
HEALTHZ = "http://127.0.0.1:9810/healthz"
CLUSTER = "ckptdev"
ALICE, BOB = "ckpt-alice", "ckpt-bob"
TESTS_BASE = Path("/tmp/slurm-ckpt-tests")
MIB = 1024 * 1024
# Slurm's restart report names and result names, as the launcher writes them.
RESTART_REPORT = "restarts/{:04d}.json"


# -- acting as a user ------------------------------------------------------------------


def as_user(
    user: str, *argv: str, timeout: float = 30, check: bool = True, input: str | None = None
) -> proc.Completed:
    return proc.run(
        ["runuser", "-u", user, "--", *argv], timeout=timeout, check=check, input=input, cwd="/"
    )


def user_folder(user: str) -> Path:
    """A fresh folder owned by `user` (0700) under a base everyone can traverse."""
    TESTS_BASE.mkdir(mode=0o755, exist_ok=True)
    os.chmod(TESTS_BASE, 0o755)
    entry = pwd.getpwnam(user)
    path = TESTS_BASE / f"{user}-sec-{uuid.uuid4().hex[:8]}"
    path.mkdir(mode=0o700)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def remove_folder(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def job_folder(store_root: Path, user: str, job: int) -> Path:
    """A job's store folder: `<root>/<user>/<job>/` (a per-user level, see issue 13) or
    `<root>/<job>/` (the layout of 1d618f2), whichever the launcher made."""
    for candidate in (store_root / user / str(job), store_root / str(job)):
        if candidate.is_dir():
            return candidate
    return store_root / user / str(job) if (store_root / user).is_dir() else store_root / str(job)


# In a job script: the same, in bash ($STORE set before).
JOBDIR_SH = (
    'JOBDIR="$STORE/$(id -un)/$SLURM_JOB_ID"\n[ -d "$JOBDIR" ] || JOBDIR="$STORE/$SLURM_JOB_ID"\n'
)


# -- the attacker's tool -----------------------------------------------------------------

# Run as ckpt-bob with the installed venv's python: stdlib and xxhash only. Each command
# acts on bob's own job folder and prints one word per step, flushed, for the test to follow.
BOB_TOOL = r'''
import ctypes, datetime, json, os, select, shutil, struct, sys, time

IN_CLOSE_NOWRITE = 0x10
IN_MOVED_TO = 0x80
libc = ctypes.CDLL("libc.so.6", use_errno=True)


def say(*words):
    print(*words, flush=True)


def watch(folder, mask):
    fd = libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0 or libc.inotify_add_watch(fd, os.fsencode(folder), mask) < 0:
        raise OSError(ctypes.get_errno(), "inotify")
    return fd


def wait_name(fd, name, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
        if not ready:
            continue
        data = os.read(fd, 65536)
        off = 0
        while off < len(data):
            _, _, _, length = struct.unpack_from("iIII", data, off)
            got = data[off + 16 : off + 16 + length].rstrip(b"\0").decode()
            off += 16 + length
            if got == name:
                return True
    return False


def write_atomic(path, data):
    tmp = path + ".forge-tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


def swap_on_publish(jobdir, target, hold, timeout):
    """Once the service publishes images.json (a checkpoint became VALID, retention is
    next), put a symlink to `target` in place of checkpoints/; put it back after `hold`."""
    ck = os.path.join(jobdir, "checkpoints")
    link = os.path.join(jobdir, ".swap-link")
    real = os.path.join(jobdir, ".swap-real")
    os.symlink(target, link)
    fd = watch(jobdir, IN_MOVED_TO)
    say("armed")
    if not wait_name(fd, "images.json", float(timeout)):
        os.unlink(link)
        say("timeout")
        return 1
    os.rename(ck, real)
    os.rename(link, ck)
    say("swapped")
    time.sleep(float(hold))
    os.unlink(ck)
    os.rename(real, ck)
    say("restored")
    return 0


def swap_on_read(folder, name, replacement, timeout):
    """Once a reader closed folder/name, rename `replacement` over it."""
    fd = watch(folder, IN_CLOSE_NOWRITE)
    say("armed")
    if not wait_name(fd, name, float(timeout)):
        say("timeout")
        return 1
    os.rename(replacement, os.path.join(folder, name))
    say("swapped")
    return 0


def wait_request(jobdir, timeout):
    """The seq of the service's pending request.json (the launcher is stopped)."""
    deadline = time.monotonic() + float(timeout)
    while time.monotonic() < deadline:
        try:
            with open(os.path.join(jobdir, "request.json")) as f:
                seq = json.load(f)["seq"]
        except (OSError, ValueError, KeyError):
            time.sleep(0.1)
            continue
        if not os.path.lexists(os.path.join(jobdir, "results", "%06d.json" % seq)):
            say(seq)
            return 0
        time.sleep(0.1)
    say("timeout")
    return 1


def reserved(jobdir):
    """The seq the service reserved for the launcher's own final checkpoint."""
    with open(os.path.join(jobdir, "final-request.json")) as f:
        say(json.load(f)["seq"])
    return 0


def forge(jobdir, src, dst, criu_version, pad):
    """checkpoints/<dst>: a copy of the real checkpoint <src> with its manifest rewritten
    (seq, optionally criu_version, `pad` extra empty files listed)."""
    import xxhash

    s = os.path.join(jobdir, "checkpoints", "%06d" % int(src))
    d = os.path.join(jobdir, "checkpoints", "%06d" % int(dst))
    os.mkdir(d, 0o700)
    with open(os.path.join(s, "manifest.json"), "rb") as f:
        manifest = json.load(f)
    for entry in manifest["files"]:
        shutil.copyfile(os.path.join(s, entry["name"]), os.path.join(d, entry["name"]))
    empty = xxhash.xxh3_128(b"").hexdigest()
    for i in range(int(pad)):
        name = "pad-%05d.img" % i
        open(os.path.join(d, name), "wb").close()
        manifest["files"].append({"name": name, "size": 0, "checksum": empty})
    manifest["seq"] = int(dst)
    if criu_version != "-":
        manifest["criu_version"] = criu_version
    data = json.dumps(manifest, sort_keys=True, indent=1).encode() + b"\n"
    write_atomic(os.path.join(d, "manifest.json"), data)
    say("forged")
    return 0


def result(jobdir, seq, ok, error_file):
    """results/<seq>.json in the launcher's format, ok or not; the error text from a file."""
    seq = int(seq)
    error = None
    if error_file != "-":
        with open(error_file, encoding="utf-8") as f:
            error = f.read()
    doc = {
        "commit_seconds": 0.01, "criu_log": None, "dump_seconds": 0.03, "error": error,
        "file_count": 21, "freeze_seconds": 0.01, "kind": "periodic", "restart_count": 0,
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "job_id": int(os.path.basename(jobdir)), "ok": ok == "ok", "seq": seq,
        "path": "checkpoints/%06d" % seq if ok == "ok" else None, "total_bytes": 490000,
    }
    os.makedirs(os.path.join(jobdir, "results"), mode=0o700, exist_ok=True)
    write_atomic(os.path.join(jobdir, "results", "%06d.json" % seq), json.dumps(doc).encode())
    say("written")
    return 0


def put(path, source):
    """Copy `source` (a file of bob's) to `path` atomically."""
    with open(source, "rb") as f:
        write_atomic(path, f.read())
    say("put")
    return 0


COMMANDS = {
    "swap-on-publish": swap_on_publish, "swap-on-read": swap_on_read,
    "wait-request": wait_request, "reserved": reserved, "forge": forge, "result": result,
    "put": put,
}
sys.exit(COMMANDS[sys.argv[1]](*sys.argv[2:]))
'''


class Watcher:
    """One of bob's watchers running in the background; its output, line by line."""

    def __init__(self, child: subprocess.Popen[str]) -> None:
        self.child = child
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.child.stdout is not None
        for line in self.child.stdout:
            self.lines.put(line.strip())

    def line(self, timeout: float) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return "(nothing)"

    def stop(self) -> None:
        self.child.kill()
        self.child.wait()


@dataclass
class Attacker:
    """ckpt-bob: his work folder (his jobs run there), his tool, his jobs."""

    cluster: SlurmTestClient
    catalog: Catalog
    store_root: Path
    folder: Path
    jobs: list[int] = field(default_factory=list)
    _jobdirs: dict[int, Path] = field(default_factory=dict)

    @property
    def tool(self) -> Path:
        return self.folder / "bob_tool.py"

    def install(self) -> None:
        self.tool.write_text(BOB_TOOL)
        entry = pwd.getpwnam(BOB)
        os.chown(self.tool, entry.pw_uid, entry.pw_gid)

    def run(self, *argv: str, timeout: float = 30, check: bool = True) -> proc.Completed:
        """A command as bob."""
        return as_user(BOB, *argv, timeout=timeout, check=check)

    def sh(self, script: str, timeout: float = 30) -> proc.Completed:
        return as_user(BOB, "bash", "-ec", script, timeout=timeout)

    def do(self, *args: str, timeout: float = 60) -> str:
        """One command of bob's tool; its output."""
        done = as_user(BOB, str(USER_PYTHON), str(self.tool), *args, timeout=timeout)
        return done.stdout.strip()

    def start(self, *args: str) -> Watcher:
        """A long-running command of bob's tool (a watcher); returns once it is armed."""
        watcher = Watcher(
            subprocess.Popen(
                ["runuser", "-u", BOB, "--", str(USER_PYTHON), str(self.tool), *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                cwd="/",
            )
        )
        line = watcher.line(30)
        assert line == "armed", f"bob's watcher did not start: {line!r}"
        return watcher

    def write_file(self, name: str, data: bytes) -> Path:
        """A file of bob's in his work folder."""
        path = self.folder / name
        path.write_bytes(data)
        entry = pwd.getpwnam(BOB)
        os.chown(path, entry.pw_uid, entry.pw_gid)
        return path

    def submit(self, script: str) -> int:
        job = self.cluster.submit(script, user=BOB, cwd=self.folder, args=["--output=job.out"])
        self.jobs.append(job)
        return job

    def jobdir(self, job: int) -> Path:
        """The job's folder, known for good once the launcher made it."""
        if job not in self._jobdirs:
            path = job_folder(self.store_root, BOB, job)
            if not os.path.lexists(path):
                return path
            self._jobdirs[job] = path
        return self._jobdirs[job]

    def running(self, job: int, timeout: float = 60) -> JobRecord:
        """Wait until Slurm runs the job and the service tracks it as running (it is then
        scheduled) and its launcher made its folder."""
        self.cluster.wait_for(job, {"RUNNING"}, timeout=timeout)
        record = wait_until(
            lambda: (
                (r := self.catalog.find_job(CLUSTER, job)) is not None
                and r.state == "RUNNING"
                and self.jobdir(job).is_dir()
                and r
            ),
            30,
            f"bob's job {job} tracked as running",
        )
        return record

    def launcher_pid(self) -> int:
        pid_file = self.folder / "launcher.pid"
        wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), 30, "launcher.pid")
        return int(pid_file.read_text())

    def stop_launcher(self) -> int:
        pid = self.launcher_pid()
        self.run("kill", "-STOP", str(pid))
        return pid

    def continue_launcher(self) -> None:
        with contextlib.suppress(Exception):
            self.run("kill", "-CONT", str(self.launcher_pid()), check=False, timeout=10)

    def reserved(self, job: int) -> int:
        """The seq the service reserved for the job's next checkpoint without a request."""
        return int(self.do("reserved", str(self.jobdir(job))))

    def wait_request(self, job: int, timeout: float = 40) -> int:
        """With the launcher stopped: the seq the service asks for next."""
        out = self.do("wait-request", str(self.jobdir(job)), str(timeout), timeout=timeout + 10)
        assert out != "timeout", f"no checkpoint request for bob's job {job} in {timeout:.0f}s"
        return int(out)

    def cancel_all(self) -> None:
        self.continue_launcher()
        for job in self.jobs:
            self.cluster.cancel(job)


def bob_script(store_root: Path, *, before_loop: str = "", seconds: int = 600) -> str:
    """bob's checkpointed job: records its launcher's pid ($PPID: the launcher runs the
    script as its child), finds its store folder ($JOBDIR), runs `before_loop`, then
    ticks for `seconds`."""
    return (
        "#!/bin/bash\n"
        "#SBATCH --checkpoint=10s\n"
        "echo $PPID > launcher.pid\n"
        f"STORE={store_root}\n"
        f"{JOBDIR_SH}"
        f"{before_loop}"
        "exec 3>>ticks.txt\n"
        f"for i in $(seq 1 {seconds * 2}); do echo tick $i >&3; sleep 0.5; done\n"
    )


# -- fifos a blocked reader waits on -----------------------------------------------------


def unblock_fifo(path: Path, seconds: float = 2.0) -> None:
    """Release a reader blocked opening the fifo at `path`: open it for writing (without
    waiting for a reader) and close it, so the reader sees end of file. Tried for a while,
    since the reader may come back to it once more."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            st = os.lstat(path)
        except OSError:
            return
        if not stat.S_ISFIFO(st.st_mode):
            return
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: nobody reading
            time.sleep(0.1)
            continue
        os.close(fd)
        time.sleep(0.1)


# -- what must stay untouched --------------------------------------------------------------


def tree_digest(path: Path) -> dict[str, str]:
    """Everything below `path` (not following symlinks): type, owner, mode and content hash."""
    found: dict[str, str] = {}
    if not os.path.lexists(path):
        return found
    for dirpath, dirnames, filenames in os.walk(path):
        for name in sorted(dirnames + filenames):
            full = Path(dirpath) / name
            rel = str(full.relative_to(path))
            try:
                st = os.lstat(full)
                kind = stat.S_IFMT(st.st_mode)
                what = f"{kind:o} {st.st_uid} {stat.S_IMODE(st.st_mode):o}"
                if stat.S_ISREG(st.st_mode):
                    what += " " + hashlib.sha256(full.read_bytes()).hexdigest()
                elif stat.S_ISLNK(st.st_mode):
                    what += " -> " + os.readlink(full)
            except FileNotFoundError:  # going while we look (alice's own retention)
                continue
            found[rel] = what
    return found


@dataclass
class Victim:
    """ckpt-alice's checkpointed job and her canary files, which bob must not touch."""

    catalog: Catalog
    store_root: Path
    folder: Path
    job: int
    record: JobRecord
    canaries: Path  # 0700 folder of alice's, with files and a staging/ subfolder
    jobdir: Path
    canary_digest: dict[str, str] = field(default_factory=dict)

    @property
    def job_canary(self) -> Path:
        return self.jobdir / "alice-canary.txt"

    def newest(self) -> int:
        newest = self.catalog.newest_valid(self.record.id)
        return newest.seq if newest is not None else 0

    def valid_seqs(self) -> set[int]:
        return {c.seq for c in self.catalog.valid_checkpoints(self.record.id)}

    def wait_valid(self, at_least: int = 1, timeout: float = 60) -> int:
        return int(
            wait_until(
                lambda: self.newest() >= at_least and self.newest(),
                timeout,
                f"alice's job {self.job} to reach VALID checkpoint {at_least}",
            )
        )

    def snapshot(self) -> dict[int, dict[str, str]]:
        """The content of each of alice's VALID checkpoints now."""
        taken: dict[int, dict[str, str]] = {}
        for checkpoint in self.catalog.valid_checkpoints(self.record.id):
            digest = tree_digest(self.jobdir / "checkpoints" / f"{checkpoint.seq:06d}")
            if digest:
                taken[checkpoint.seq] = digest
        assert taken, "alice has no VALID checkpoint to protect"
        return taken

    def _state(self, seq: int) -> CheckpointState | None:
        rows: list[CheckpointRecord] = self.catalog.checkpoints(self.record.id)
        return next((c.state for c in rows if c.seq == seq), None)

    def assert_intact(self, snapshot: dict[int, dict[str, str]]) -> None:
        """Each checkpoint of the snapshot is byte-identical, unless alice's own retention
        gave it up since (the catalog marks it OBSOLETE before its files go)."""
        for seq, before in sorted(snapshot.items()):
            now = tree_digest(self.jobdir / "checkpoints" / f"{seq:06d}")
            if now == before:
                continue
            state = self._state(seq)
            if state in (CheckpointState.OBSOLETE, CheckpointState.DELETED):
                continue
            missing = sorted(set(before) - set(now))
            changed = sorted(k for k in before if k in now and now[k] != before[k])
            raise AssertionError(
                f"alice's checkpoint {seq} (catalog: {state}) was "
                + (
                    "deleted"
                    if not now
                    else f"changed: missing {missing[:5]}, changed {changed[:5]}"
                )
            )
        for seq in self.valid_seqs():
            assert (self.jobdir / "checkpoints" / f"{seq:06d}" / "manifest.json").exists() or (
                self._state(seq) != CheckpointState.VALID
            ), f"alice's VALID checkpoint {seq} has no manifest any more"

    def assert_canaries(self) -> None:
        assert tree_digest(self.canaries) == self.canary_digest, (
            "alice's canary folder changed: "
            f"{sorted(set(self.canary_digest) ^ set(tree_digest(self.canaries)))}"
        )
        assert self.job_canary.read_bytes() == b"alice's own file\n", "alice's job canary changed"

    def wait_grows(self, since: int, timeout: float = 30) -> int:
        """alice's newest VALID seq passes `since`: she is still checkpointed."""
        return int(
            wait_until(
                lambda: self.newest() > since and self.newest(),
                timeout,
                f"a new VALID checkpoint of alice's job {self.job} after seq {since} "
                f"(newest {self.newest()})",
            )
        )


def start_victim(
    cluster: SlurmTestClient, catalog: Catalog, store_root: Path, folder: Path
) -> Victim:
    """Submit alice's job (20 minutes of work, a checkpoint every 10 s) and plant her canaries."""
    script = (
        "#!/bin/bash\n"
        "#SBATCH --checkpoint=10s\n"
        "exec 3>>counter.txt\n"
        "for i in $(seq 1 2400); do echo line $i >&3; sleep 0.5; done\n"
    )
    job = cluster.submit(script, user=ALICE, cwd=folder, args=["--output=job.out"])
    cluster.wait_for(job, {"RUNNING"}, timeout=60)
    record = wait_until(lambda: catalog.find_job(CLUSTER, job), 30, f"alice's job {job} tracked")
    wait_until(lambda: job_folder(store_root, ALICE, job).is_dir(), 30, "alice's job folder")
    jobdir = job_folder(store_root, ALICE, job)
    canaries = folder / "canaries"
    plant = (
        f"mkdir -m 700 {canaries} {canaries}/staging {canaries}/checkpoints {canaries}/sub\n"
        f"echo 'alice secret 1' > {canaries}/secret.txt\n"
        f"head -c 65536 /dev/urandom > {canaries}/data.bin\n"
        f"echo 'in staging' > {canaries}/staging/000001.keep\n"
        f"echo 'in checkpoints' > {canaries}/checkpoints/note.txt\n"
        f"echo deep > {canaries}/sub/deep.txt\n"
        f"chmod 600 {canaries}/secret.txt\n"
        f'echo "alice\'s own file" > {jobdir}/alice-canary.txt\n'
    )
    as_user(ALICE, "bash", "-ec", plant)
    victim = Victim(catalog, store_root, folder, job, record, canaries, jobdir)
    victim.canary_digest = tree_digest(canaries)
    return victim


# -- the service --------------------------------------------------------------------------


def service_pid() -> int:
    return int(SERVICE_PID_FILE.read_text().strip())


def healthz() -> int:
    try:
        with urllib.request.urlopen(HEALTHZ, timeout=3) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (OSError, ValueError):
        return 0


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} for pid {pid}")


class Sampler:
    """While an attack is under way: /healthz and the service's VmRSS, sampled in a thread."""

    def __init__(self, pid: int, every: float = 0.25, rss_every: float = 0.02) -> None:
        self.pid = pid
        self.every = every
        self.rss_every = rss_every
        self.codes: list[tuple[float, int]] = []
        self.rss_base = status_kib(pid, "VmRSS")
        self.hwm_base = status_kib(pid, "VmHWM")
        self.rss_max = self.rss_base
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._health, daemon=True),
            threading.Thread(target=self._rss, daemon=True),
        ]
        self.started = time.monotonic()

    def _health(self) -> None:
        while not self._stop.is_set():
            self.codes.append((time.monotonic() - self.started, healthz()))
            self._stop.wait(self.every)

    def _rss(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, AssertionError):
                self.rss_max = max(self.rss_max, status_kib(self.pid, "VmRSS"))
            self._stop.wait(self.rss_every)

    def __enter__(self) -> Sampler:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def unhealthy(self) -> list[tuple[float, int]]:
        return [(round(t, 1), code) for t, code in self.codes if code != 200]

    def memory_growth_mib(self) -> float:
        """How much the service grew while sampled: the peak VmRSS seen, and a new high-water
        mark (VmHWM) past the one before, against the levels before."""
        hwm = status_kib(self.pid, "VmHWM")
        grown = max(self.rss_max - self.rss_base, hwm - self.hwm_base)
        return grown / 1024


def watch_while(sampler: Sampler, victim: Victim, since: int, *, at_least: float) -> int:
    """Keep the attack in place for `at_least` seconds and until alice got a new VALID
    checkpoint (at most two intervals and a margin); return her newest seq."""
    deadline = time.monotonic() + max(at_least, 25)
    newest = victim.newest()
    while time.monotonic() < deadline:
        newest = victim.newest()
        if newest > since and sampler.elapsed() >= at_least:
            break
        time.sleep(0.2)
    return newest


@dataclass
class ServiceCheck:
    pid: int

    def assert_alive_and_healthy(self) -> None:
        code = healthz()
        assert code == 200, f"slurm-ckptd /healthz answers {code}"
        assert service_pid() == self.pid, (
            f"slurm-ckptd was restarted ({self.pid} -> {service_pid()})"
        )
        assert Path(f"/proc/{self.pid}").exists(), f"slurm-ckptd (pid {self.pid}) died"


def control_characters(text: str) -> list[str]:
    """Control characters (C0 but newline, DEL, C1) in `text`, as escapes."""
    return [repr(c) for c in text if c != "\n" and unicodedata.category(c) == "Cc"]


def admin(*args: str, timeout: float = 60) -> proc.Completed:
    """ckpt-admin as root (an admin), output not to a terminal, wide enough to show errors."""
    return proc.run(
        [str(ADMIN), *args],
        timeout=timeout,
        check=False,
        env={**os.environ, "COLUMNS": "250"},
        cwd="/",
    )


@contextlib.contextmanager
def root_canary_and_guard(folder: Path) -> Iterator[Path]:
    """A root-owned canary file in `folder` (the store root or the state folder), and just
    after it in name order an empty read-only tmpfs mount point. A service that empties
    `folder` in name order (as clean_staging does) removes the canary, then fails on the
    mount point and stops there: the test sees the deletion, and catalog.db and the other
    jobs' folders (named after it) are spared."""
    tag = uuid.uuid4().hex[:8]
    canary = folder / f"0000-security-test-canary-{tag}"
    guard = folder / f"0001-security-test-guard-{tag}"
    canary.write_text("root's canary\n")
    os.chmod(canary, 0o644)
    guard.mkdir(mode=0o755)
    proc.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=16k,mode=0755", "tmpfs", str(guard)], timeout=30
    )
    try:
        yield canary
    finally:
        proc.run(["umount", "-l", str(guard)], timeout=30, check=False)
        with contextlib.suppress(OSError):
            guard.rmdir()
        with contextlib.suppress(OSError):
            canary.unlink()


def xxh3_checksum(path: Path) -> str:
    import xxhash

    return "xxh3_128:" + xxhash.xxh3_128(path.read_bytes()).hexdigest()


def json_of(done: proc.Completed) -> dict[str, object]:
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))
