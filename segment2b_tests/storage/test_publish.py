"""Write-once publish: atomic, idempotent re-emit, 080 on new bytes, replace on new version."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from segment2b.errors import SegmentError
from segment2b.storage.digests import sha256_bytes
from segment2b.storage.home import StorageHome
from segment2b.storage.publish import (
    HashingWriter,
    _previous_version,
    publish_file,
    publish_folder,
    publish_stream,
)


@pytest.fixture
def home(tmp_path: Path) -> StorageHome:
    return StorageHome(root=tmp_path / "home", policy_root=tmp_path / "policies")


def test_file_publish_then_idempotent(home: StorageHome) -> None:
    target = home.root / "data" / "x.json"
    first = publish_file(home, target, b"abc", prefix="2B-S9", dataset_id="x", input_version="v1")
    again = publish_file(home, target, b"abc", prefix="2B-S9", dataset_id="x", input_version="v1")
    assert (first.outcome, again.outcome) == ("published", "idempotent")
    assert target.read_bytes() == b"abc"
    assert not [p for p in target.parent.iterdir() if p.name.startswith("_tmp.")]


def test_file_different_bytes_same_version_is_080(home: StorageHome) -> None:
    target = home.root / "data" / "x.json"
    publish_file(home, target, b"abc", prefix="2B-S9", dataset_id="x", input_version="v1")
    with pytest.raises(SegmentError) as exc:
        publish_file(home, target, b"abd", prefix="2B-S9", dataset_id="x", input_version="v1")
    assert exc.value.code == "2B-S9-080"
    assert target.read_bytes() == b"abc"


def test_new_input_version_replaces_working_output(home: StorageHome) -> None:
    target = home.root / "data" / "x.json"
    publish_file(home, target, b"abc", prefix="2B-S9", dataset_id="x", input_version="v1")
    res = publish_file(home, target, b"xyz", prefix="2B-S9", dataset_id="x", input_version="v2")
    assert res.outcome == "replaced"
    assert target.read_bytes() == b"xyz"


def test_immutable_evidence_is_never_replaced(home: StorageHome) -> None:
    target = home.root / "data" / "bundle"
    publish_folder(
        home,
        target,
        lambda s: (s / "a").write_bytes(b"1"),
        prefix="2B-S8",
        state="s8",
        dataset_id="b",
        input_version="v1",
        immutable=True,
    )
    with pytest.raises(SegmentError) as exc:
        publish_folder(
            home,
            target,
            lambda s: (s / "a").write_bytes(b"2"),
            prefix="2B-S8",
            state="s8",
            dataset_id="b",
            input_version="v2",
            immutable=True,
        )
    assert exc.value.code == "2B-S8-080"
    assert (target / "a").read_bytes() == b"1"
    assert not list(home.tmp.glob("s8_*"))


def test_failed_writer_leaves_no_partial_output(home: StorageHome) -> None:
    target = home.root / "data" / "folder"

    def boom(stage: Path) -> None:
        (stage / "half").write_bytes(b"x")
        raise RuntimeError("writer failed")

    with pytest.raises(RuntimeError):
        publish_folder(home, target, boom, prefix="2B-S1", state="s1", dataset_id="f")
    assert not target.exists()
    assert not list(home.tmp.iterdir())


def _chunks(*parts: bytes) -> Callable[[HashingWriter], None]:
    def write(sink: HashingWriter) -> None:
        for part in parts:
            sink.write(part)

    return write


def test_stream_publish_matches_file_protocol(home: StorageHome) -> None:
    target = home.root / "data" / "r.jsonl"
    kw = {"prefix": "UW", "dataset_id": "r"}
    first = publish_stream(home, target, _chunks(b"ab", b"c"), input_version="v1", **kw)
    again = publish_stream(home, target, _chunks(b"a", b"bc"), input_version="v1", **kw)
    assert (first.outcome, again.outcome) == ("published", "idempotent")
    assert (first.digest, first.bytes) == (sha256_bytes(b"abc"), 3)
    assert target.read_bytes() == b"abc"
    with pytest.raises(SegmentError) as exc:
        publish_stream(home, target, _chunks(b"abd"), input_version="v1", **kw)
    assert exc.value.code == "UW-080"
    assert target.read_bytes() == b"abc"
    res = publish_stream(home, target, _chunks(b"xyz"), input_version=lambda d: d, **kw)
    assert res.outcome == "replaced"
    assert target.read_bytes() == b"xyz"
    assert _previous_version(home, target) == sha256_bytes(b"xyz")
    assert not [p for p in target.parent.iterdir() if p.name.startswith("_tmp.")]


def test_stream_writer_failure_leaves_nothing_and_keeps_the_target(home: StorageHome) -> None:
    target = home.root / "data" / "r.jsonl"
    kw = {"prefix": "UW", "dataset_id": "r"}
    publish_stream(home, target, _chunks(b"abc"), input_version="v1", **kw)

    def fails_midway(sink: HashingWriter) -> None:
        sink.write(b"partial")
        raise ValueError("serialiser broke")

    with pytest.raises(ValueError):
        publish_stream(home, target, fails_midway, input_version="v2", **kw)
    assert target.read_bytes() == b"abc"
    assert not [p for p in target.parent.iterdir() if p.name.startswith("_tmp.")]


def test_stream_io_error_is_082(home: StorageHome) -> None:
    target = home.root / "data" / "new.jsonl"

    def disk_full(sink: HashingWriter) -> None:
        sink.write(b"x")
        raise OSError(28, "No space left on device")

    with pytest.raises(SegmentError) as exc:
        publish_stream(home, target, disk_full, prefix="UW", dataset_id="r")
    assert exc.value.code == "UW-082"
    assert not target.exists()
    assert not [p for p in target.parent.iterdir() if p.name.startswith("_tmp.")]


def test_folder_fresh_publish_without_hashing_still_compares_an_existing_target(
    home: StorageHome,
) -> None:
    """``hash_fresh=False`` (S5's logs): a fresh target gets no digest; an existing one is
    compared by digest exactly as before (idempotent, 080, or replaced on a new version)."""
    target = home.root / "logs" / "family"

    def publish(data: bytes, version: str) -> object:
        return publish_folder(
            home,
            target,
            lambda s: (s / "part-00000.jsonl").write_bytes(data),
            prefix="2B-S5",
            state="s5_x",
            dataset_id="x",
            input_version=version,
            hash_fresh=False,
        )

    first = publish(b"a\n", "v1")
    assert (first.outcome, first.digest) == ("published", None)
    again = publish(b"a\n", "v1")
    assert (again.outcome, again.digest) == ("idempotent", sha256_bytes(b"a\n"))
    with pytest.raises(SegmentError) as exc:
        publish(b"b\n", "v1")
    assert exc.value.code == "2B-S5-080"
    assert (target / "part-00000.jsonl").read_bytes() == b"a\n"
    replaced = publish(b"b\n", "v2")
    assert (replaced.outcome, replaced.digest) == ("replaced", sha256_bytes(b"b\n"))
    assert not list(home.tmp.glob("s5_x_*"))
