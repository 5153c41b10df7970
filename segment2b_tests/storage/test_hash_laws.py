"""Hash laws H1-H4 and H6 against the spec's worked examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from segment2b.storage.canonical import canonical_json
from segment2b.storage.digests import (
    FileChangedError,
    bundle_digest,
    flag_bytes,
    folder_digest,
    parse_flag,
    sha256_file,
    unsafe_index_path,
)

MF = "ab" * 32
MANIFEST = ('{"manifest_fingerprint":"' + MF + '","version":"1B.validation.v1"}').encode()
EGRESS = b'{"composite_sha256_hex":"","files":[]}'
INDEX = (
    b'[{"artifact_id":"MANIFEST","kind":"summary","mime":"application/json","notes":null,'
    b'"path":"MANIFEST.json"},{"artifact_id":"egress_checksums","kind":"table",'
    b'"mime":"application/json","notes":null,"path":"egress_checksums.json"},'
    b'{"artifact_id":"index","kind":"table","mime":"application/json","notes":null,'
    b'"path":"index.json"}]'
)


@pytest.fixture
def worked_bundle(tmp_path: Path) -> Path:
    (tmp_path / "MANIFEST.json").write_bytes(MANIFEST)
    (tmp_path / "egress_checksums.json").write_bytes(EGRESS)
    (tmp_path / "index.json").write_bytes(INDEX)
    return tmp_path


def test_worked_example_sizes() -> None:
    assert (len(MANIFEST), len(EGRESS), len(INDEX)) == (120, 38, 325)


def test_h3_worked_example_digest(worked_bundle: Path) -> None:
    paths = ["index.json", "egress_checksums.json", "MANIFEST.json"]
    digest = bundle_digest(worked_bundle, paths)
    assert digest == "513e79f9018eae6de7ac32e8e43d30dd238137baa0eb2201b354c168febd2f63"
    assert flag_bytes(digest) == (
        b"sha256_hex = 513e79f9018eae6de7ac32e8e43d30dd238137baa0eb2201b354c168febd2f63\n"
    )


def test_h3_case_insensitive_sort_is_the_wrong_digest(worked_bundle: Path) -> None:
    import hashlib

    wrong = hashlib.sha256(EGRESS + INDEX + MANIFEST).hexdigest()
    assert wrong == "b4ad03ad033a44bc13598b4d735c2ab5f8074f7debc96fd38cba6a965a5133aa"
    assert (
        bundle_digest(worked_bundle, ["MANIFEST.json", "egress_checksums.json", "index.json"])
        != wrong
    )


def test_h3_drops_the_flag(worked_bundle: Path) -> None:
    (worked_bundle / "_passed.flag").write_bytes(b"sha256_hex = " + b"0" * 64 + b"\n")
    with_flag = bundle_digest(
        worked_bundle, ["MANIFEST.json", "egress_checksums.json", "index.json", "_passed.flag"]
    )
    assert with_flag == "513e79f9018eae6de7ac32e8e43d30dd238137baa0eb2201b354c168febd2f63"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sha256_hex = " + "a" * 64 + "\n", "a" * 64),
        ("sha256_hex=" + "b" * 64, "b" * 64),
        ("  sha256_hex = " + "c" * 64 + "   \nsecond line", "c" * 64),
        ("digest: " + "d" * 64 + " trailing", "d" * 64),  # tolerant fallback
        ("", None),
        ("sha256_hex = not-a-digest\n", None),
        ("\n" + "e" * 64, None),  # only the first line counts
    ],
)
def test_flag_parse(text: str, expected: str | None) -> None:
    assert parse_flag(text) == expected


def test_h2_folder_digest_orders_by_relative_path(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.bin").write_bytes(b"2")
    (tmp_path / "a.bin").write_bytes(b"1")
    (tmp_path / "c.bin").write_bytes(b"3")
    import hashlib

    assert folder_digest(tmp_path) == hashlib.sha256(b"123").hexdigest()


def test_h1_detects_change_during_hashing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "f.bin"
    f.write_bytes(b"x" * 10)
    import segment2b.storage.digests as d

    calls = iter([(10, 1), (11, 2)])
    monkeypatch.setattr(d, "_stat_key", lambda _p: next(calls))
    with pytest.raises(FileChangedError):
        sha256_file(f)


@pytest.mark.parametrize(
    ("path", "unsafe"),
    [
        ("a/b.json", False),
        ("/abs", True),
        ("\\win", True),
        ("a\\b", True),
        ("../up", True),
        ("a/../b", True),
        ("", True),
        (7, True),
    ],
)
def test_unsafe_index_paths(path: object, unsafe: bool) -> None:
    assert unsafe_index_path(path) is unsafe


def test_canonical_json_h6() -> None:
    assert canonical_json({"b": 1, "a": {"d": "é", "c": [1, 2]}}) == (
        b'{"a":{"c":[1,2],"d":"\\u00e9"},"b":1}'
    )
