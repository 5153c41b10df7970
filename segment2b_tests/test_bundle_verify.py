"""Bundle hash law (s8 §7): the worked example bit-exact, its wrong variants, consumer faults."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from segment2b.bundle_verify import (
    FLAG_NAME,
    INDEX_NAME,
    bundle_bytes_digest,
    check_bundle,
    main,
    strict_flag_digest,
    verify_bundle,
)
from segment2b.states.s8_validation_bundle import index_bytes
from segment2b.storage.digests import bundle_digest, flag_bytes

# §7.4 worked example: (path, bytes, SHA-256), paths in bytewise order.
MEMBERS = [
    (
        "evidence/s0/s0_gate_receipt_2B.json",
        b'{"receipt":1}\n',
        "fd5603c52a0dc4bbfc35a627f20158dd8b441c8a77678c1563d657df1acaae30",
    ),
    (
        "evidence/s0/sealed_inputs_2B.json",
        b'[{"asset_id":"x"}]\n',
        "18d9deafa942be5db5b012485d5786fbb5a8cbb8d6c5e10ad7d973b30c896f92",
    ),
    (
        "reports/seed=42/s7_audit_report.json",
        b'{"seed":42}\n',
        "f43c89b365f22147e069e5c3fe1d02681aee1ff1c4ca1a0997914aef71c8a99d",
    ),
]
BUNDLE_DIGEST = "5055394b07767a22eaf5c9bf059e3e71e809e3bf412bf0250c3a97b092d972fd"
WRONG_HEX_CONCAT = "20d1fa32a063c6baae2dff616c828ffeca857f11dad0fa78ee19dd84ccb4693b"
WRONG_INDEX_HASH = "3515b100b091b3d4abe4c99d13f27a5dbae115d06df2f39bae952c63e7414297"
INDEX_63 = (
    b'[{"path":"evidence/s0/s0_gate_receipt_2B.json","sha256_hex":'
    b'"fd5603c52a0dc4bbfc35a627f20158dd8b441c8a77678c1563d657df1acaae30"},'
    b'{"path":"evidence/s0/sealed_inputs_2B.json","sha256_hex":'
    b'"18d9deafa942be5db5b012485d5786fbb5a8cbb8d6c5e10ad7d973b30c896f92"},'
    b'{"path":"reports/seed=42/s7_audit_report.json","sha256_hex":'
    b'"f43c89b365f22147e069e5c3fe1d02681aee1ff1c4ca1a0997914aef71c8a99d"}]'
)


def rows() -> list[dict[str, str]]:
    return [{"path": p, "sha256_hex": h} for p, _, h in MEMBERS]


def write_bundle(root: Path, *, index: bytes | None = None, flag: bytes | None = None) -> Path:
    for rel, data, _ in MEMBERS:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / INDEX_NAME).write_bytes(INDEX_63 if index is None else index)
    (root / FLAG_NAME).write_bytes(flag_bytes(BUNDLE_DIGEST) if flag is None else flag)
    return root


def codes(folder: Path) -> list[str]:
    return [f.code for f in check_bundle(folder).findings]


# --- worked example, bit-exact ----------------------------------------------------------------


def test_member_digests_match_the_table() -> None:
    for _, data, digest in MEMBERS:
        assert hashlib.sha256(data).hexdigest() == digest


def test_index_bytes_are_the_63_example() -> None:
    assert index_bytes(rows()) == INDEX_63
    assert len(INDEX_63) == 381 and not INDEX_63.endswith(b"\n")


def test_bundle_digest_and_flag_bytes(tmp_path: Path) -> None:
    root = write_bundle(tmp_path)
    assert bundle_digest(root, [p for p, _, _ in MEMBERS]) == BUNDLE_DIGEST
    assert bundle_bytes_digest([d for _, d, _ in MEMBERS]) == BUNDLE_DIGEST
    flag = flag_bytes(BUNDLE_DIGEST)
    assert flag == f"sha256_hex = {BUNDLE_DIGEST}\n".encode() and len(flag) == 78
    assert strict_flag_digest(flag) == BUNDLE_DIGEST
    result = check_bundle(root)
    assert result.ok and result.warnings == ()
    assert result.computed_digest == result.flag_digest == BUNDLE_DIGEST
    assert result.members == tuple(p for p, _, _ in MEMBERS)


def test_digest_ignores_index_order_of_listing(tmp_path: Path) -> None:
    # H3 sorts the paths; concatenation in listing order would be another digest.
    shuffled = [MEMBERS[2][1], MEMBERS[0][1], MEMBERS[1][1]]
    assert bundle_bytes_digest(shuffled) != BUNDLE_DIGEST
    assert bundle_digest(write_bundle(tmp_path), [MEMBERS[2][0], MEMBERS[0][0], MEMBERS[1][0]]) == (
        BUNDLE_DIGEST
    )


def test_wrong_variants_are_the_documented_values(tmp_path: Path) -> None:
    hex_concat = "".join(h for _, _, h in MEMBERS).encode("ascii")
    assert hashlib.sha256(hex_concat).hexdigest() == WRONG_HEX_CONCAT
    assert hashlib.sha256(INDEX_63).hexdigest() == WRONG_INDEX_HASH
    assert BUNDLE_DIGEST not in (WRONG_HEX_CONCAT, WRONG_INDEX_HASH)


@pytest.mark.parametrize("wrong", [WRONG_HEX_CONCAT, WRONG_INDEX_HASH])
def test_flag_holding_a_wrong_variant_fails_051(tmp_path: Path, wrong: str) -> None:
    root = write_bundle(tmp_path, flag=flag_bytes(wrong))
    assert codes(root) == ["2B-S8-051"]
    assert any("2B-S8-051" in m for m in verify_bundle(root))


# --- consumer faults --------------------------------------------------------------------------


def edit_index(mutate: Callable[[list[dict[str, str]]], object]) -> bytes:
    doc = rows()
    mutate(doc)
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def test_flipped_member_byte_fails_050_and_051(tmp_path: Path) -> None:
    root = write_bundle(tmp_path)
    target = root / MEMBERS[1][0]
    data = bytearray(target.read_bytes())
    data[3] ^= 0x01
    target.write_bytes(bytes(data))
    found = codes(root)
    assert found == ["2B-S8-050", "2B-S8-051"]
    assert check_bundle(root).findings[0].path == MEMBERS[1][0]


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda d: d.__setitem__(0, {**d[0], "path": "/abs/x.json"}), "2B-S8-042"),
        (lambda d: d.__setitem__(0, {**d[0], "path": "evidence/../x.json"}), "2B-S8-042"),
        (lambda d: d.__setitem__(0, {**d[0], "path": "evidence\\s0\\x.json"}), "2B-S8-042"),
        (lambda d: d.reverse(), "2B-S8-041"),
        (lambda d: d.insert(1, dict(d[0])), "2B-S8-044"),
        (lambda d: d.append({"path": FLAG_NAME, "sha256_hex": "0" * 64}), "2B-S8-045"),
        (lambda d: d.__setitem__(0, {**d[0], "extra": 1}), "2B-S8-040"),
        (lambda d: d.__setitem__(0, {**d[0], "sha256_hex": "ABC"}), "2B-S8-040"),
    ],
)
def test_index_law_violations(
    tmp_path: Path, mutate: Callable[[list[dict[str, str]]], object], code: str
) -> None:
    root = write_bundle(tmp_path, index=edit_index(mutate))
    assert code in codes(root)


def test_missing_member_is_043(tmp_path: Path) -> None:
    root = write_bundle(tmp_path)
    (root / MEMBERS[2][0]).unlink()
    assert codes(root) == ["2B-S8-043"]


def test_unindexed_file_is_043(tmp_path: Path) -> None:
    root = write_bundle(tmp_path)
    (root / "evidence" / "stray.json").write_bytes(b"{}")
    assert codes(root) == ["2B-S8-043"]


@pytest.mark.parametrize("index", [b"", b"not json", b"[]", b'{"path":"x"}'])
def test_unusable_index_is_040(tmp_path: Path, index: bytes) -> None:
    root = write_bundle(tmp_path, index=index)
    assert "2B-S8-040" in codes(root)


@pytest.mark.parametrize(
    "flag",
    [b"", b"sha256_hex = \n", b"sha256_hex = " + BUNDLE_DIGEST.upper().encode() + b"\n", b"PASS\n"],
)
def test_unparsable_flag_is_052(tmp_path: Path, flag: bytes) -> None:
    assert codes(write_bundle(tmp_path, flag=flag)) == ["2B-S8-052"]


def test_missing_flag_is_052(tmp_path: Path) -> None:
    root = write_bundle(tmp_path)
    (root / FLAG_NAME).unlink()
    assert codes(root) == ["2B-S8-052"]


def test_flag_without_trailing_newline_is_strict(tmp_path: Path) -> None:
    flag = f"sha256_hex = {BUNDLE_DIGEST}".encode()
    result = check_bundle(write_bundle(tmp_path, flag=flag))
    assert result.ok and result.warnings == ()


@pytest.mark.parametrize(
    "flag",
    [
        f"sha256_hex = {BUNDLE_DIGEST}\n\n".encode(),  # `$` would accept it; fullmatch does not
        f"sha256_hex={BUNDLE_DIGEST}\n".encode(),
        f"  sha256_hex = {BUNDLE_DIGEST}  \r\n".encode(),
    ],
)
def test_non_strict_flag_is_read_tolerantly_with_a_warning(tmp_path: Path, flag: bytes) -> None:
    assert strict_flag_digest(flag) is None
    result = check_bundle(write_bundle(tmp_path, flag=flag))
    assert result.ok and result.flag_digest == BUNDLE_DIGEST
    assert len(result.warnings) == 1


# --- CLI --------------------------------------------------------------------------------------


def test_cli_pass_and_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_bundle(tmp_path / "good")
    bad = write_bundle(tmp_path / "bad", flag=flag_bytes(WRONG_INDEX_HASH))
    assert main([str(good)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"PASS {good} sha256_hex={BUNDLE_DIGEST}")
    assert main([str(good), str(bad)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("PASS") and lines[1].startswith(f"FAIL {bad} [2B-S8-051]")


def test_cli_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nope")]) == 1
    assert "[2B-S8-043]" in capsys.readouterr().out
