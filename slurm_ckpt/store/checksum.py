"""The checksum recorded for every image file in a manifest.

xxh3_128, chosen by measurement (scripts/bench_checksum.py, numbers in
docs/benchmarks.md "Checksum"): it runs at memory speed, so hashing a dump
adds a small fraction to the checkpoint's time, where sha256 and blake2b about
double it. The checksum guards against corruption (torn writes, bit rot,
truncation), not against an attacker: the store folder is the job user's own,
and that user could rewrite a cryptographic hash as easily as the image.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import xxhash

ALGORITHM = "xxh3_128"

# Large enough that per-call overhead vanishes, small enough to stay in L2/L3-ish
# territory and to report progress often.
CHUNK_SIZE = 4 * 1024 * 1024


def hash_file(path: Path, progress: Callable[[int], None] | None = None) -> str:
    """Return the hex checksum of a file's content.

    `progress`, when given, is called after each chunk with the bytes hashed so far.
    Raises OSError when the file cannot be read.
    """
    with path.open("rb", buffering=0) as f:
        return hash_fd(f.fileno(), progress)


def hash_prefix(fd: int, size: int, start: int = 0) -> str:
    """The checksum of bytes [start, size) of an open file, whatever follows them
    and wherever its offset is. Raises OSError when the file is shorter."""
    hasher = xxhash.xxh3_128()
    buf = bytearray(CHUNK_SIZE)
    view = memoryview(buf)
    done = start
    while done < size:
        n = os.preadv(fd, [view[: min(CHUNK_SIZE, size - done)]], done)
        if not n:
            raise OSError(errno.ENODATA, f"the file ends at {done} bytes, before {size}")
        hasher.update(view[:n])
        done += n
    return hasher.hexdigest()


def hash_fd(
    fd: int, progress: Callable[[int], None] | None = None, *, size: int | None = None
) -> str:
    """hash_file on an open descriptor, from its current offset to the end, or of
    exactly `size` bytes (OSError with EFBIG when the file holds more: a file that
    grows while it is hashed never keeps the reader busy for ever)."""
    hasher = xxhash.xxh3_128()
    buf = bytearray(CHUNK_SIZE)
    view = memoryview(buf)
    done = 0
    while True:
        want = CHUNK_SIZE if size is None else min(CHUNK_SIZE, size - done)
        if want == 0:
            if os.read(fd, 1):
                raise OSError(errno.EFBIG, "the file grew past its recorded size")
            break
        n = os.readv(fd, [view[:want]])
        if not n:
            break
        hasher.update(view[:n])
        done += n
        if progress is not None:
            progress(done)
    return hasher.hexdigest()


def hash_bytes(data: bytes) -> str:
    """The checksum of bytes already in memory (a manifest as it was read)."""
    return xxhash.xxh3_128(data).hexdigest()
