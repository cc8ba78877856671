from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurm_ckpt.errors import ManifestError
from slurm_ckpt.store.manifest import FORMAT_VERSION, MANIFEST_NAME, FileEntry, Manifest, OpenFile

_names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="/\0"),
    min_size=1,
    max_size=30,
).filter(lambda n: n not in (".", "..", MANIFEST_NAME))
_hex = st.text(alphabet="0123456789abcdef", min_size=1, max_size=64)
_seconds = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)


_printable = st.characters(blacklist_categories=("Cc", "Cs"), max_codepoint=0x7E)


@st.composite
def manifests(draw: st.DrawFn) -> Manifest:
    names = draw(st.lists(_names, unique=True, max_size=6))
    files = tuple(
        FileEntry(name=n, size=draw(st.integers(0, 2**48)), checksum=draw(_hex)) for n in names
    )
    open_files = tuple(
        OpenFile(
            path="/"
            + draw(
                st.text(
                    alphabet=st.characters(codec="utf-8", exclude_characters="\0"),
                    max_size=40,
                )
            ),
            size=draw(st.integers(0, 2**40)),
            append=draw(st.booleans()),
            saved_copy=draw(st.sampled_from([None, *names])),
            content=draw(st.one_of(st.none(), _hex)),
        )
        for _ in range(draw(st.integers(0, 3)))
    )
    return Manifest(
        format_version=FORMAT_VERSION,
        job_id=draw(st.integers(1, 2**32 - 1)),
        seq=draw(st.integers(1, 999_999)),
        uid=draw(st.integers(0, 2**32 - 1)),
        gid=draw(st.integers(0, 2**32 - 1)),
        criu_version=draw(st.text(_printable, min_size=1, max_size=10)),
        kernel=draw(st.text(_printable, min_size=1, max_size=30)),
        created_at=draw(st.datetimes(timezones=st.just(UTC))),
        dump_seconds=draw(_seconds),
        freeze_seconds=draw(_seconds),
        checksum_algorithm=draw(st.sampled_from(["xxh3_128", "sha256"])),
        files=files,
        open_files=open_files,
        restart_count=draw(st.integers(0, 1000)),
    )


@pytest.mark.parametrize(
    ("key", "value"),
    [("criu_version", "4" * 33), ("kernel", "x" * 257), ("kernel", "6.1\x1b]52;c;AAAA\x07")],
)
def test_strings_are_bounded_and_printable(key: str, value: str) -> None:
    doc = _doc()
    doc[key] = value
    with pytest.raises(ManifestError, match=key):
        Manifest.from_json(json.dumps(doc).encode())


def test_deep_nesting_is_refused_not_a_recursion_error() -> None:
    with pytest.raises(ManifestError, match="nested deeper"):
        Manifest.from_json(b"[" * 65536)


def test_sizes_above_the_catalogs_integers_are_refused() -> None:
    doc = _doc()
    doc["files"] = [{"name": "pages-1.img", "size": 2**63, "checksum": "ab"}]
    with pytest.raises(ManifestError, match="size"):
        Manifest.from_json(json.dumps(doc).encode())


@given(manifests())
def test_round_trip(manifest: Manifest) -> None:
    data = manifest.to_json()
    assert Manifest.from_json(data) == manifest
    # Sorted keys: the same manifest always gives the same bytes.
    assert Manifest.from_json(data).to_json() == data
    assert list(json.loads(data)) == sorted(json.loads(data))


def _example() -> Manifest:
    return Manifest(
        format_version=1,
        job_id=12,
        seq=3,
        uid=1000,
        gid=1000,
        criu_version="4.1.1",
        kernel="6.18.0",
        created_at=datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        dump_seconds=0.5,
        freeze_seconds=0.25,
        checksum_algorithm="xxh3_128",
        files=(FileEntry("pages-1.img", 4096, "ab12"), FileEntry("stdout.copy", 10, "cd")),
        open_files=(OpenFile("/home/a/slurm-12.out", 10, True, "stdout.copy"),),
        restart_count=1,
    )


def _doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(_example().to_json())
    return doc


def _parse(doc: object) -> Manifest:
    return Manifest.from_json(json.dumps(doc).encode())


