#!/usr/bin/env python3
"""Time the checksum candidates for checkpoint manifests on a large file.

Usage: .venv/bin/python scripts/bench_checksum.py [--size-mib 1024] [--dir DIR] [--repeat 3]
       [--json PATH]

Writes a file of random bytes (CRIU images of real memory hash like random
data: no shortcut for zeros), then times each algorithm twice: with the file
in the page cache ("warm", the case right after a dump) and after dropping it
from the cache with posix_fadvise(DONTNEED) ("cold", the case of `verify`
on an older image). A plain read with no hashing is the baseline.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import benchlib

MIB = 1024 * 1024


class _Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...
    def hexdigest(self) -> str: ...


class _NoHash:
    """Reads only: the I/O floor every algorithm pays."""

    def update(self, data: bytes | memoryview, /) -> None:
        pass

    def hexdigest(self) -> str:
        return ""


def _candidates() -> dict[str, Callable[[], _Hasher]]:
    found: dict[str, Callable[[], _Hasher]] = {
        "read only": _NoHash,
        "sha256": hashlib.sha256,
        "blake2b": hashlib.blake2b,
    }
    try:
        import xxhash
    except ImportError:
        print("xxhash not installed: pip install xxhash to include xxh3_128", file=sys.stderr)
    else:
        found["xxh3_128"] = xxhash.xxh3_128
    return found


def _write_file(path: Path, size: int) -> None:
    block = 16 * MIB
    with path.open("wb") as f:
        done = 0
        while done < size:
            n = min(block, size - done)
            f.write(os.urandom(n))
            done += n
        f.flush()
        os.fsync(f.fileno())


def _drop_from_cache(path: Path) -> None:
    # Clean pages (the file was fsynced) are really evicted; no root needed.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _hash_once(path: Path, factory: Callable[[], _Hasher], chunk: int) -> float:
    buf = bytearray(chunk)
    view = memoryview(buf)
    hasher = factory()
    start = time.perf_counter()
    with path.open("rb", buffering=0) as f:
        while n := f.readinto(buf):
            hasher.update(view[:n])
    hasher.hexdigest()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--dir", type=Path, default=None, help="where to write the test file")
    parser.add_argument("--repeat", type=int, default=3)
    benchlib.add_json_option(parser)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from slurm_ckpt.store.checksum import ALGORITHM, CHUNK_SIZE, hash_file

    size = args.size_mib * MIB
    candidates = _candidates()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-checksum-") as tmp:
        path = Path(tmp) / "image.bin"
        print(f"writing {args.size_mib} MiB of random data to {path} ...", file=sys.stderr)
        _write_file(path, size)
        rows: list[tuple[str, float, float]] = []
        for name, factory in candidates.items():
            _hash_once(path, factory, CHUNK_SIZE)  # bring the file into the cache
            warm = statistics.median(
                _hash_once(path, factory, CHUNK_SIZE) for _ in range(args.repeat)
            )
            cold_runs = []
            for _ in range(args.repeat):
                _drop_from_cache(path)
                cold_runs.append(_hash_once(path, factory, CHUNK_SIZE))
            rows.append((name, warm, statistics.median(cold_runs)))

        # The shipped function, progress callback included, on a warm file.
        hash_file(path)
        start = time.perf_counter()
        hash_file(path, progress=lambda done: None)
        rows.append((f"hash_file ({ALGORITHM})", time.perf_counter() - start, float("nan")))

    gib = size / (1024 * MIB)
    print(f"\n{args.size_mib} MiB, chunk {CHUNK_SIZE // MIB} MiB, median of {args.repeat}")
    print(f"{'algorithm':<24} {'warm s':>8} {'warm GiB/s':>11} {'cold s':>8} {'cold GiB/s':>11}")
    for name, warm, cold in rows:
        cold_s = "-" if cold != cold else f"{cold:8.3f}"
        cold_r = "-" if cold != cold else f"{gib / cold:11.2f}"
        print(f"{name:<24} {warm:8.3f} {gib / warm:11.2f} {cold_s:>8} {cold_r:>11}")
    xxhash_version = getattr(sys.modules.get("xxhash"), "VERSION", None)
    benchlib.write_results(
        args.json,
        "checksum",
        {"size_mib": args.size_mib, "chunk_mib": CHUNK_SIZE // MIB, "repeat": args.repeat},
        {
            "shipped": ALGORITHM,
            "xxhash": xxhash_version,
            "rows": [
                {"name": name, "warm_s": warm, "cold_s": None if cold != cold else cold}
                for name, warm, cold in rows
            ],
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
