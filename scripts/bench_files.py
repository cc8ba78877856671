#!/usr/bin/env python3
"""Benchmark: what keeping a job's data file exact costs per checkpoint.

A file of 16 MiB, 256 MiB and 1 GiB, held open for writing, with 1% of its
blocks overwritten in place between checkpoints. Side by side in one run:
- "whole copy, frozen": the first checkpoint of a file (launcher/filesaver.py
  reads, hashes and writes every block while the tree is frozen);
- "changed blocks, frozen": a later checkpoint: every block read and hashed,
  only the changed ones written, while frozen;
- "fill, running": the same checkpoint's unchanged blocks copied from the
  previous copy, checked on the way, after the tree runs again;
- "checksum only": a file over `launcher.copy_max_bytes` (no copy; a restore
  refuses the image if the file changed in place);
- `dd bs=1M` of the same file (the plain copy, as a whole process), and plain
  `criu dump --leave-running` of a process holding it open (CRIU copies no
  file: what the launcher adds to the freeze is the "frozen" rows).

Run as root: make bench-files
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import benchlib

from slurm_ckpt.launcher.filesaver import FileSaver, block_size
from slurm_ckpt.store.checksum import hash_prefix

CRIU = Path(os.environ.get("SLURM_CKPT_PREFIX", "/opt/slurm-ckpt")) / "sbin/criu"
HOLDER = """\
import sys, time
f = open(sys.argv[1], "r+b")
print("ready", flush=True)
time.sleep(600)
"""


def timed(action: Callable[..., object], *args: object) -> float:
    started = time.perf_counter()
    action(*args)
    return time.perf_counter() - started


def touch_blocks(path: Path, fraction: float, round_: int) -> int:
    """Overwrite `fraction` of the file's blocks in place (at least one); return how many."""
    size = path.stat().st_size
    block = block_size(size)
    blocks = -(-size // block)
    count = max(1, int(blocks * fraction))
    with open(path, "r+b", buffering=0) as f:
        for i in range(count):
            number = (i * 7919 + round_ * 104729) % blocks
            os.pwrite(f.fileno(), os.urandom(4096), number * block)
    return count


def criu_dump(path: Path, work: Path) -> float:
    """Plain CRIU: dump a process that holds `path` open, leaving it running."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"ready"
        images = Path(tempfile.mkdtemp(dir=work))
        argv = [str(CRIU), "dump", "-t", str(holder.pid), "-D", str(images)]
        argv += ["--leave-running", "--shell-job", "-o", "dump.log"]
        seconds = timed(subprocess.check_call, argv)
        shutil.rmtree(images)
        return seconds
    finally:
        holder.kill()
        holder.wait()


def measure(mib: int, rounds: int, work: Path) -> dict[str, object]:
    data = work / f"data-{mib}.dat"
    with open(data, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))
    pid = os.getpid()
    rows: dict[str, list[float]] = {
        "whole copy, frozen": [],
        "changed blocks, frozen": [],
        "fill, running": [],
        "checksum only": [],
        "dd bs=1M": [],
        "plain criu dump": [],
    }
    frozen_bytes: list[int] = []
    with open(data, "r+b"):  # the "tree" (this process) holds it open for writing
        for r in range(rounds):
            folders = [Path(tempfile.mkdtemp(dir=work)) for _ in range(2)]
            saver = FileSaver(copy_max_bytes=1 << 40)
            started = time.perf_counter()
            first = saver.save_frozen([pid], folders[0])
            rows["whole copy, frozen"].append(time.perf_counter() - started)
            saver.finish(first)
            saver.committed(first, folders[0])
            touch_blocks(data, 0.01, r)
            started = time.perf_counter()
            later = saver.save_frozen([pid], folders[1])
            rows["changed blocks, frozen"].append(time.perf_counter() - started)
            frozen_bytes.append(later.frozen_bytes)
            rows["fill, running"].append(timed(saver.finish, later))
            for folder in folders:
                shutil.rmtree(folder)

            def checksum() -> None:
                with open(data, "rb", buffering=0) as f:
                    hash_prefix(f.fileno(), data.stat().st_size)

            rows["checksum only"].append(timed(checksum))
            copy = work / "dd.copy"
            dd = ["dd", f"if={data}", f"of={copy}", "bs=1M", "status=none"]
            rows["dd bs=1M"].append(timed(subprocess.check_call, dd))
            copy.unlink()
            rows["plain criu dump"].append(criu_dump(data, work))
    data.unlink()
    medians = {name: statistics.median(values) for name, values in rows.items()}
    return {
        "mib": mib,
        "block_bytes": block_size(mib << 20),
        "changed_bytes": int(statistics.median(frozen_bytes)),
        "seconds": medians,
        "ratio_whole_to_dd": medians["whole copy, frozen"] / medians["dd bs=1M"],
        "ratio_changed_to_criu": medians["changed blocks, frozen"] / medians["plain criu dump"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="16,256,1024", help="MiB, comma-separated")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"))
    benchlib.add_json_option(parser)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_files: run as root (plain CRIU dumps a process here)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-files-", dir=args.dir))
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
        results = [measure(mib, args.rounds, work) for mib in sizes]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for r in results:
        seconds: dict[str, float] = r["seconds"]  # type: ignore[assignment]
        print(f"{r['mib']} MiB: " + ", ".join(f"{k} {v:.3f}s" for k, v in seconds.items()))
    benchlib.write_results(
        args.json,
        "files",
        {"sizes_mib": sizes, "rounds": args.rounds, "changed_fraction": 0.01, "dir": str(args.dir)},
        results,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
