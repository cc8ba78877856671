"""The one reader of bytes that a job's user wrote: bounded, never blocking, never following.

Everything in a job's folder (results, restart reports, manifests, images)
was written by the job's user, or could have been replaced by them. Reading it
goes through here: the file is opened relative to a folder descriptor without
following a symlink and without blocking (a FIFO or a device never stalls the
reader), must be a regular file owned by the expected uid (checked on the
descriptor, so a swap after the check changes nothing), and is read up to a
cap. JSON is parsed only after its nesting was bounded (deep nesting would
raise RecursionError, which nothing expects), and values taken from it are
bounded before they reach the catalog or a screen.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import unicodedata
from typing import Any

from slurm_ckpt.errors import StoreError

# Flags for every open of a user-written file: no symlink, no controlling tty,
# no blocking on a FIFO, not inherited by children.
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

MAX_DEPTH = 32  # our documents nest three levels deep
MAX_TEXT = 2000  # characters of a reason kept for the catalog and for display
MAX_INT = 2**63 - 1  # the catalog's BIGINT

# C0 and C1 control characters and DEL: escape sequences must never reach a terminal.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
_HIDDEN_CATEGORIES = frozenset({"Cf", "Cs", "Co", "Zl", "Zp"})
_SHOWN_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]+")
# A JSON string (skipped whole) or one bracket.
_BRACKET_RE = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]')


class Untrusted(StoreError):
    """A user-written file is not what it must be (symlink, FIFO, too big, malformed)."""


def open_regular(dir_fd: int | None, name: str, *, owner: int | None) -> int | None:
    """Open `name` in `dir_fd` (or a path, with None) for reading, safely; None
    when it does not exist.

    Raises Untrusted for a symlink, anything but a regular file, or a file not
    owned by `owner` (when given); StoreError for other failures.
    """
    try:
        fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise Untrusted(f"{name} is a symlink") from err
        raise StoreError(f"cannot open {name}: {err.strerror or err}") from err
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Untrusted(f"{name} is not a regular file")
        if owner is not None and st.st_uid != owner:
            raise Untrusted(f"{name} is owned by uid {st.st_uid}, not {owner}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_capped(fd: int, limit: int, name: str) -> bytes:
    """Read at most `limit` bytes from `fd`; Untrusted when there is more."""
    chunks = []
    left = limit + 1
    while left > 0:
        try:
            chunk = os.read(fd, min(left, 1 << 20))
        except BlockingIOError:
            break  # only regular files get here, but never wait on anything
        except OSError as err:
            raise StoreError(f"cannot read {name}: {err.strerror or err}") from err
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    data = b"".join(chunks)
    if len(data) > limit:
        raise Untrusted(f"{name} is larger than {limit} bytes")
    return data


def read_file(dir_fd: int | None, name: str, limit: int, *, owner: int | None) -> bytes | None:
    """The content of a user-written file (see open_regular); None when missing."""
    fd = open_regular(dir_fd, name, owner=owner)
    if fd is None:
        return None
    try:
        return read_capped(fd, limit, name)
    finally:
        os.close(fd)


def open_dir(dir_fd: int | None, name: str, *, owner: int | None) -> int | None:
    """Open folder `name` (relative to `dir_fd`, or a path) without following a
    symlink; None when it does not exist. Untrusted when it is a symlink, not
    a folder, or not owned by `owner`."""
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            raise Untrusted(f"{name} is a symlink or not a folder") from err
        raise StoreError(f"cannot open {name}: {err.strerror or err}") from err
    try:
        if owner is not None and (uid := os.fstat(fd).st_uid) != owner:
            raise Untrusted(f"{name} is owned by uid {uid}, not {owner}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def loads(data: bytes, what: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON written by a user. Raises Untrusted for anything malformed,
    nested deeper than `max_depth`, or holding NaN/Infinity."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise Untrusted(f"{what}: not UTF-8") from err
    if nesting(text, max_depth) > max_depth:
        raise Untrusted(f"{what}: nested deeper than {max_depth} levels")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as err:
        raise Untrusted(f"{what}: not valid JSON") from err


def nesting(text: str, stop: int = MAX_DEPTH) -> int:
    """The deepest nesting of [ and { outside strings, up to `stop` + 1 (it stops
    counting there, so a file of a million brackets costs nothing)."""
    depth = deepest = 0
    for match in _BRACKET_RE.finditer(text):
        char = match.group()
        if char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > stop:
                    break
        elif char in "]}":
            depth -= 1
    return deepest


def text(value: object, limit: int = MAX_TEXT) -> str:
    """A one-line, printable, bounded rendering of `value` for the catalog or a screen."""
    shown = value if isinstance(value, str) else repr(value)
    shown = _invisible(_CONTROL_RE.sub(" ", shown[: limit * 2]), " ").strip()
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def printable(value: str) -> str:
    """`value` with every control character but newline and tab shown as "?": what
    reaches a terminal never starts an escape sequence (the length is kept, so
    aligned tables stay aligned)."""
    return _invisible(_SHOWN_CONTROL_RE.sub(lambda m: "?" * len(m.group()), value), "?")


def _invisible(value: str, replacement: str) -> str:
    """Replace what a terminal shows as something else: format characters (bidi
    overrides, zero widths), surrogates, private use, line and paragraph separators."""
    if value.isascii():
        return value
    return "".join(
        replacement if unicodedata.category(c) in _HIDDEN_CATEGORIES else c for c in value
    )


def has_control(value: str) -> bool:
    """True when `value` holds a control character (an escape sequence's start)."""
    return _CONTROL_RE.search(value) is not None


def integer(value: object, *, minimum: int = 0, maximum: int = MAX_INT) -> int | None:
    """`value` when it is an int (not a bool) within bounds, else None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if minimum <= value <= maximum else None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")
