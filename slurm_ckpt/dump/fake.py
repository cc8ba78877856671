"""A fake dump backend for unit tests of the launcher's own logic.

It saves nothing of the process: `dump` writes a small file naming the tree's
pids and credentials, and `restore` reads it back and reports the saved root's
pid, as CRIU restores the same pids, without starting anything. It raises what
the Protocol says a backend raises (tests/contract/test_dumpers.py holds it to
the same contract as CRIU). Never used outside tests; selected by name "fake".
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from slurm_ckpt.dump.base import Capabilities, DumpStats, FrozenHook, ImageInfo, RestoreResult
from slurm_ckpt.dump.criu import tree_pids
from slurm_ckpt.errors import DumpFailed, RestoreFailed

FAKE_IMAGE = "fake.img"


class FakeDumper:
    """Records calls; fails on demand."""

    name = "fake"

    def __init__(self, *, fail_dump: str | None = None, fail_restore: str | None = None) -> None:
        self.fail_dump = fail_dump
        self.fail_restore = fail_restore
        self.dumped: list[int] = []
        self.restored: list[Path] = []
        self.restored_pid: int | None = None  # what the last restore returned

    def capabilities(self) -> Capabilities:
        return Capabilities(True, "fake-1", False, "the fake backend saves no memory")

    def dump(
        self, pid: int, images: Path, *, log_file: Path, on_frozen: FrozenHook | None = None
    ) -> DumpStats:
        if self.fail_dump:
            raise DumpFailed(self.fail_dump)
        pids = tree_pids(pid)
        if on_frozen is not None:
            try:
                on_frozen(pids)
            except Exception as exc:  # noqa: BLE001 - reported as the dump's failure, as CRIU's
                raise DumpFailed(f"recording the frozen tree failed: {exc}") from exc
        saved = {"pids": pids, "uid": os.getuid(), "gid": os.getgid()}
        try:
            (images / FAKE_IMAGE).write_text(json.dumps(saved))
        except OSError as exc:
            raise DumpFailed(f"cannot write {images / FAKE_IMAGE}: {exc.strerror}") from exc
        self.dumped.append(pid)
        return DumpStats(seconds=0.0, frozen_seconds=0.0)

    def inspect(self, images: Path) -> ImageInfo:
        try:
            saved = json.loads((images / FAKE_IMAGE).read_text())
            info = ImageInfo(
                pids=tuple(int(p) for p in saved["pids"]),
                uids=frozenset({int(saved["uid"])}),
                gids=frozenset({int(saved["gid"])}),
            )
            if not info.pids:
                raise ValueError("no process saved")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RestoreFailed(f"cannot read {images / FAKE_IMAGE}: {exc}") from exc
        return info

    def restore(self, images: Path, *, log_file: Path) -> RestoreResult:
        if self.fail_restore:
            raise RestoreFailed(self.fail_restore)
        root = self.inspect(images).pids[0]
        self.restored.append(images)
        self.restored_pid = root
        return RestoreResult(pid=root, seconds=0.0)
