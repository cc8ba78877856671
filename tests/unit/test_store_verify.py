from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from slurm_ckpt.errors import BadImageList, BadPath, ImageCorrupt, StoreError
from slurm_ckpt.store.layout import JobDir
from slurm_ckpt.store.manifest import MANIFEST_NAME, Manifest
from slurm_ckpt.store.verify import published_images, verify_checkpoint, write_published_images
from slurm_ckpt.store.writer import begin_checkpoint, commit_checkpoint

from .store_helpers import ME, make_job

DATA = {"pages-1.img": os.urandom(20000), "core-1.img": b"core data"}


@pytest.fixture
def image(tmp_path: Path) -> tuple[Path, Manifest]:
    job = make_job(tmp_path, 5)
    staging = begin_checkpoint(job, 3)
    for name, data in DATA.items():
        (staging / name).write_bytes(data)
    return commit_checkpoint(
        job,
        staging,
        seq=3,
        uid=1,
        gid=1,
        criu_version="4.1.1",
        kernel="6.18",
        dump_seconds=0.1,
        freeze_seconds=0.05,
    )


def test_good_image_verifies_both_ways(image: tuple[Path, Manifest]) -> None:
    path, manifest = image
    assert verify_checkpoint(path) == manifest
    seen: list[tuple[int, int]] = []
    assert (
        verify_checkpoint(path, read_data=True, progress=lambda d, t: seen.append((d, t)))
        == manifest
    )
    total = sum(len(d) for d in DATA.values())
    assert seen[-1] == (total, total)


def _corrupt(path: Path, match: str, *, read_data: bool = False) -> None:
    with pytest.raises(ImageCorrupt, match=match) as info:
        verify_checkpoint(path, read_data=read_data)
    assert info.value.path == str(path)
    assert "\n" not in str(info.value)


def test_missing_file(image: tuple[Path, Manifest]) -> None:
    path, _ = image
    (path / "core-1.img").unlink()
    _corrupt(path, "core-1.img: missing")


def test_size_change(image: tuple[Path, Manifest]) -> None:
    path, _ = image
    with (path / "pages-1.img").open("ab") as f:
        f.write(b"more")
    _corrupt(path, "pages-1.img: size 20004")


def test_flipped_byte_found_only_when_reading_data(image: tuple[Path, Manifest]) -> None:
    path, manifest = image
    data = bytearray((path / "pages-1.img").read_bytes())
    data[12345] ^= 0x01
    (path / "pages-1.img").write_bytes(bytes(data))
    assert verify_checkpoint(path) == manifest
    _corrupt(path, "pages-1.img: checksum mismatch", read_data=True)


def test_extra_file(image: tuple[Path, Manifest]) -> None:
    path, _ = image
    (path / "stray.img").write_bytes(b"")
    _corrupt(path, "stray.img: not listed")


def test_listed_file_replaced_by_symlink(image: tuple[Path, Manifest]) -> None:
    path, _ = image
    target = path.parent / "elsewhere"
    (path / "core-1.img").rename(target)
    (path / "core-1.img").symlink_to(target)
    _corrupt(path, "core-1.img: not a regular file")


@pytest.mark.parametrize(
    "content",
    [b"", b"{}", b"not json", b'{"format_version": 2}'],
    ids=["empty", "obj", "junk", "v2"],
)
def test_bad_manifest(image: tuple[Path, Manifest], content: bytes) -> None:
    path, _ = image
    (path / MANIFEST_NAME).write_bytes(content)
    _corrupt(path, MANIFEST_NAME)


def test_missing_manifest(image: tuple[Path, Manifest]) -> None:
    path, _ = image
    (path / MANIFEST_NAME).unlink()
    _corrupt(path, f"{MANIFEST_NAME}: missing")


def test_manifest_of_another_seq(image: tuple[Path, Manifest]) -> None:
    path, _ = image
    moved = path.parent / "000004"
    path.rename(moved)
    _corrupt(moved, "says seq 3")


def test_group_writable_folder(image: tuple[Path, Manifest]) -> None:
    path, _ = image
    os.chmod(path, 0o770)
    _corrupt(path, "writable by group")


