"""CRIU backend: talks to `criu swrk` over its RPC socket, with pycriu's messages.

pycriu's own client cannot answer CRIU's notifications, and the post-dump
notification is the one moment the tree is dumped but still frozen: the launcher
records the sizes of files open for writing there. So this module runs `criu
swrk` itself: a SOCK_SEQPACKET pair, one protobuf message per packet.

CRIU runs unprivileged (the binary carries only cap_checkpoint_restore), with
its standard streams on /dev/null so it can never write into the job's output,
and cgroups ignored (unprivileged CRIU cannot manage them).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from slurm_ckpt.dump.base import Capabilities, DumpStats, FrozenHook, ImageInfo, RestoreResult
from slurm_ckpt.errors import DumperUnavailable, DumpFailed, RestoreFailed

log = logging.getLogger(__name__)

_MAX_MESSAGE = 1 << 20  # CRIU's responses are a few hundred bytes
_LOG_LEVEL = 4  # CRIU's most detailed level: the log is the only trace of a failure
_MAX_GHOST_LIMIT = (1 << 32) - 1  # a uint32 in CRIU's RPC


def _rpc() -> Any:
    """pycriu's message module, imported on use: importing slurm_ckpt never needs CRIU."""
    try:
        from pycriu import rpc_pb2
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise DumperUnavailable("criu", f"pycriu does not import ({exc})") from exc
    return rpc_pb2


def tree_pids(root: int) -> list[int]:
    """The pids of the process tree rooted at `root`, root first."""
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
            except (FileNotFoundError, ProcessLookupError):
                continue  # the task ended meanwhile
    return pids


_LOG_TAIL = 1 << 20  # the end of a log is where the failing step wrote its error
# The lines CRIU writes after the failing step's own error, which say that it
# failed but not why: its summary, a task's exit or kill, a wrapper's "failed with".
_CONSEQUENCES = re.compile(
    r"(Dumping|Restoring|Pre-dumping) FAILED"
    r"|\b\d+ exited, status=-?\d+"
    r"|\b\d+ killed by signal \d+"
    r"|Killing processes because of failure"
    r"|failed with -?\d+\.?$"
)
_CONTEXT_LINES = 3  # the errors just before the cause, as they say what led to it
_LINE_CHARS = 200  # of each error line: the reason is one line in a table


def _message(line: str) -> str:
    # "(00.012345) Error (criu/sk-inet.c:189): inet: Connected TCP socket, ..."
    _, _, message = line.partition("): ")
    return (message or line).strip()[:_LINE_CHARS]


def log_reason(path: Path) -> str:
    """Why CRIU failed, from its log: the last error before its closing summary,
    preceded by the errors just before it; '' when the log holds no error.

    Not CRIU's cr_errmsg: that is the first error of the run, and CRIU logs errors
    it goes past (while scanning the network namespace, say) long before the one
    that stops it."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - _LOG_TAIL))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [_message(line) for line in lines if "Error (" in line]
    errors = [e for e in errors if not _CONSEQUENCES.search(e)] or errors
    if not errors:
        return ""
    cause, before = errors[-1], errors[-1 - _CONTEXT_LINES : -1]
    earlier = [e for e in dict.fromkeys(before) if e != cause]
    return cause + (f" (after: {'; '.join(earlier)})" if earlier else "")


# compel's task states (compel/include/uapi/task-state.h): a zombie's core says
# DEAD. pycriu names some states and leaves others as numbers, so both forms count.
_TASK_DEAD = (2, "Dead")


def _core(criu_images: Any, images: Path, tid: int) -> dict[str, Any]:
    with open(images / f"core-{tid}.img", "rb") as f:
        entry: dict[str, Any] = criu_images.load(f)["entries"][0]
    return entry


def _is_zombie(core: dict[str, Any]) -> bool:
    return core.get("tc", {}).get("task_state") in _TASK_DEAD


class _Swrk:
    """One `criu swrk` process and its socket."""

    def __init__(self, binary: Path, pass_fds: tuple[int, ...], timeout: float) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [str(binary), "swrk", str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(), *pass_fds),
                # The launcher blocks the signals it waits for; CRIU must not inherit that.
                preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_SETMASK, ()),
            )
        except OSError as exc:
            ours.close()
            raise DumperUnavailable("criu", f"cannot run {binary}: {exc.strerror}") from exc
        finally:
            theirs.close()
        self.sock = ours
        self.sock.settimeout(timeout)
        self.timeout = timeout

    def send(self, message: Any) -> None:
        self.sock.send(message.SerializeToString())

    def receive(self) -> Any:
        data = self.sock.recv(_MAX_MESSAGE)
        if not data:
            raise ConnectionError("criu closed the connection")
        resp = _rpc().criu_resp()
        resp.ParseFromString(data)
        return resp

    def close(self) -> None:
        self.sock.close()
        try:
            self.proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def _open_dir(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_DIRECTORY | os.O_RDONLY)
    try:
        yield fd
    finally:
        os.close(fd)


@contextmanager
def _open_folders(
    images: Path, log_file: Path, error: type[DumpFailed | RestoreFailed]
) -> Iterator[tuple[int, int]]:
    """The images folder and the log's, open for CRIU; one that cannot be opened is `error`."""
    with ExitStack() as stack:
        fds = []
        for path in (images, log_file.parent):
            try:
                fds.append(stack.enter_context(_open_dir(path)))
            except OSError as exc:
                raise error(f"cannot open {path}: {exc.strerror}") from exc
        yield fds[0], fds[1]


