"""Write-once publish: atomic, idempotent re-emit, 080 on new bytes, replace on new version."""

from __future__ import annotations

from pathlib import Path

import pytest

from segment2b.errors import SegmentError
from segment2b.storage.home import StorageHome
from segment2b.storage.publish import publish_file, publish_folder


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