def test_example_parses_and_keeps_utc() -> None:
    parsed = _parse(_doc())
    assert parsed == _example()
    assert parsed.created_at.tzinfo is UTC
    assert parsed.total_size == 4106
    assert parsed.file("stdout.copy") == FileEntry("stdout.copy", 10, "cd")
    assert parsed.file("nope") is None


def test_int_seconds_are_accepted_as_float() -> None:
    doc = _doc()
    doc["dump_seconds"] = 2
    assert _parse(doc).dump_seconds == 2.0


def _set(path: str, value: object) -> dict[str, Any]:
    doc = _doc()
    target: Any = doc
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[int(last) if last.isdigit() else last] = value
    return doc


def _drop(key: str) -> dict[str, Any]:
    doc = _doc()
    del doc[key]
    return doc


BAD_DOCS = {
    "version 2": _set("format_version", 2),
    "version 0": _set("format_version", 0),
    "version string": _set("format_version", "1"),
    "version true": _set("format_version", True),
    "missing seq": _drop("seq"),
    "missing files": _drop("files"),
    "unknown key": _set("extra", 1),
    "job_id string": _set("job_id", "12"),
    "job_id zero": _set("job_id", 0),
    "seq float": _set("seq", 3.0),
    "seq too big": _set("seq", 1_000_000),
    "uid negative": _set("uid", -1),
    "uid bool": _set("uid", False),
    "kernel empty": _set("kernel", ""),
    "criu_version null": _set("criu_version", None),
    "created_at naive": _set("created_at", "2025-01-02T03:04:05"),
    "created_at not utc": _set("created_at", "2025-01-02T03:04:05+02:00"),
    "created_at junk": _set("created_at", "yesterday"),
    "dump_seconds negative": _set("dump_seconds", -0.1),
    "dump_seconds string": _set("dump_seconds", "0.5"),
    "files not list": _set("files", {}),
    "file not object": _set("files.0", "pages-1.img"),
    "file extra key": _set("files.0.mode", 420),
    "file name slash": _set("files.0.name", "a/b"),
    "file name dotdot": _set("files.0.name", ".."),
    "file name dot": _set("files.0.name", "."),
    "file name empty": _set("files.0.name", ""),
    "file name manifest": _set("files.0.name", MANIFEST_NAME),
    "file name nul": _set("files.0.name", "a\0"),
    "file name twice": _set("files.1.name", "pages-1.img"),
    "file size negative": _set("files.0.size", -1),
    "file checksum upper": _set("files.0.checksum", "AB12"),
    "file checksum empty": _set("files.0.checksum", ""),
    "open path relative": _set("open_files.0.path", "out.txt"),
    "open append int": _set("open_files.0.append", 1),
    "open saved copy escapes": _set("open_files.0.saved_copy", "../x"),
    "open saved copy unlisted": _set("open_files.0.saved_copy", "other"),
    "open content not hex": _set("open_files.0.content", "not a checksum"),
    "open content number": _set("open_files.0.content", 12),
    "open unknown key": _set("open_files.0.digest", "ab"),
    "open missing size": {
        **_doc(),
        "open_files": [{"path": "/a", "append": False, "saved_copy": None}],
    },
    "top level list": [1],
}


@pytest.mark.parametrize("doc", BAD_DOCS.values(), ids=BAD_DOCS.keys())
def test_strict_rejection(doc: object) -> None:
    with pytest.raises(ManifestError) as info:
        _parse(doc)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "data", [b"", b"{", b"\xff\xfe", b'{"format_version": NaN}', b"null", b"[]"]
)
def test_rejects_non_manifest_bytes(data: bytes) -> None:
    with pytest.raises(ManifestError):
        Manifest.from_json(data)


def test_nan_seconds_cannot_be_written() -> None:
    with pytest.raises(ManifestError):
        replace(_example(), dump_seconds=float("nan"))


def test_naive_or_non_utc_created_at_cannot_be_built() -> None:
    with pytest.raises(ManifestError):
        replace(_example(), created_at=datetime(2025, 1, 1))
    with pytest.raises(ManifestError):
        replace(_example(), created_at=datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=1))))