def test_unknown_algorithm_fails_only_data_check(image: tuple[Path, Manifest]) -> None:
    path, manifest = image
    doc = json.loads((path / MANIFEST_NAME).read_bytes())
    doc["checksum_algorithm"] = "md5"
    (path / MANIFEST_NAME).write_bytes(json.dumps(doc).encode())
    assert verify_checkpoint(path).checksum_algorithm == "md5"
    _corrupt(path, "md5", read_data=True)


def test_not_a_folder(tmp_path: Path) -> None:
    _corrupt(tmp_path / "000001", "folder: missing")
    (tmp_path / "000002").write_text("")
    _corrupt(tmp_path / "000002", "not a folder")


def test_published_images_round_trip(tmp_path: Path) -> None:
    job = make_job(tmp_path, 5)
    assert published_images(job) == []
    write_published_images(job, [2, 9, 4])
    assert published_images(job) == [9, 4, 2]
    assert json.loads(job.images_list.read_bytes()) == {
        "job_id": 5,
        "images": [{"seq": 9}, {"seq": 4}, {"seq": 2}],
    }
    assert job.images_list.stat().st_mode & 0o777 == 0o600
    write_published_images(job, [])
    assert published_images(job) == []


def test_published_images_written_by_the_caller(tmp_path: Path) -> None:
    job = make_job(tmp_path, 5)
    write_published_images(job, [1])
    assert job.images_list.stat().st_uid == os.geteuid()
    assert published_images(job) == [1]


@pytest.mark.parametrize("seqs", [[0], [1, 1], [1_000_000], [-2]])
def test_write_published_images_refuses_bad_seqs(tmp_path: Path, seqs: list[int]) -> None:
    job = make_job(tmp_path, 5)
    with pytest.raises(BadPath):
        write_published_images(job, seqs)
    assert not job.images_list.exists()


BAD_LISTS = {
    "junk": b"nope",
    "nan": b'{"job_id": 5, "images": [{"seq": NaN}]}',
    "list": b"[]",
    "other job": b'{"job_id": 6, "images": []}',
    "job id string": b'{"job_id": "5", "images": []}',
    "job id true": b'{"job_id": true, "images": []}',
    "missing images": b'{"job_id": 5}',
    "extra key": b'{"job_id": 5, "images": [], "x": 1}',
    "images object": b'{"job_id": 5, "images": {}}',
    "entry int": b'{"job_id": 5, "images": [3]}',
    "seq string": b'{"job_id": 5, "images": [{"seq": "3"}]}',
    "seq zero": b'{"job_id": 5, "images": [{"seq": 0}]}',
    "seq float": b'{"job_id": 5, "images": [{"seq": 3.0}]}',
    "seq bool": b'{"job_id": 5, "images": [{"seq": true}]}',
    "path key": b'{"job_id": 5, "images": [{"seq": 3, "path": "../../etc"}]}',
    "oldest first": b'{"job_id": 5, "images": [{"seq": 1}, {"seq": 2}]}',
    "repeat": b'{"job_id": 5, "images": [{"seq": 2}, {"seq": 2}]}',
    "bad utf8": b"\xff",
}


@pytest.mark.parametrize("content", BAD_LISTS.values(), ids=BAD_LISTS.keys())
def test_published_images_rejects_malformed(tmp_path: Path, content: bytes) -> None:
    job = make_job(tmp_path, 5)
    job.images_list.write_bytes(content)
    with pytest.raises(BadImageList) as info:
        published_images(job)
    assert "\n" not in str(info.value)


def test_published_images_refuses_a_symlink(tmp_path: Path) -> None:
    job = make_job(tmp_path, 5)
    (tmp_path / "planted").write_text('{"job_id": 5, "images": [{"seq": 1}]}')
    job.images_list.symlink_to(tmp_path / "planted")
    with pytest.raises(StoreError):
        published_images(job)


def test_published_images_of_missing_job_folder(tmp_path: Path) -> None:
    assert published_images(JobDir(tmp_path, ME, 5)) == []
