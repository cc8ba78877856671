"""A fake dump backend for unit tests of the launcher's own logic.

It saves nothing of the process: `dump` writes a small file naming the pid and
`restore` only returns the pid the test chose. Never used
outside tests; selected by name "fake".
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from slurm_ckpt.dump.base import Capabilities, DumpStats, FrozenHook, ImageInfo, RestoreResult
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
        self.restored_pid = 4242

    def capabilities(self) -> Capabilities:
        return Capabilities(True, "fake-1", False, "the fake backend saves no memory")

    def dump(
        self, pid: int, images: Path, *, log_file: Path, on_frozen: FrozenHook | None = None
    ) -> DumpStats:
        if self.fail_dump:
            raise DumpFailed(self.fail_dump)
        if on_frozen is not None:
            on_frozen([pid])
        (images / FAKE_IMAGE).write_text(json.dumps({"pid": pid, "uid": os.getuid()}))
        self.dumped.append(pid)
        return DumpStats(seconds=0.0, frozen_seconds=0.0)

    def inspect(self, images: Path) -> ImageInfo:
        try:
            saved = json.loads((images / FAKE_IMAGE).read_text())
        except (OSError, ValueError) as exc:
            raise RestoreFailed(f"cannot read {images / FAKE_IMAGE}: {exc}") from exc
        return ImageInfo(
            pids=(int(saved["pid"]),),
            uids=frozenset({int(saved["uid"])}),
            gids=frozenset({os.getgid()}),
        )

    def restore(self, images: Path, *, log_file: Path) -> RestoreResult:
        if self.fail_restore:
            raise RestoreFailed(self.fail_restore)
        self.restored.append(images)
        return RestoreResult(pid=self.restored_pid, seconds=0.0)
