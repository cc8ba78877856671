"""The copies of writable files in each image: whole the first time, then only the
blocks changed since the previous copy while the tree is frozen, the rest filled
from the previous copy afterwards; every copy holds the file as it was when frozen."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from slurm_ckpt.errors import LauncherError
from slurm_ckpt.launcher import filesaver
from slurm_ckpt.launcher.filesaver import MIN_BLOCK, FileSaver, block_size, read_digests
from slurm_ckpt.store.manifest import OpenFile

BLOCK = MIN_BLOCK


@pytest.fixture
def data(tmp_path: Path) -> Iterator[Path]:
    """A data file of 4.5 blocks, held open for writing by this process (the "tree")."""
    path = tmp_path / "state.dat"
    path.write_bytes(os.urandom(4 * BLOCK + BLOCK // 2))
    other = tmp_path / "other.log"  # another file of the "tree", as pytest's own report is
    other.write_bytes(b"x" * 3 * BLOCK)
    with open(path, "r+b"), open(other, "ab"):
        yield path


def image(tmp_path: Path, n: int) -> Path:
    folder = tmp_path / f"image-{n}"
    folder.mkdir()
    return folder


def checkpoint(
    saver: FileSaver, folder: Path, *, while_running: bytes = b""
) -> tuple[OpenFile, int]:
    """One checkpoint of this process's data file: its entry and the bytes written
    while frozen. `while_running` is written into the file after the freeze, before
    the copy is finished, as a running job would."""
    saving = saver.save_frozen([os.getpid()], folder)
    (entry,) = [p.entry for p in saving.pending if p.entry.path.endswith("state.dat")]
    if while_running:
        with open(entry.path, "r+b") as f:
            f.write(while_running)
    files = saver.finish(saving)
    saver.committed(saving, folder)
    (done,) = [f for f in files if f.path == entry.path]
    # Of this file only: the test process has other files open (pytest's report).
    return done, saving.frozen_bytes_of(entry.path)


def overwrite(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def test_the_first_copy_is_whole_and_later_ones_copy_only_changed_blocks_frozen(
    tmp_path: Path, data: Path
) -> None:
    saver = FileSaver(copy_max_bytes=1 << 30)
    first, frozen = checkpoint(saver, image(tmp_path, 1))
    assert frozen == data.stat().st_size
    assert first.saved_copy is not None and first.content is None

    overwrite(data, 2 * BLOCK + 10, b"changed in place")
    at_freeze = data.read_bytes()
    folder = image(tmp_path, 2)
    second, frozen = checkpoint(saver, folder, while_running=b"after the freeze")
    assert frozen == BLOCK
    assert second.saved_copy is not None
    assert (folder / second.saved_copy).read_bytes() == at_freeze


@pytest.mark.parametrize("change", ["grow", "shrink", "grow-past-a-block", "empty"])
def test_growth_and_truncation_are_copied_exactly(tmp_path: Path, data: Path, change: str) -> None:
    saver = FileSaver(copy_max_bytes=1 << 30)
    checkpoint(saver, image(tmp_path, 1))
    size = data.stat().st_size
    new_size = {
        "grow": size + 100,
        "shrink": BLOCK + 7,
        "grow-past-a-block": size + BLOCK,
        "empty": 0,
    }[change]
    with open(data, "r+b") as f:
        f.truncate(new_size)
    at_freeze = data.read_bytes()
    folder = image(tmp_path, 2)
    entry, _ = checkpoint(saver, folder)
    assert entry.size == new_size and entry.saved_copy is not None
    assert (folder / entry.saved_copy).read_bytes() == at_freeze


def test_a_damaged_previous_copy_fails_the_checkpoint_loudly(tmp_path: Path, data: Path) -> None:
    saver = FileSaver(copy_max_bytes=1 << 30)
    first_folder = image(tmp_path, 1)
    first, _ = checkpoint(saver, first_folder)
    assert first.saved_copy is not None
    overwrite(first_folder / first.saved_copy, 3 * BLOCK, b"bit rot")
    with pytest.raises(LauncherError, match="damaged at block 3"):
        checkpoint(saver, image(tmp_path, 2))


def test_after_a_restore_the_next_copy_is_a_delta_against_the_restored_image(
    tmp_path: Path, data: Path
) -> None:
    folder = image(tmp_path, 1)
    first, _ = checkpoint(FileSaver(copy_max_bytes=1 << 30), folder)
    assert first.saved_copy is not None
    block, digests = read_digests(folder / (first.saved_copy + filesaver.BLOCKS_SUFFIX))
    assert block == BLOCK and len(digests) == 5

    restarted = FileSaver(copy_max_bytes=1 << 30)  # a new launcher, after the restore
    restarted.adopt([first], folder)
    overwrite(data, 10, b"x")
    later = image(tmp_path, 2)
    entry, frozen = checkpoint(restarted, later)
    assert frozen == BLOCK
    assert entry.saved_copy is not None
    assert (later / entry.saved_copy).read_bytes() == data.read_bytes()


def test_an_older_copy_deleted_between_freeze_and_fill_changes_nothing(
    tmp_path: Path, data: Path
) -> None:
    saver = FileSaver(copy_max_bytes=1 << 30)
    first_folder = image(tmp_path, 1)
    checkpoint(saver, first_folder)
    overwrite(data, 10, b"x")
    at_freeze = data.read_bytes()
    later = image(tmp_path, 2)
    saving = saver.save_frozen([os.getpid()], later)
    shutil.rmtree(first_folder)  # retention, while the tree runs again
    (entry,) = [f for f in saver.finish(saving) if f.path == str(data)]
    assert entry.saved_copy is not None
    assert (later / entry.saved_copy).read_bytes() == at_freeze


def test_a_file_closed_for_one_checkpoint_is_copied_whole_at_the_next(tmp_path: Path) -> None:
    path = tmp_path / "results.h5"
    path.write_bytes(os.urandom(2 * BLOCK))
    saver = FileSaver(copy_max_bytes=1 << 30)
    first_folder = image(tmp_path, 1)
    with open(path, "r+b"):
        saving = saver.save_frozen([os.getpid()], first_folder)
        saver.finish(saving)
        saver.committed(saving, first_folder)
    # Closed at the second checkpoint; retention then deletes the first image.
    second = saver.save_frozen([os.getpid()], image(tmp_path, 2))
    saver.finish(second)
    saver.committed(second, tmp_path / "image-2")
    shutil.rmtree(first_folder)
    with open(path, "r+b"):
        third = saver.save_frozen([os.getpid()], image(tmp_path, 3))
        (entry,) = [f for f in saver.finish(third) if f.path == str(path)]
    assert third.frozen_bytes_of(str(path)) == 2 * BLOCK
    assert entry.saved_copy is not None
    assert (tmp_path / "image-3" / entry.saved_copy).read_bytes() == path.read_bytes()


def test_an_appended_file_over_the_limit_is_checked_by_its_last_block(tmp_path: Path) -> None:
    path = tmp_path / "huge.log"
    path.write_bytes(b"x" * (3 * BLOCK))
    with open(path, "ab"):
        saving = FileSaver(copy_max_bytes=BLOCK).save_frozen([os.getpid()], image(tmp_path, 1))
    (entry,) = [p.entry for p in saving.pending if p.entry.path == str(path)]
    assert entry.saved_copy is None and entry.append
    assert entry.content_from == 2 * BLOCK and entry.content is not None


def test_a_file_over_the_copy_limit_keeps_only_its_content_checksum(
    tmp_path: Path, data: Path
) -> None:
    entry, frozen = checkpoint(FileSaver(copy_max_bytes=BLOCK), image(tmp_path, 1))
    assert entry.saved_copy is None and entry.content is not None
    assert frozen == 0


@pytest.mark.parametrize(
    ("size", "block"),
    [(0, MIN_BLOCK), (4096 * MIN_BLOCK, MIN_BLOCK), (4096 * MIN_BLOCK + 1, 2 * MIN_BLOCK)],
)
def test_block_size_keeps_a_file_within_4096_blocks(size: int, block: int) -> None:
    assert block_size(size) == block


@pytest.mark.parametrize(
    "content", [b"", b"SCKB1\0\0\0" + (1000).to_bytes(8, "little"), b"garbage" * 10]
)
def test_a_malformed_block_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.blocks"
    path.write_bytes(content)
    with pytest.raises(ValueError):
        read_digests(path)
