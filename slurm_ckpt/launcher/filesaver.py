"""Copies of the tree's writable files in each image, made while it is frozen at
the cost of what changed since the previous checkpoint.

A restore must give the job its files as they were at the checkpoint, and only
a copy made while the tree is frozen can (openfiles.py says why). Copying a
large data file whole at every checkpoint would stop the job for as long as
the copy takes, so each copy is cut into blocks, each with its checksum:

1. While frozen (save_frozen): read every block of the live file and hash it.
   A block whose checksum differs from the previous copy's, or that the
   previous copy lacks, is written into the new copy. The first copy of a file
   is written whole here.
2. Once the tree runs again (finish): the unchanged blocks are copied from the
   previous copy, which is committed and never written again, each checked
   against its recorded checksum on the way. The block checksums go beside the
   copy (`<copy>.blocks`), so the copy after a restore is again a delta.

Every image holds a whole copy: retention may delete any older image, and the
previous copy is held open from the freeze to the fill, so deleting it meanwhile
takes nothing away. A file larger than `launcher.copy_max_bytes` is not copied:
the image keeps the checksum of its content, all of it when the tree may write
anywhere in it, its last block when the tree only appends to it (a 50 GiB log
is not read at every freeze), and a restore refuses the image once it changed.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import xxhash

from slurm_ckpt.errors import LauncherError
from slurm_ckpt.launcher.openfiles import Writable, writable_files, write_all
from slurm_ckpt.store.checksum import hash_prefix
from slurm_ckpt.store.manifest import OpenFile

log = logging.getLogger(__name__)

MIN_BLOCK = 1 << 20
MAX_BLOCKS = 4096  # per file: a larger file gets larger blocks
_DIGEST = 16  # bytes of xxh3_128
_MAGIC = b"SCKB1\0\0\0"  # <copy>.blocks: magic, block size (u64), then one digest per block
BLOCKS_SUFFIX = ".blocks"


def block_size(size: int) -> int:
    """The block size for a file of `size` bytes: 1 MiB, doubled until at most
    MAX_BLOCKS blocks cover it."""
    block = MIN_BLOCK
    while block * MAX_BLOCKS < size:
        block *= 2
    return block


@dataclass(frozen=True)
class BlockCopy:
    """A committed copy of one file: where it is, and its blocks' checksums."""

    copy: Path
    block: int
    digests: tuple[bytes, ...]


@dataclass
class _Pending:
    entry: OpenFile
    copy: Path
    block: int
    digests: list[bytes]
    base: BlockCopy | None  # where the unchanged blocks come from
    base_fd: int | None = None  # the base copy, held open until the fill
    unchanged: list[int] = field(default_factory=list)  # block numbers to fill from base
    frozen_bytes: int = 0  # written while the tree was frozen


@dataclass
class Saving:
    """What save_frozen did for one dump, for finish and committed."""

    pending: list[_Pending]

    @property
    def frozen_bytes(self) -> int:
        """Bytes of every copy written while the tree was frozen."""
        return sum(p.frozen_bytes for p in self.pending)

    def frozen_bytes_of(self, path: str) -> int:
        return sum(p.frozen_bytes for p in self.pending if p.entry.path == path)

    def close(self) -> None:
        """Let go of the previous copies (finish does; a failed dump must)."""
        for pending in self.pending:
            if pending.base_fd is not None:
                os.close(pending.base_fd)
                pending.base_fd = None