class CriuDumper:
    """Dump and restore through `criu swrk`, unprivileged, with --leave-running dumps."""

    name = "criu"

    def __init__(
        self,
        binary: Path,
        *,
        unprivileged: bool = True,
        timeout: float = 600,
        file_locks: bool = True,
        ghost_limit: int = 1 << 20,
    ) -> None:
        self.binary = binary
        self.unprivileged = unprivileged
        self.timeout = timeout
        self.file_locks = file_locks
        self.ghost_limit = min(ghost_limit, _MAX_GHOST_LIMIT)

    def _options(self, images_fd: int, work_fd: int, log_file: str) -> Any:
        rpc = _rpc()
        opts = rpc.criu_opts()
        opts.images_dir_fd = images_fd
        opts.work_dir_fd = work_fd
        opts.log_file = log_file
        opts.log_level = _LOG_LEVEL
        opts.unprivileged = self.unprivileged
        opts.manage_cgroups = True
        opts.manage_cgroups_mode = rpc.IGNORE
        # Dumped with the tree and taken again by the restored tasks before they run.
        opts.file_locks = self.file_locks
        # A file deleted while open (a scratch file) is saved into the image up to this size.
        opts.ghost_limit = self.ghost_limit
        return opts

    def _call(self, request: Any, pass_fds: tuple[int, ...], on_notify: Any = None) -> Any:
        """Send one request, answer CRIU's notifications, return the final response."""
        rpc = _rpc()
        swrk = _Swrk(self.binary, pass_fds, self.timeout)
        try:
            swrk.send(request)
            while True:
                resp = swrk.receive()
                if resp.type != rpc.NOTIFY:
                    return resp
                ok = True
                if on_notify is not None:
                    ok = on_notify(resp.notify.script)
                swrk.send(rpc.criu_req(type=rpc.NOTIFY, notify_success=ok))
        finally:
            swrk.close()

    def capabilities(self) -> Capabilities:
        try:
            rpc = _rpc()
            if not os.access(self.binary, os.X_OK):
                return Capabilities(False, "", False, f"{self.binary} is not executable")
            with _open_dir(Path("/")) as root_fd:
                version = self._call(rpc.criu_req(type=rpc.VERSION), (root_fd,))
                features = rpc.criu_req(type=rpc.FEATURE_CHECK)
                features.features.mem_track = True
                probe = self._call(features, (root_fd,))
        except (DumperUnavailable, OSError) as exc:
            return Capabilities(False, "", False, str(exc))
        v = version.version
        text = f"{v.major_number}.{v.minor_number}" + (f".{v.sublevel}" if v.sublevel else "")
        incremental = bool(probe.success and probe.features.mem_track)
        reason = "" if incremental else "the kernel has no memory dirty tracking: full dumps"
        return Capabilities(True, text, incremental, reason)

    def dump(
        self, pid: int, images: Path, *, log_file: Path, on_frozen: FrozenHook | None = None
    ) -> DumpStats:
        rpc = _rpc()
        marks: dict[str, float] = {}
        hook_error: list[BaseException] = []

        def on_notify(script: str) -> bool:
            marks[script] = time.monotonic()
            if script == "post-dump" and on_frozen is not None:
                try:
                    on_frozen(tree_pids(pid))
                except Exception as exc:  # noqa: BLE001 - reported as the dump's failure
                    hook_error.append(exc)
                    return False
            return True

        started = time.monotonic()
        with _open_folders(images, log_file, DumpFailed) as (images_fd, log_fd):
            opts = self._options(images_fd, log_fd, log_file.name)
            opts.pid = pid
            opts.leave_running = True
            opts.notify_scripts = True
            request = rpc.criu_req(type=rpc.DUMP, opts=opts)
            try:
                resp = self._call(request, (images_fd, log_fd), on_notify)
            except (OSError, ConnectionError) as exc:
                raise DumpFailed(f"lost contact with criu: {exc}") from exc
        ended = time.monotonic()
        if hook_error:
            raise DumpFailed(f"recording the frozen tree failed: {hook_error[0]}")
        if not resp.success:
            reason = log_reason(log_file) or resp.cr_errmsg or f"errno {resp.cr_errno}"
            raise DumpFailed(reason, log=str(log_file))
        frozen = marks.get("post-dump", ended) - marks.get("pre-dump", started)
        return DumpStats(seconds=ended - started, frozen_seconds=max(frozen, 0.0))

    def inspect(self, images: Path) -> ImageInfo:
        try:
            from pycriu import images as criu_images
        except ImportError as exc:  # pragma: no cover - depends on the machine
            raise DumperUnavailable("criu", f"pycriu does not import ({exc})") from exc
        try:
            with open(images / "pstree.img", "rb") as f:
                tree = criu_images.load(f)["entries"]
            pids: list[int] = []
            uids: set[int] = set()
            gids: set[int] = set()
            for entry in tree:
                pid = int(entry["pid"])
                if _is_zombie(_core(criu_images, images, pid)):
                    # Restored as a task that exits at once: it needs its pid and has
                    # no credentials. Its "threads" hold a stray number, not a tid.
                    pids.append(pid)
                    continue
                for tid in (int(t) for t in entry.get("threads", [pid])):
                    pids.append(tid)
                    # Every thread has its own credentials.
                    creds = _core(criu_images, images, tid)["thread_core"]["creds"]
                    uids.update(int(creds[k]) for k in ("uid", "euid", "suid", "fsuid"))
                    gids.update(int(creds[k]) for k in ("gid", "egid", "sgid", "fsgid"))
        except (OSError, KeyError, ValueError, TypeError, criu_images.MagicException) as exc:
            raise RestoreFailed(f"cannot read the images in {images}: {exc}") from exc
        return ImageInfo(pids=tuple(pids), uids=frozenset(uids), gids=frozenset(gids))

    def restore(self, images: Path, *, log_file: Path) -> RestoreResult:
        rpc = _rpc()
        started = time.monotonic()
        with _open_folders(images, log_file, RestoreFailed) as (images_fd, log_fd):
            opts = self._options(images_fd, log_fd, log_file.name)
            # The restored root becomes our child, so we can wait for it.
            opts.rst_sibling = True
            request = rpc.criu_req(type=rpc.RESTORE, opts=opts)
            try:
                resp = self._call(request, (images_fd, log_fd))
            except (OSError, ConnectionError) as exc:
                raise RestoreFailed(f"lost contact with criu: {exc}") from exc
        if not resp.success:
            reason = log_reason(log_file) or resp.cr_errmsg or f"errno {resp.cr_errno}"
            raise RestoreFailed(reason, log=str(log_file))
        return RestoreResult(pid=resp.restore.pid, seconds=time.monotonic() - started)
