"""S2 alias tables: worked example, blob/index round trip, accepted values, runner, verify."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from segment2b.catalogue.schemas import json_errors
from segment2b.core.alias import parse_slice
from segment2b.errors import SegmentError
from segment2b.policy.models import AliasLayoutPolicyV1
from segment2b.policy.store import DEFAULT_PACK
from segment2b.states.s0_gate import run_s0
from segment2b.states.s1_site_weights import build_s1, run_s1
from segment2b.states.s2_alias_tables import (
    INDEX_SCHEMA_REF,
    build_s2,
    run_s2,
    verify_s2_published,
)
from segment2b.storage.canonical import pretty_json
from segment2b_tests.fixtures import TinyRun, build_tiny_run

CREATED = "2026-01-15T09:00:00.000000Z"
DIGEST = "ab" * 32
SITES = {"merchant_id": pl.UInt64, "legal_country_iso": pl.String, "site_order": pl.Int32}
# s2-alias-tables.md §6 step 7, with the sealed digest placeholder filled in.
WORKED_INDEX = """{
  "alignment_bytes": 8,
  "blob_sha256": "703eae61d4f84ce9e2f67d5471033e3a8fa59f0545cf3b8f367f666c1744e8c0",
  "blob_size_bytes": 40,
  "created_utc": "2026-01-15T09:00:00.000000Z",
  "endianness": "little",
  "layout_version": "2B.alias.blob.v1",
  "merchants": [
    {
      "checksum": "703eae61d4f84ce9e2f67d5471033e3a8fa59f0545cf3b8f367f666c1744e8c0",
      "length": 40,
      "merchant_id": 1,
      "offset": 0,
      "quantised_bits": 24,
      "sites": 3
    }
  ],
  "merchants_count": 1,
  "policy_digest": "<digest>",
  "policy_id": "alias_layout_policy_v1",
  "quantised_bits": 24
}
""".replace("<digest>", DIGEST)


def _policy(mutate: Callable[[dict[str, Any]], None] | None = None) -> AliasLayoutPolicyV1:
    doc = json.loads((DEFAULT_PACK / "alias_layout_policy_v1.json").read_bytes())
    if mutate:
        mutate(doc)
    return AliasLayoutPolicyV1.model_validate(doc)


def _s1_frame(rows: list[tuple[int, str, int, float]], bits: int = 24) -> pl.DataFrame:
    return pl.DataFrame(
        [(*r, "test", bits, False, CREATED) for r in rows],
        schema={
            **SITES,
            "p_weight": pl.Float64,
            "weight_source": pl.String,
            "quantised_bits": pl.Int32,
            "floor_applied": pl.Boolean,
            "created_utc": pl.String,
        },
        orient="row",
    )


WORKED = _s1_frame(
    [
        (1, "GB", 1, 0.8000000000000002),
        (1, "GB", 2, 0.058138495739320555),
        (1, "GB", 3, 0.1418615042606794),
    ]
)


def _world(n_merchants: int = 60) -> pl.DataFrame:
    """A small S1 table from the remediation generator (hash-derived site counts, 1-2 countries)."""
    rows = []
    for m in range(1, n_merchants + 1):
        k = 1 + hashlib.sha256(f"k|{m}".encode()).digest()[0] % 60
        rows += [(m * 7919, "DE", o) for o in range(1, k // 2 + 1)]
        rows += [(m * 7919, "FR", o) for o in range(1, k - k // 2 + 1)]
    sites = pl.DataFrame(rows, schema=SITES, orient="row")
    return build_s1(sites, _policy(), created_utc=CREATED).frame


def _code(fn: Callable[[], object]) -> SegmentError:
    with pytest.raises(SegmentError) as exc:
        fn()
    return exc.value


# --- pure build ------------------------------------------------------------------------------


def test_worked_example_blob_and_index_text() -> None:
    build = build_s2(WORKED, _policy(), created_utc=CREATED, policy_digest=DIGEST)
    assert build.blob.hex() == (
        "03000000200000000000000000000000ffffffff00000000007ea62c00000000001bf36c00000000"
    )
    assert build.index_bytes.decode("ascii") == WORKED_INDEX
    assert json_errors(INDEX_SCHEMA_REF, build.index) == []
    assert build.p_hat.tolist() == [0.800000011920929, 0.058138489723205566, 0.14186149835586548]


def test_round_trip_every_slice_decodes_to_s1() -> None:
    s1 = _world()
    build = build_s2(s1, _policy(), created_utc=CREATED, policy_digest=DIGEST)
    index = json.loads(build.index_bytes)
    assert json_errors(INDEX_SCHEMA_REF, index) == []
    assert index["blob_sha256"] == hashlib.sha256(build.blob).hexdigest()
    assert index["blob_size_bytes"] == len(build.blob)
    rows = index["merchants"]
    assert [r["merchant_id"] for r in rows] == sorted(set(s1["merchant_id"].to_list()))
    assert index["merchants_count"] == len(rows) == 60
    ends = [r["offset"] + r["length"] for r in rows]
    assert [r["offset"] for r in rows[1:]] == ends[:-1]  # contiguous at A = 8
    for row in rows:
        payload = build.blob[row["offset"] : row["offset"] + row["length"]]
        assert hashlib.sha256(payload).hexdigest() == row["checksum"]
        parsed = parse_slice(payload, endianness="little")
        assert parsed.n_sites == row["sites"] == row["length"] // 8 - 2
        want = s1.filter(pl.col("merchant_id") == row["merchant_id"])["p_weight"].to_numpy()
        assert np.abs(parsed.probabilities() - want).max() <= 1.2e-07
    assert build.counters["merchants_mass_exact_after_decode"] == 60


def test_big_endian_and_alignment_16() -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["endianness"] = "big"
        doc["alignment_bytes"] = 16

    s1 = _world(20)
    little = build_s2(s1, _policy(), created_utc=CREATED, policy_digest=DIGEST)
    big = build_s2(s1, _policy(change), created_utc=CREATED, policy_digest=DIGEST)
    assert len(big.blob) % 16 == 0 and len(big.blob) >= len(little.blob)
    assert all(r["offset"] % 16 == 0 for r in big.index["merchants"])
    for lr, br in zip(little.index["merchants"], big.index["merchants"], strict=True):
        a = little.blob[lr["offset"] : lr["offset"] + lr["length"]]
        b = big.blob[br["offset"] : br["offset"] + br["length"]]
        assert np.frombuffer(a, "<u4").tolist() == np.frombuffer(b, ">u4").tolist()
    assert big.index["endianness"] == "big" and big.index["alignment_bytes"] == 16


def test_determinism() -> None:
    s1 = _world(30)
    a = build_s2(s1, _policy(), created_utc=CREATED, policy_digest=DIGEST)
    b = build_s2(s1.clone(), _policy(), created_utc=CREATED, policy_digest=DIGEST)
    assert a.blob == b.blob and a.index_bytes == b.index_bytes


@pytest.mark.parametrize(
    ("field", "mutate"),
    [
        ("decode_law", lambda d: d.update(decode_law="walker_vose_q0_64")),
        ("encode_spec.worklist_order", lambda d: d["encode_spec"].update(worklist_order="fifo")),
        ("encode_spec.mass_rounding", lambda d: d["encode_spec"].update(mass_rounding="floor")),
        (
            "encode_spec.treat_within_epsilon_of_one_as_one",
            lambda d: d["encode_spec"].pop("treat_within_epsilon_of_one_as_one"),
        ),
        ("layout_version", lambda d: d.update(layout_version="2B.alias.blob.v2")),
        ("record_layout.prob_qbits", lambda d: d["record_layout"].update(prob_qbits=40)),
        (
            "record_layout.slice_header",
            lambda d: d["record_layout"].update(slice_header="u32_n_sites,u32_prob_qbits"),
        ),
        ("checksum", lambda d: d["checksum"].update(algorithm="md5")),
        ("blob_digest", lambda d: d["blob_digest"].update(encoding="base64")),
        ("quantised_bits", lambda d: d["record_layout"].update(prob_qbits=16)),
    ],
)
def test_accepted_value_violation_is_032(field: str, mutate: Callable[[dict], None]) -> None:
    err = _code(
        lambda: build_s2(WORKED, _policy(mutate), created_utc=CREATED, policy_digest=DIGEST)
    )
    assert err.code == "2B-S2-032"
    assert err.key == field


def test_bit_depth_mismatch_is_058() -> None:
    s1 = _s1_frame([(1, "GB", 1, 1.0)], bits=16)
    err = _code(lambda: build_s2(s1, _policy(), created_utc=CREATED, policy_digest=DIGEST))
    assert (err.code, err.key) == ("2B-S2-058", "merchant_id=1")


def test_rows_out_of_order_is_083() -> None:
    err = _code(
        lambda: build_s2(WORKED.reverse(), _policy(), created_utc=CREATED, policy_digest=DIGEST)
    )
    assert err.code == "2B-S2-083"


def test_grid_failure_is_052() -> None:
    s1 = _s1_frame([(9, "GB", 1, 0.25), (9, "GB", 2, 0.25)])  # a corrupt S1 (mass 0.5)
    err = _code(lambda: build_s2(s1, _policy(), created_utc=CREATED, policy_digest=DIGEST))
    assert (err.code, err.key) == ("2B-S2-052", "merchant_id=9")


def test_decode_incoherent_is_055() -> None:
    def coarse(doc: dict[str, Any]) -> None:
        doc["quantised_bits"] = 8
        doc["record_layout"]["prob_qbits"] = 8

    s1 = _s1_frame([(4, "GB", 1, 0.3), (4, "GB", 2, 0.7)], bits=8)
    err = _code(lambda: build_s2(s1, _policy(coarse), created_utc=CREATED, policy_digest=DIGEST))
    assert (err.code, err.key) == ("2B-S2-055", "merchant_id=4")


def test_missing_column_is_020() -> None:
    err = _code(
        lambda: build_s2(
            WORKED.drop("p_weight"), _policy(), created_utc=CREATED, policy_digest=DIGEST
        )
    )
    assert err.code == "2B-S2-020"


# --- runner + verify -------------------------------------------------------------------------


@pytest.fixture
def weighted(tmp_path: Path) -> TinyRun:
    run = build_tiny_run(tmp_path)
    run_s0(run.home, run.run_id)
    run_s1(run.home, seed=run.seed, manifest_fingerprint=run.manifest_fingerprint)
    return run


def _run_s2(run: TinyRun):
    return run_s2(run.home, seed=run.seed, manifest_fingerprint=run.manifest_fingerprint)


def _verify(run: TinyRun) -> list[str]:
    return verify_s2_published(
        run.home, seed=run.seed, manifest_fingerprint=run.manifest_fingerprint
    )


def test_runner_publishes_and_verifies(weighted: TinyRun) -> None:
    out = _run_s2(weighted)
    index_path = weighted.home.path("s2_alias_index", weighted.tokens())
    blob_path = weighted.home.path("s2_alias_blob", weighted.tokens())
    index = json.loads(index_path.read_bytes())
    assert index_path.read_bytes() == pretty_json(index)
    assert json_errors(INDEX_SCHEMA_REF, index) == []
    assert index["blob_sha256"] == hashlib.sha256(blob_path.read_bytes()).hexdigest()
    assert index["policy_digest"] == out.report["policy"]["sha256_hex"]
    assert index["created_utc"] == "2026-01-01T00:00:00.000000Z"
    assert out.frame is not None and out.frame["merchant_id"].to_list() == [
        r["merchant_id"] for r in index["merchants"]
    ]
    assert _verify(weighted) == []
    report = json.loads(weighted.home.path("s2_run_report", weighted.tokens()).read_bytes())
    assert report["summary"] == {"overall_status": "PASS", "warn_count": 0, "fail_count": 0}
    assert [v["id"] for v in report["validators"]] == [f"V-{i:02d}" for i in range(1, 28)]
    assert report["counters"]["publish_bytes_total"] == len(index_path.read_bytes()) + len(
        blob_path.read_bytes()
    )


def test_rerun_is_idempotent(weighted: TinyRun) -> None:
    first = _run_s2(weighted)
    again = _run_s2(weighted)
    assert [p.outcome for p in again.published] == ["idempotent", "idempotent"]
    assert again.data_version == first.data_version


def test_flipped_blob_byte_is_caught_naming_the_merchant(weighted: TinyRun) -> None:
    out = _run_s2(weighted)
    blob_path = weighted.home.path("s2_alias_blob", weighted.tokens())
    second = out.extras["build"].index["merchants"][1]
    data = bytearray(blob_path.read_bytes())
    data[second["offset"] + 20] ^= 0x01  # prob_q[0] of the second merchant
    blob_path.write_bytes(bytes(data))
    problems = _verify(weighted)
    assert any("2B-S2-062" in p for p in problems)
    named = [p for p in problems if "2B-S2-063" in p]
    assert named and f"merchant_id={second['merchant_id']}" in named[0]


def test_index_tampering_is_caught(weighted: TinyRun) -> None:
    _run_s2(weighted)
    index_path = weighted.home.path("s2_alias_index", weighted.tokens())
    index = json.loads(index_path.read_bytes())
    index["merchants"][0]["offset"] = 4  # misaligned, overlapping
    index_path.write_bytes(pretty_json(index))
    problems = _verify(weighted)
    codes = {p.split("]")[0].lstrip("[") for p in problems}
    assert {"2B-S2-064", "2B-S2-061"} <= codes


def test_partial_publish_is_082(weighted: TinyRun) -> None:
    _run_s2(weighted)
    weighted.home.path("s2_alias_blob", weighted.tokens()).unlink()
    err = _code(lambda: _run_s2(weighted))
    assert err.code == "2B-S2-082"
    report = json.loads(weighted.home.path("s2_run_report", weighted.tokens()).read_bytes())
    assert report["failure"]["code"] == "2B-S2-082"


def test_missing_s1_is_020(tmp_path: Path) -> None:
    run = build_tiny_run(tmp_path)
    run_s0(run.home, run.run_id)
    err = _code(lambda: _run_s2(run))
    assert (err.code, err.dataset) == ("2B-S2-020", "s1_site_weights")


def test_tampered_policy_is_022(weighted: TinyRun) -> None:
    path = weighted.home.policy_root / "alias_layout_policy_v1.json"
    path.write_bytes(path.read_bytes() + b"\n")
    assert _code(lambda: _run_s2(weighted)).code == "2B-S2-022"
    assert any("2B-S2-022" in p for p in _verify(weighted))


def test_baseline_pack_runs_through_s2(tmp_path: Path) -> None:
    run = build_tiny_run(tmp_path, pack=DEFAULT_PACK / "baseline")
    run_s0(run.home, run.run_id)
    run_s1(run.home, seed=run.seed, manifest_fingerprint=run.manifest_fingerprint)
    _run_s2(run)
    assert _verify(run) == []


def test_non_finite_weight_is_053() -> None:
    s1 = _s1_frame([(5, "GB", 1, float("nan")), (5, "GB", 2, 1.0)])
    err = _code(lambda: build_s2(s1, _policy(), created_utc=CREATED, policy_digest=DIGEST))
    assert (err.code, err.key) == ("2B-S2-053", "merchant_id=5")
