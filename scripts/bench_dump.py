#!/usr/bin/env python3
"""Benchmark: a checkpoint and a restore through the launcher, against plain CRIU and dd.

For workloads of 256 MiB and 1 GiB resident memory, run as an ordinary user:
- launcher: request -> result file (dump, file records, hashing, manifest, fsync,
  rename), and restart -> restored (full re-hash, roll-back, restore);
- plain `criu dump --leave-running` / `criu restore -d` on the same workload;
- `dd` writing the same number of bytes to the same filesystem, with fsync
  (the physical limit: the launcher fsyncs its images, plain CRIU does not).

Run as root (it switches to the test user): make bench-dump
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import shutil
import signal
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import benchlib

from slurm_ckpt.dump.criu import tree_pids
from slurm_ckpt.store.folders import ensure_user_dir
from slurm_ckpt.store.layout import JobDir

PREFIX = Path(os.environ.get("SLURM_CKPT_PREFIX", "/opt/slurm-ckpt"))
LAUNCHER = PREFIX / "venv/bin/slurm-ckpt-launch"
CRIU = PREFIX / "bin/criu-unpriv"
USER = "ckpt-alice"

WORKLOAD = """
import os, sys, time
size = int(sys.argv[1]) << 20
block = os.urandom(1 << 20)
data = bytearray(block * (size >> 20))   # resident, incompressible
open(sys.argv[2], "w").close()
while True:
    time.sleep(0.1)