class FileSaver:
    """Remembers the newest committed copy of each file, to copy only what changed."""

    def __init__(self, copy_max_bytes: int) -> None:
        self.copy_max_bytes = copy_max_bytes
        self.copies: dict[str, BlockCopy] = {}

    def save_frozen(self, pids: Iterable[int], images: Path) -> Saving:
        """Record the tree's writable files into `images` while it is frozen."""
        saving = Saving([])
        try:
            for index, (path, file) in enumerate(sorted(writable_files(pids).items())):
                if file.leased:
                    entry = OpenFile(path, file.size, file.append, None, stamp=file.stamp)
                    saving.pending.append(_Pending(entry, Path(), 0, [], None))
                    continue
                if file.size > self.copy_max_bytes:
                    entry = _checked(path, file)
                    saving.pending.append(_Pending(entry, Path(), 0, [], None))
                    continue
                name = f"openfile-{index:04d}.data"
                entry = OpenFile(path, file.size, file.append, saved_copy=name)
                saving.pending.append(self._copy_changed(entry, images / name))
        except BaseException:
            saving.close()
            raise
        return saving

    def _copy_changed(self, entry: OpenFile, dest: Path) -> _Pending:
        block = block_size(entry.size)
        base = self.copies.get(entry.path)
        base_fd = None
        if base is not None and base.block == block:
            try:
                base_fd = os.open(base.copy, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError as exc:
                log.info("previous copy of %s unavailable (%s): copied whole", entry.path, exc)
        if base_fd is None:
            base = None
        pending = _Pending(entry, dest, block, [], base, base_fd)
        buf = bytearray(block)
        view = memoryview(buf)
        try:
            with open(entry.path, "rb", buffering=0) as src, open(dest, "wb") as dst:
                for number, offset in enumerate(range(0, entry.size, block)):
                    want = min(block, entry.size - offset)
                    got = os.preadv(src.fileno(), [view[:want]], offset)
                    if got != want:
                        raise LauncherError(
                            f"{entry.path} shrank below {entry.size} bytes while being saved"
                        )
                    digest = xxhash.xxh3_128_digest(view[:want])
                    pending.digests.append(digest)
                    if (
                        base is not None
                        and number < len(base.digests)
                        and base.digests[number] == digest
                    ):
                        pending.unchanged.append(number)
                        continue
                    write_all(dst.fileno(), view[:want], offset)
                    pending.frozen_bytes += want
                dst.truncate(entry.size)
        except BaseException as exc:
            if base_fd is not None:
                os.close(base_fd)
            if isinstance(exc, OSError):
                raise LauncherError(f"cannot save a copy of {entry.path}: {exc}") from exc
            raise
        return pending

    def finish(self, saving: Saving) -> list[OpenFile]:
        """Fill every copy's unchanged blocks from the previous copy and write its
        block checksums; the tree runs again meanwhile. Returns the manifest's
        open-file entries. Raises LauncherError when a previous copy is damaged."""
        try:
            for pending in saving.pending:
                if pending.entry.saved_copy is None:
                    continue
                if pending.unchanged:
                    _fill(pending)
                _write_digests(pending.copy, pending.block, pending.digests)
        finally:
            saving.close()
        return [p.entry for p in saving.pending]

    def committed(self, saving: Saving, images: Path) -> None:
        """The image is committed as `images`: its copies, and no older ones (retention
        may delete those), are the base of the next ones."""
        self.copies = {
            p.entry.path: BlockCopy(images / p.entry.saved_copy, p.block, tuple(p.digests))
            for p in saving.pending
            if p.entry.saved_copy is not None
        }

    def forget(self) -> None:
        """Start over with whole copies (a dump failed, or a restore changed the files)."""
        self.copies.clear()

    def adopt(self, files: Iterable[OpenFile], images: Path) -> None:
        """After a restore from `images`: its copies are the base of the next ones."""
        self.copies.clear()
        for entry in files:
            if entry.saved_copy is None:
                continue
            try:
                block, digests = read_digests(images / (entry.saved_copy + BLOCKS_SUFFIX))
            except (OSError, ValueError) as exc:
                log.info("no block checksums for %s (%s): next copy whole", entry.path, exc)
                continue
            if block == block_size(entry.size) and len(digests) == -(-entry.size // block):
                self.copies[entry.path] = BlockCopy(images / entry.saved_copy, block, digests)


def _checked(path: str, file: Writable) -> OpenFile:
    """An entry with no copy: the checksum of the content a restore must find again."""
    # Appends cannot change what is there: the last block tells a file cut and
    # written again. Writes anywhere can: then all of it.
    start = 0 if file.in_place else max(0, file.size - MIN_BLOCK)
    try:
        with open(path, "rb", buffering=0) as f:
            content = hash_prefix(f.fileno(), file.size, start)
    except OSError as exc:
        raise LauncherError(f"cannot read {path} to record its content: {exc}") from exc
    return OpenFile(path, file.size, file.append, None, content=content, content_from=start)


def _fill(pending: _Pending) -> None:
    base, src = pending.base, pending.base_fd
    assert base is not None and src is not None
    block, size = pending.block, pending.entry.size
    buf = bytearray(block)
    view = memoryview(buf)
    try:
        with open(pending.copy, "r+b") as dst:
            for number in pending.unchanged:
                offset = number * block
                want = min(block, size - offset)
                got = os.preadv(src, [view[:want]], offset)
                if got != want or xxhash.xxh3_128_digest(view[:want]) != base.digests[number]:
                    raise LauncherError(
                        f"the previous copy of {pending.entry.path} ({base.copy}) is damaged "
                        f"at block {number}: this checkpoint cannot be completed"
                    )
                write_all(dst.fileno(), view[:want], offset)
    except OSError as exc:
        raise LauncherError(
            f"cannot read the previous copy of {pending.entry.path} ({base.copy}): {exc}"
        ) from exc


def _write_digests(copy: Path, block: int, digests: list[bytes]) -> None:
    with open(copy.with_name(copy.name + BLOCKS_SUFFIX), "wb") as f:
        f.write(_MAGIC + struct.pack("<Q", block) + b"".join(digests))


def read_digests(path: Path) -> tuple[int, tuple[bytes, ...]]:
    """The block size and block checksums in a `<copy>.blocks` file. Raises ValueError."""
    with open(path, "rb") as f:
        data = f.read(len(_MAGIC) + 8 + _DIGEST * (MAX_BLOCKS + 1))
    head = len(_MAGIC) + 8
    if len(data) < head or data[: len(_MAGIC)] != _MAGIC or (len(data) - head) % _DIGEST:
        raise ValueError(f"{path} is not a block checksum file")
    (block,) = struct.unpack("<Q", data[len(_MAGIC) : head])
    if block < MIN_BLOCK or block & (block - 1):
        raise ValueError(f"{path}: block size {block} is not a power of two of 1 MiB or more")
    body = data[head:]
    return block, tuple(body[i : i + _DIGEST] for i in range(0, len(body), _DIGEST))
