"""S1 site weights: §6.5 worked vectors, uniform baseline, error codes, determinism, runner."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from segment2b.catalogue.schemas import table_errors
from segment2b.errors import SegmentError
from segment2b.policy.models import AliasLayoutPolicyV1
from segment2b.policy.store import DEFAULT_PACK
from segment2b.states.s0_gate import run_s0
from segment2b.states.s1_site_weights import (
    SCHEMA_REF,
    build_s1,
    hash_to_unit,
    part_bounds,
    run_s1,
    site_scores,
    write_s1_parts,
)
from segment2b.storage.canonical import canonical_json
from segment2b.storage.digests import sha256_file
from segment2b_tests.fixtures import BIG, TinyRun, build_tiny_run

CREATED = "2026-01-01T00:00:00.000000Z"
POLICY_FILE = "alias_layout_policy_v1.json"
SITES = {"merchant_id": pl.UInt64, "legal_country_iso": pl.String, "site_order": pl.Int32}


def _doc(pack: Path = DEFAULT_PACK) -> dict[str, Any]:
    return json.loads((pack / POLICY_FILE).read_bytes())


def _policy(mutate: Callable[[dict[str, Any]], None] | None = None, *, baseline: bool = False):
    doc = _doc(DEFAULT_PACK / "baseline" if baseline else DEFAULT_PACK)
    if mutate:
        mutate(doc)
    return AliasLayoutPolicyV1.model_validate(doc)


def _sites(rows: list[tuple[int, str, int]], **extra: list[float]) -> pl.DataFrame:
    frame = pl.DataFrame(rows, schema=SITES, orient="row")
    return frame.with_columns(*(pl.Series(k, v, dtype=pl.Float64) for k, v in extra.items()))


def _one_country(merchant: int, k: int, iso: str = "GB") -> list[tuple[int, str, int]]:
    return [(merchant, iso, o) for o in range(1, k + 1)]


WORKED = _sites(
    _one_country(1, 3) + _one_country(2, 3) + _one_country(3, 3) + _one_country(1000, 12)
)


def _weights(build: Any, merchant: int) -> list[float]:
    return build.frame.filter(pl.col("merchant_id") == merchant)["p_weight"].to_list()


def _code(fn: Callable[[], object]) -> SegmentError:
    with pytest.raises(SegmentError) as exc:
        fn()
    return exc.value


# --- §6 worked example ---------------------------------------------------------------------


def test_hash_to_unit_worked_values() -> None:
    digest = hashlib.sha256(b"2B.S1.profile_mixture_v2|1|component").digest()
    assert digest[:8].hex() == "77e79514d26b95dd"
    assert hash_to_unit("2B.S1.profile_mixture_v2", 1, "component") == pytest.approx(
        0.468377416213498, abs=1e-15
    )
    scores = site_scores([1, 1, 1], [1, 2, 3])
    assert scores.tolist() == pytest.approx([0.8873636455, 0.1047090083, 0.1374667426], abs=1e-10)


def test_vectorised_scores_equal_the_scalar_law() -> None:
    mids = [1, 2, BIG, 2**64 - 1]
    orders = [1, 7, 3, 2]
    expected = [
        hash_to_unit("2B.S1.profile_mixture_v2", m, o, "site")
        for m, o in zip(mids, orders, strict=True)
    ]
    assert site_scores(mids, orders).tolist() == expected
    # numpy's uint64 → float64 cast must round to nearest-even like Python's float(int).
    edge = [2**64 - 1, 2**64 - 1024, 2**64 - 1025, 2**63 + 1, 2**53 + 1, 2**53 + 3, 12345]
    cast = (np.array(edge, dtype=np.uint64).astype(np.float64) + 0.5) / float(1 << 64)
    assert cast.tolist() == [(float(v) + 0.5) / float(1 << 64) for v in edge]
    assert cast[0] == 1.0  # U can be exactly 1.0 (§6.2)


def test_worked_example_merchant_1_is_bit_exact() -> None:
    build = build_s1(WORKED, _policy(), created_utc=CREATED)
    assert _weights(build, 1) == [0.8000000000000002, 0.058138495739320555, 0.1418615042606794]
    rows = build.frame.filter(pl.col("merchant_id") == 1)
    assert set(rows["weight_source"]) == {"profile_mixture_v2:hub_spoke"}
    assert not rows["floor_applied"].any()
    m1 = build.merchants.filter(pl.col("merchant_id") == 1).row(0, named=True)
    assert m1["mixture_component"] == "hub_spoke" and m1["size_bucket"] == "small"
    assert m1["alpha_used"] == 2.2 and m1["soft_cap_applied"] and not m1["secondary_floor_applied"]
    assert m1["top1_pre_cap"] == pytest.approx(0.9462344093, abs=1e-10)


def test_worked_example_more_vectors() -> None:
    build = build_s1(WORKED, _policy(), created_utc=CREATED)
    assert _weights(build, 2) == pytest.approx([0.233232912, 0.129555994, 0.637211094], abs=1e-9)
    assert _weights(build, 3) == pytest.approx([0.323915237, 0.330978809, 0.345105954], abs=1e-9)
    comps = dict(build.merchants.select("merchant_id", "mixture_component").iter_rows())
    assert comps == {1: "hub_spoke", 2: "heavy_tail", 3: "near_uniform", 1000: "hub_spoke"}
    big = build.merchants.filter(pl.col("merchant_id") == 1000).row(0, named=True)
    assert big["size_bucket"] == "large" and big["sites"] == 12
    assert big["selector_u"] == pytest.approx(0.0696, abs=1e-4)
    assert max(_weights(build, 1000)) == pytest.approx(0.6, abs=1e-15)
    sums = build.frame.group_by("merchant_id").agg(pl.col("p_weight").sum())["p_weight"]
    assert (sums - 1.0).abs().max() <= 1e-12


def test_output_schema_and_pk_order() -> None:
    shuffled = WORKED.reverse()
    build = build_s1(shuffled, _policy(), created_utc=CREATED)
    assert table_errors(SCHEMA_REF, build.frame) == []
    assert build.frame.select("merchant_id", "legal_country_iso", "site_order").equals(
        WORKED.sort(["merchant_id", "legal_country_iso", "site_order"])
    )
    assert set(build.frame["quantised_bits"]) == {24}
    assert set(build.frame["created_utc"]) == {CREATED}


def test_secondary_floor_binds_for_large_near_uniform() -> None:
    # §6.6: binds only for large + near_uniform with K >= 42. When the need exceeds the
    # largest share (K = 120 here) the donor walk drains the rank-1 site to ~1e-12 first.
    rows = [r for m in range(1, 300) for r in _one_country(m, 120)]
    build = build_s1(_sites(rows), _policy(), created_utc=CREATED)
    floored = build.merchants.filter(pl.col("secondary_floor_applied"))
    assert floored.height > 0
    assert set(floored["mixture_component"]) == {"near_uniform"}
    assert not build.frame["floor_applied"].any()  # the generator never sets floor_applied
    p = np.array(_weights(build, floored["merchant_id"][0]))
    assert p.max() == pytest.approx(0.025, abs=1e-12)  # rank-2 site raised to m
    assert p.min() < 1e-11  # rank-1 site drained


def test_secondary_floor_takes_only_the_need_for_k_45() -> None:
    rows = [r for m in range(1, 300) for r in _one_country(m, 45)]
    build = build_s1(_sites(rows), _policy(), created_utc=CREATED)
    floored = build.merchants.filter(pl.col("secondary_floor_applied"))
    assert floored.height > 0
    p = np.sort(np.array(_weights(build, floored["merchant_id"][0])))[::-1]
    assert p[0] == pytest.approx(0.025, abs=1e-12)
    assert p[1] > 0.02  # the rank-1 donor gave only what was needed


# --- uniform baseline and multi-country merchants ---------------------------------------------


def test_uniform_baseline_is_exactly_one_over_k_across_countries() -> None:
    rows = [(7, "FR", 1), (7, "FR", 2), (7, "GB", 1), (8, "US", 1), *_one_country(9, 7)]
    build = build_s1(_sites(rows), _policy(baseline=True), created_utc=CREATED)
    expected = {7: 1 / 3, 8: 1.0, 9: 1 / 7}
    for mid, want in expected.items():
        assert _weights(build, mid) == [want] * len(_weights(build, mid))
    assert set(build.frame["weight_source"]) == {"uniform"}
    assert not build.frame["floor_applied"].any()
    assert build.counters["profile_mixture_merchants"] == 0


def test_profile_site_count_spans_countries() -> None:
    rows = [(5, "DE", o) for o in range(1, 4)] + [(5, "FR", o) for o in range(1, 3)]
    build = build_s1(_sites(rows), _policy(), created_utc=CREATED)
    m = build.merchants.row(0, named=True)
    assert m["sites"] == 5 and m["size_bucket"] == "mid"  # K = 5 (all countries), not 3
    assert sum(_weights(build, 5)) == pytest.approx(1.0, abs=1e-12)
    # Same site_order in two countries → same score; the tie keeps PK order, so DE/1 takes
    # the better rank and (every shape decreasing in rank) the larger share.
    de1, fr1 = _weights(build, 5)[0], _weights(build, 5)[3]
    assert de1 > fr1


def test_single_site_merchant_gets_one() -> None:
    build = build_s1(_sites([(3, "GB", 1)]), _policy(), created_utc=CREATED)
    assert _weights(build, 3) == [1.0]


def test_column_mode_floor_cap_and_fallback() -> None:
    def column(doc: dict[str, Any]) -> None:
        doc["weight_source"] = {"id": "w", "mode": "column"}
        doc["floor_spec"] = {"mode": "relative", "value": 0.25}
        doc["cap_spec"] = {"mode": "absolute", "value": 6.0}
        doc.pop("profile_mixture_v2")

    rows = _one_country(1, 4) + _one_country(2, 2)
    build = build_s1(
        _sites(rows, w=[1.0, 2.0, 8.0, 4.0, 0.0, 0.0]), _policy(column), created_utc=CREATED
    )
    # Merchant 1: floor 0.25·8 = 2 raises w=1; cap 6 lowers 8 → u = (2, 2, 6, 4) / 14.
    assert _weights(build, 1) == (np.array([2.0, 2.0, 6.0, 4.0]) / 14.0).tolist()
    assert build.frame["floor_applied"].to_list()[:4] == [True, False, False, False]
    # Merchant 2: zero mass → uniform fallback, every row flagged.
    assert _weights(build, 2) == [0.5, 0.5]
    assert build.frame["floor_applied"].to_list()[4:] == [True, True]
    c = build.counters
    assert (c["floors_applied_rows"], c["caps_applied_rows"]) == (3, 1)
    assert c["zero_mass_fallback_merchants"] == 1
    assert set(build.frame["weight_source"]) == {"w"}


# --- error codes ---------------------------------------------------------------------------


def test_duplicate_site_key_is_041_naming_the_key() -> None:
    rows = [*_one_country(4, 3), (4, "GB", 2)]
    err = _code(lambda: build_s1(_sites(rows), _policy(), created_utc=CREATED))
    assert err.code == "2B-S1-041"
    assert err.key == "merchant_id=4/legal_country_iso=GB/site_order=2"
    assert err.dataset == "site_locations"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["required_s1_provenance"].update(floor_applied=False), "floor_applied"),
        (lambda d: d["weight_source"].update(mode="dirichlet"), "weight_source.mode"),
        (lambda d: d["profile_mixture_v2"].update(deterministic_seed_scope="seed"), "scope"),
        (lambda d: d.pop("profile_mixture_v2"), "profile_mixture_v2"),
        (lambda d: d["floor_spec"].update(mode="squash"), "floor_spec.mode"),
        (lambda d: d.update(quantised_bits=70), "quantised_bits"),
        (
            lambda d: d["profile_mixture_v2"]["mixture_weights"].update(
                small={"hub_spoke": 0, "heavy_tail": -1, "near_uniform": 0}
            ),
            "merchant_id=1",
        ),
        (
            lambda d: d["profile_mixture_v2"]["concentration_alpha_by_bucket"]["small"].update(
                hub_spoke=-2.0
            ),
            "merchant_id=1",
        ),
        (lambda d: d["profile_mixture_v2"]["mixture_weights"].pop("small"), "merchant_id=1"),
    ],
)
def test_policy_minima_and_generator_config_are_032(
    mutate: Callable[[dict[str, Any]], None], field: str
) -> None:
    err = _code(lambda: build_s1(WORKED, _policy(mutate), created_utc=CREATED))
    assert err.code == "2B-S1-032"
    assert field in (err.key or "") + str(err)


def test_unknown_weight_column_is_033() -> None:
    def column(doc: dict[str, Any]) -> None:
        doc["weight_source"] = {"id": "footfall", "mode": "column"}

    err = _code(lambda: build_s1(WORKED, _policy(column), created_utc=CREATED))
    assert (err.code, err.key) == ("2B-S1-033", "footfall")

    def empty(doc: dict[str, Any]) -> None:
        doc["weight_source"] = {"mode": "column", "column": ""}

    assert _code(lambda: build_s1(WORKED, _policy(empty), created_utc=CREATED)).code == (
        "2B-S1-033"
    )


def test_invalid_base_weight_is_050_naming_the_site() -> None:
    def column(doc: dict[str, Any]) -> None:
        doc["weight_source"] = {"id": "w", "mode": "column"}

    sites = _sites(_one_country(6, 3), w=[1.0, -0.5, 2.0])
    err = _code(lambda: build_s1(sites, _policy(column), created_utc=CREATED))
    assert err.code == "2B-S1-050"
    assert err.key == "merchant_id=6/legal_country_iso=GB/site_order=2"


def test_zero_mass_without_uniform_fallback_is_053() -> None:
    def column(doc: dict[str, Any]) -> None:
        doc["weight_source"] = {"id": "w", "mode": "column"}
        doc["fallback"] = {"mode": "drop"}

    sites = _sites(_one_country(6, 2), w=[0.0, 0.0])
    err = _code(lambda: build_s1(sites, _policy(column), created_utc=CREATED))
    assert (err.code, err.key) == ("2B-S1-053", "merchant_id=6")


def test_normalisation_beyond_epsilon_is_051() -> None:
    def column(doc: dict[str, Any]) -> None:
        doc["weight_source"] = {"id": "w", "mode": "column"}
        doc["normalisation_epsilon"] = 1e-300

    # 1..6 / 21 sums to 1 − 1.1e-16 in binary64.
    sites = _sites(_one_country(6, 6), w=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    err = _code(lambda: build_s1(sites, _policy(column), created_utc=CREATED))
    assert (err.code, err.key) == ("2B-S1-051", "merchant_id=6")


def test_quantisation_incoherent_is_052() -> None:
    err = _code(
        lambda: build_s1(
            WORKED, _policy(lambda d: d.update(quantisation_epsilon=1e-12)), created_utc=CREATED
        )
    )
    assert err.code == "2B-S1-052" and (err.key or "").startswith("merchant_id=")


def test_created_utc_must_be_present_056() -> None:
    assert _code(lambda: build_s1(WORKED, _policy(), created_utc="")).code == "2B-S1-056"


def test_missing_pk_column_is_020() -> None:
    err = _code(lambda: build_s1(WORKED.drop("site_order"), _policy(), created_utc=CREATED))
    assert err.code == "2B-S1-020"


def test_determinism_of_the_pure_build() -> None:
    a = build_s1(WORKED, _policy(), created_utc=CREATED)
    b = build_s1(WORKED.sample(fraction=1.0, shuffle=True, seed=3), _policy(), created_utc=CREATED)
    assert a.frame.equals(b.frame)


def test_empty_input_writes_one_zero_row_part(tmp_path: Path) -> None:
    build = build_s1(WORKED.clear(), _policy(), created_utc=CREATED)
    assert build.frame.height == 0 and table_errors(SCHEMA_REF, build.frame) == []
    assert write_s1_parts(build.frame, tmp_path) == ["part-00000.parquet"]
    back = pl.read_parquet(tmp_path / "part-00000.parquet")
    assert back.height == 0 and back.schema == build.frame.schema


def test_multi_part_write_keeps_every_row(tmp_path: Path) -> None:
    # Regression (scale sweep): parts once shared one file name and overwrote each other.
    frame = pl.DataFrame({"merchant_id": np.repeat(np.arange(3, dtype=np.uint64), 60_000)})
    names = write_s1_parts(frame, tmp_path)
    assert names == ["part-00000.parquet", "part-00001.parquet"]
    back = pl.concat([pl.read_parquet(tmp_path / n) for n in names])
    assert back.equals(frame)


def test_part_split_rule() -> None:
    assert part_bounds([60_000, 50_000, 10]) == [0, 110_000, 110_010]
    assert part_bounds([100_000, 5]) == [0, 100_000, 100_005]
    assert part_bounds([3, 4]) == [0, 7]
    assert part_bounds([]) == [0, 0]


# --- runner --------------------------------------------------------------------------------


@pytest.fixture
def sealed(tmp_path: Path) -> TinyRun:
    run = build_tiny_run(tmp_path)
    run_s0(run.home, run.run_id)
    return run


def _run_s1(run: TinyRun):
    return run_s1(run.home, seed=run.seed, manifest_fingerprint=run.manifest_fingerprint)


def _folder(run: TinyRun) -> Path:
    return run.home.path("s1_site_weights", run.tokens())


def _report(run: TinyRun) -> dict[str, Any]:
    return json.loads(run.home.path("s1_run_report", run.tokens()).read_bytes())


def test_runner_end_to_end(sealed: TinyRun) -> None:
    out = _run_s1(sealed)
    files = sorted(p.name for p in _folder(sealed).iterdir())
    assert files == ["part-00000.parquet"]
    published = pl.read_parquet(_folder(sealed) / files[0])
    assert published.equals(out.frame)
    assert table_errors(SCHEMA_REF, published) == []
    assert published.height == 8 and published["merchant_id"].dtype == pl.UInt64
    sums = published.group_by("merchant_id").agg(pl.col("p_weight").sum(), pl.len())
    assert dict(sums.select("merchant_id", "len").iter_rows()) == {101: 3, 202: 2, BIG: 3}
    assert (sums["p_weight"] - 1.0).abs().max() <= 1e-12
    report = _report(sealed)
    assert report["summary"] == {"overall_status": "PASS", "warn_count": 1, "fail_count": 0}
    status = {v["id"]: (v["status"], v["codes"]) for v in report["validators"]}
    assert status["V-20"] == ("WARN", ["2B-S1-090"])  # site_timezones sealed, no tz cache
    assert report["inputs_summary"]["merchants_total"] == 3
    assert report["policy"]["sha256_hex"] == sha256_file(sealed.home.policy_root / POLICY_FILE)
    assert report["created_utc"] == "2026-01-01T00:00:00.000000Z"
    assert len(report["samples"]["profile_mixture"]) == 3
    assert [m["id"] for m in report["id_map"]] == [
        "site_locations",
        "alias_layout_policy_v1",
        "s1_site_weights",
    ]


def test_runner_rerun_is_idempotent_and_bytes_replay(sealed: TinyRun, tmp_path: Path) -> None:
    first = _run_s1(sealed)
    before = (_folder(sealed) / "part-00000.parquet").read_bytes()
    again = _run_s1(sealed)
    assert again.published[0].outcome == "idempotent"
    assert (_folder(sealed) / "part-00000.parquet").read_bytes() == before
    other = build_tiny_run(tmp_path / "other")
    run_s0(other.home, other.run_id)
    replay = _run_s1(other)
    assert replay.published[0].digest == first.published[0].digest
    assert replay.data_version == first.data_version


def test_baseline_pack_runner_is_uniform(tmp_path: Path) -> None:
    run = build_tiny_run(tmp_path, pack=DEFAULT_PACK / "baseline")
    run_s0(run.home, run.run_id)
    frame = _run_s1(run).frame
    k = frame.group_by("merchant_id").len()
    expected = frame.join(k, on="merchant_id").select(1.0 / pl.col("len"))
    assert frame["p_weight"].to_list() == expected.to_series().to_list()
    assert set(frame["weight_source"]) == {"uniform"}


def test_missing_receipt_is_001(tmp_path: Path) -> None:
    run = build_tiny_run(tmp_path)
    err = _code(lambda: _run_s1(run))
    assert err.code == "2B-S1-001"
    assert _report(run)["failure"]["code"] == "2B-S1-001"


def test_tampered_sealed_policy_is_022(sealed: TinyRun) -> None:
    path = sealed.home.policy_root / POLICY_FILE
    path.write_bytes(path.read_bytes() + b" ")
    err = _code(lambda: _run_s1(sealed))
    assert (err.code, err.dataset) == ("2B-S1-022", "alias_layout_policy_v1")
    report = _report(sealed)
    assert report["summary"]["overall_status"] == "FAIL"
    assert {v["id"]: v["status"] for v in report["validators"]}["V-19"] == "FAIL"
    assert not _folder(sealed).exists()  # Abort ⇒ nothing published


def _reseal_policy(run: TinyRun, doc: dict[str, Any]) -> None:
    """Write a policy S0 would reject and patch its sealed digest (a sealed-but-invalid file)."""
    path = run.home.policy_root / POLICY_FILE
    path.write_bytes(json.dumps(doc, indent=2).encode())
    inv_path = run.home.path("sealed_inputs_2B", run.tokens())
    inventory = json.loads(inv_path.read_bytes())
    for row in inventory:
        if row["asset_id"] == "alias_layout_policy_v1":
            row["sha256_hex"] = sha256_file(path)
    inv_path.write_bytes(canonical_json(inventory))


def test_policy_schema_violation_is_031(sealed: TinyRun) -> None:
    doc = _doc()
    doc["surprise"] = True
    _reseal_policy(sealed, doc)
    err = _code(lambda: _run_s1(sealed))
    assert (err.code, err.key) == ("2B-S1-031", "surprise")


def test_bucket_table_with_a_gap_is_rejected_naming_the_field(sealed: TinyRun) -> None:
    doc = copy.deepcopy(_doc())
    doc["profile_mixture_v2"]["merchant_size_buckets"]["mid"]["min_sites"] = 5  # 4 uncovered
    _reseal_policy(sealed, doc)
    err = _code(lambda: _run_s1(sealed))
    assert err.code == "2B-S1-031"
    assert err.key == "profile_mixture_v2"
    assert "merchant_size_buckets" in str(err)


def test_changed_site_locations_is_022(sealed: TinyRun) -> None:
    folder = sealed.home.path("site_locations", sealed.tokens())
    (folder / "part-00001.parquet").write_bytes(b"not sealed")
    err = _code(lambda: _run_s1(sealed))
    assert (err.code, err.dataset) == ("2B-S1-022", "site_locations")