"""


def wait_for(check: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit("bench: timed out")
        time.sleep(0.002)


def kill_tree(root: int) -> None:
    """Kill a tree and wait until its pids are free (init reaps orphans a little late)."""
    pids = tree_pids(root)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    os.waitpid(root, 0)
    wait_for(lambda: not any(os.path.exists(f"/proc/{p}") for p in pids))


def as_user(user: pwd.struct_passwd, argv: list[str], **kw: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            "setpriv",
            f"--reuid={user.pw_uid}",
            f"--regid={user.pw_gid}",
            "--init-groups",
            "--",
            *argv,
        ],
        stdin=subprocess.DEVNULL,
        **kw,
    )  # type: ignore[call-overload]


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def settle() -> None:
    """Start every timed step with no dirty pages from the previous one."""
    subprocess.run(["sync"], check=True)


def bench_launcher(user: pwd.struct_passwd, work: Path, mib: int, job_id: int) -> dict[str, float]:
    # Like a site's store: the root is root's and users only pass through it; the
    # user's own folder is made by the trusted side (here, this script as root).
    store = work / "store"
    store.mkdir(mode=0o711, exist_ok=True)
    os.chown(store, 0, 0)
    os.chmod(store, 0o711)
    ensure_user_dir(store, user.pw_name, user.pw_uid, user.pw_gid)
    script = work / "workload.py"
    ready = work / f"ready-{job_id}"
    env = {
        "PATH": "/usr/bin:/bin",
        "SLURM_JOB_ID": str(job_id),
        "SLURM_RESTART_COUNT": "0",
        "SLURM_CKPT_PATHS_STORE_ROOT": str(store),
        "SLURM_CKPT_CONFIG": "/dev/null",
    }
    run = as_user(
        user,
        [str(LAUNCHER), "/usr/bin/python3", str(script), str(mib), str(ready)],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(ready.exists)
    jobdir = JobDir(store, user.pw_name, job_id).path
    result = jobdir / "results" / "000001.json"
    (jobdir / "request.json").write_text(json.dumps({"job_id": job_id, "seq": 1}))
    os.chmod(jobdir / "request.json", 0o644)
    settle()
    t0 = time.monotonic()
    os.kill(run.pid, signal.SIGUSR1)
    wait_for(result.exists)
    checkpoint = time.monotonic() - t0
    detail = json.loads(result.read_text())
    if not detail["ok"]:
        raise SystemExit(f"bench: launcher checkpoint failed: {detail['error']}")
    kill_tree(run.pid)
    run.returncode = -9
    (jobdir / "images.json").write_text(json.dumps({"job_id": job_id, "images": [{"seq": 1}]}))
    os.chmod(jobdir / "images.json", 0o644)
    report = jobdir / "restarts" / "0001.json"
    env["SLURM_RESTART_COUNT"] = "1"
    settle()
    t0 = time.monotonic()
    run = as_user(
        user,
        [str(LAUNCHER), "/usr/bin/python3", str(script), str(mib), str(ready)],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(report.exists)
    restore = time.monotonic() - t0
    outcome = json.loads(report.read_text())
    if outcome["outcome"] != "restored":
        raise SystemExit(f"bench: launcher restore failed: {outcome}")
    kill_tree(run.pid)
    run.returncode = -9
    size = du(jobdir / "checkpoints" / "000001")
    shutil.rmtree(jobdir, ignore_errors=True)
    return {
        "checkpoint": checkpoint,
        "dump": detail["dump_seconds"],
        "frozen": detail["freeze_seconds"],
        "restore": restore,
        "criu_restore": outcome["restore_seconds"],
        "bytes": size,
    }


def bench_criu(user: pwd.struct_passwd, work: Path, mib: int, tag: int) -> dict[str, float]:
    images = work / f"criu-{tag}"
    images.mkdir()
    os.chown(images, user.pw_uid, user.pw_gid)
    ready = work / f"ready-criu-{tag}"
    workload = as_user(
        user,
        [
            "setsid",
            "setpriv",
            "--no-new-privs",
            "/usr/bin/python3",
            str(work / "workload.py"),
            str(mib),
            str(ready),
        ],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(ready.exists)
    common = ["--unprivileged", "--manage-cgroups=ignore", "-D", str(images), "-v4"]
    settle()
    t0 = time.monotonic()
    dump = as_user(
        user,
        [str(CRIU), "dump", "-t", str(workload.pid), "--leave-running", "-o", "dump.log", *common],
        cwd=work,
    )
    if dump.wait() != 0:
        raise SystemExit(f"bench: criu dump failed, see {images}/dump.log")
    dumped = time.monotonic() - t0
    subprocess.run(["sync", "-f", str(images)], check=True)
    durable = time.monotonic() - t0
    workload.kill()
    workload.wait()
    wait_for(lambda: not os.path.exists(f"/proc/{workload.pid}"))
    settle()
    t0 = time.monotonic()
    restore = as_user(user, [str(CRIU), "restore", "-d", "-o", "restore.log", *common], cwd=work)
    if restore.wait() != 0:
        raise SystemExit(f"bench: criu restore failed, see {images}/restore.log")
    restored = time.monotonic() - t0
    os.kill(workload.pid, signal.SIGKILL)
    size = du(images)
    shutil.rmtree(images)
    return {"dump": dumped, "durable": durable, "restore": restored, "bytes": size}


def bench_dd(user: pwd.struct_passwd, work: Path, nbytes: int) -> float:
    target = work / "dd.bin"
    settle()
    t0 = time.monotonic()
    dd = as_user(
        user,
        [
            "dd",
            "if=/dev/zero",
            f"of={target}",
            "bs=4M",
            f"count={max(nbytes >> 22, 1)}",
            "conv=fsync",
            "status=none",
        ],
    )
    dd.wait()
    elapsed = time.monotonic() - t0
    target.unlink()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,1024", help="workload sizes in MiB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default="/var/tmp/slurm-ckpt-bench")
    benchlib.add_json_option(parser)
    args = parser.parse_args()
    user = pwd.getpwnam(USER)
    work = Path(args.dir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(mode=0o755, parents=True)
    os.chown(work, user.pw_uid, user.pw_gid)
    (work / "workload.py").write_text(WORKLOAD)

    print(f"kernel {os.uname().release}; images on {work}; median of {args.repeat}\n")
    print(
        "| workload | image | launcher checkpoint | criu dump | criu dump + sync | ratio "
        "| dd + fsync | launcher restore | criu restore | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows: list[dict[str, float]] = []
    for mib in (int(s) for s in args.sizes.split(",")):
        runs_l, runs_c, runs_d = [], [], []
        for i in range(args.repeat):
            runs_l.append(bench_launcher(user, work, mib, 500_000 + mib * 10 + i))
            runs_c.append(bench_criu(user, work, mib, mib * 10 + i))
            runs_d.append(bench_dd(user, work, int(runs_l[-1]["bytes"])))

        def med(runs: list[dict[str, float]], key: str) -> float:
            return statistics.median(r[key] for r in runs)

        lc, cd, cs = med(runs_l, "checkpoint"), med(runs_c, "dump"), med(runs_c, "durable")
        lr, cr = med(runs_l, "restore"), med(runs_c, "restore")
        rows.append(
            {
                "mib": mib,
                "image_bytes": med(runs_l, "bytes"),
                "launcher_checkpoint_s": lc,
                "launcher_dump_s": med(runs_l, "dump"),
                "launcher_frozen_s": med(runs_l, "frozen"),
                "criu_dump_s": cd,
                "criu_dump_sync_s": cs,
                "dd_fsync_s": statistics.median(runs_d),
                "launcher_restore_s": lr,
                "launcher_criu_restore_s": med(runs_l, "criu_restore"),
                "criu_restore_s": cr,
            }
        )
        print(
            f"| {mib} MiB | {med(runs_l, 'bytes') / 2**20:.0f} MiB | {lc:.2f} s | {cd:.2f} s "
            f"| {cs:.2f} s | {lc / cd:.2f}x / {lc / cs:.2f}x | {statistics.median(runs_d):.2f} s "
            f"| {lr:.2f} s | {cr:.2f} s | {lr / cr:.2f}x |"
        )
        print(
            f"<!-- {mib} MiB: launcher dump {med(runs_l, 'dump'):.2f} s, frozen "
            f"{med(runs_l, 'frozen'):.2f} s, criu restore inside launcher "
            f"{med(runs_l, 'criu_restore'):.2f} s -->"
        )
    shutil.rmtree(work, ignore_errors=True)
    criu = subprocess.run([str(CRIU), "--version"], capture_output=True, text=True)
    benchlib.write_results(
        args.json,
        "dump",
        {"repeat": args.repeat, "dir": str(work), "criu": criu.stdout.split("\n")[0].strip()},
        rows,
    )


if __name__ == "__main__":
    main()
