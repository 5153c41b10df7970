"""Per-seed scorecard (certification.md §3–§5, §7 seed rows, §8) on hand-built tiny inputs.

The builders here are shared by ``test_verdict.py`` and ``test_evidence.py``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from segment2b.certification.scorecard import (
    FAIL_REALISM,
    GATE_KEYS,
    INVALID_FOR_GRADING,
    PASS_B,
    PASS_BPLUS,
    SeedInputs,
    load_seed_inputs,
    roster_metrics,
    score_seed,
)
from segment2b.errors import SegmentError
from segment2b.storage.canonical import canonical_json, pretty_json
from segment2b.storage.home import StorageHome
from segment2b.storage.tables import write_parquet_part

MF = "a" * 64
PH = "b" * 64
CREATED = "2026-01-01T00:00:00.000000Z"
D0 = dt.date(2026, 1, 1)
ZONES = ("America/New_York", "Europe/Paris")
PINNED = {
    "alias_layout_policy_v1": "1" * 64,
    "day_effect_policy_v1": "2" * 64,
    "group_mix_regularizer_v1": "3" * 64,
}
FLAG = "sha256_hex = " + "c" * 64 + "\n"
PASS_SUMMARY = {"summary": {"overall_status": "PASS", "warn_count": 0, "fail_count": 0}}
# Hand-checked S1 (all B+): resid median 0.183, gap median 0.35, HHI IQR 0.54 - 0.38 = 0.16.
WEIGHTS = {1: [0.7, 0.2, 0.1], 2: [0.5, 0.3, 0.2], 3: [0.4, 0.35, 0.25], 4: [0.9, 0.1]}
ATTRIBUTES = {  # merchant -> (mcc, class, channel, virtual)
    1: (5411, "physical_retail", "card_present", False),
    2: (7011, "services", "card_present", False),
    3: (5815, "digital", "card_not_present", False),
    4: (5815, "digital", "card_not_present", True),
}


def run_id_of(seed: int) -> str:
    return f"{seed:032x}"


def s1_frame(weights: dict[int, list[float]] = WEIGHTS, source: str = "mix:core") -> pl.DataFrame:
    rows = [
        (m, "FR", i + 1, p, source, 24, False, CREATED)
        for m, ps in weights.items()
        for i, p in enumerate(ps)
    ]
    schema = {
        "merchant_id": pl.UInt64,
        "legal_country_iso": pl.String,
        "site_order": pl.Int32,
        "p_weight": pl.Float64,
        "weight_source": pl.String,
        "quantised_bits": pl.Int32,
        "floor_applied": pl.Boolean,
        "created_utc": pl.String,
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


def days(n: int) -> list[dt.date]:
    return [D0 + dt.timedelta(days=k) for k in range(n)]


def s3_frame(n_days: int = 7, sigma: float = 0.12, rng_seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(rng_seed)
    rows = []
    counter = 0
    for m in WEIGHTS:
        for d in days(n_days):
            for z in ZONES:
                lg = float(rng.normal(-0.5 * sigma * sigma, sigma))
                rows.append((m, d, z, float(np.exp(lg)), lg, sigma, "day_effect", counter, 0))
                counter += 1
    schema = {
        "merchant_id": pl.UInt64,
        "utc_day": pl.Date,
        "tz_group_id": pl.String,
        "gamma": pl.Float64,
        "log_gamma": pl.Float64,
        "sigma_gamma": pl.Float64,
        "rng_stream_id": pl.String,
        "rng_counter_lo": pl.UInt64,
        "rng_counter_hi": pl.UInt64,
    }
    return pl.DataFrame(rows, schema=schema, orient="row").with_columns(created_utc=pl.lit(CREATED))


def s4_frame(p: tuple[float, float] = (0.6, 0.4), n_days: int = 7) -> pl.DataFrame:
    rows = [
        (m, d, z, p[i], p[i], 1.0, CREATED, None, None)
        for m in WEIGHTS
        for d in days(n_days)
        for i, z in enumerate(ZONES)
    ]
    schema = {
        "merchant_id": pl.UInt64,
        "utc_day": pl.Date,
        "tz_group_id": pl.String,
        "p_group": pl.Float64,
        "base_share": pl.Float64,
        "gamma": pl.Float64,
        "created_utc": pl.String,
        "mass_raw": pl.Float64,
        "denom_raw": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


def attributes_frame() -> pl.DataFrame:
    rows = [(m, mcc, cls, ch, "FR", v) for m, (mcc, cls, ch, v) in ATTRIBUTES.items()]
    schema = {
        "merchant_id": pl.UInt64,
        "mcc": pl.Int32,
        "mcc_class": pl.String,
        "channel": pl.String,
        "home_country_iso": pl.String,
        "is_virtual": pl.Boolean,
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


def roster_rows(n_days: int = 28, per_day: int = 2) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for d in days(n_days):
        for m, (mcc, _cls, channel, virtual) in ATTRIBUTES.items():
            for k in range(per_day):
                rows.append(
                    {
                        "merchant_id": m,
                        "utc_timestamp": f"{d.isoformat()}T{10 + k:02d}:00:00.000000Z",
                        "utc_day": d.isoformat(),
                        "is_virtual": virtual,
                        "channel": channel,
                        "mcc": mcc,
                    }
                )
    return rows


def roster_frame(rows: list[dict[str, object]] | None = None) -> pl.DataFrame:
    schema = {
        "merchant_id": pl.UInt64,
        "utc_timestamp": pl.String,
        "utc_day": pl.String,
        "is_virtual": pl.Boolean,
        "channel": pl.String,
        "mcc": pl.Int64,
    }
    return pl.DataFrame(roster_rows() if rows is None else rows, schema=schema)


def site_timezones_frame() -> pl.DataFrame:
    rows = [(m, "FR", i + 1, ZONES[i % 2]) for m, ps in WEIGHTS.items() for i in range(len(ps))]
    return pl.DataFrame(
        rows,
        schema={
            "merchant_id": pl.UInt64,
            "legal_country_iso": pl.String,
            "site_order": pl.Int32,
            "tzid": pl.String,
        },
        orient="row",
    )


def s3_report(s3: pl.DataFrame) -> dict[str, object]:
    return {
        **PASS_SUMMARY,
        "rng_accounting": {
            "rows_written": s3.height,
            "nonpositive_gamma_rows": 0,
            "gamma_clipped_rows": 0,
            "max_abs_log_gamma": float(s3["log_gamma"].abs().max()),
        },
    }


def good_inputs(seed: int = 42, **overrides: object) -> SeedInputs:
    """A seed passing every gate at B+ with a realism-grade roster."""
    s3 = s3_frame(rng_seed=seed)
    base = SeedInputs(
        seed=seed,
        manifest_fingerprint=MF,
        parameter_hash=PH,
        run_id=run_id_of(seed),
        s1=s1_frame(),
        s3=s3,
        s4=s4_frame(),
        roster=roster_frame(),
        merchant_attributes=attributes_frame(),
        site_timezones=site_timezones_frame(),
        s2_run_report=PASS_SUMMARY,
        s3_run_report=s3_report(s3),
        s7_audit_report=PASS_SUMMARY,
        s8_flag=FLAG,
        policy_digests=dict(PINNED),
        generated_utc=CREATED,
    )
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


def smoke_roster() -> pl.DataFrame:
    """The design's roster: one day, one arrival per merchant, no class/channel fields."""
    return roster_frame(
        [
            {
                "merchant_id": m,
                "utc_timestamp": "2026-01-01T10:00:00.000000Z",
                "utc_day": "2026-01-01",
                "is_virtual": v,
            }
            for m, (_mcc, _c, _ch, v) in ATTRIBUTES.items()
        ]
    )


# --------------------------------------------------------------------------------------------


def test_good_seed_is_bplus_with_full_shape() -> None:
    card = score_seed(good_inputs())
    assert card["verdict"] == PASS_BPLUS
    for key in (
        "generated_utc",
        "phase",
        "segment",
        "baseline_authority",
        "paths",
        "thresholds",
        "metrics",
        "hard_gates",
        "roster_posture",
        "verdict",
        "gate_ids",
        "rails",
        "collapse_flags",
        "advisory",
        "gamma_clipped_share",
        "policy_fingerprints",
        "floor_diagnostic",
        "s3_diagnostics",
    ):
        assert key in card
    assert card["generated_utc"] == CREATED
    assert card["baseline_authority"]["lineage_tokens"]["seed"] == "42"
    assert card["baseline_authority"]["runs_root"] == f"runs/{run_id_of(42)}"
    assert card["paths"]["s1_glob"].endswith(f"seed=42/manifest_fingerprint={MF}/*.parquet")
    assert card["paths"]["roster_path"].endswith("arrival_roster.jsonl")
    assert set(card["hard_gates"]["B"]) == {k for k, _ in GATE_KEYS}
    assert all(card["hard_gates"]["B"].values()) and all(card["hard_gates"]["BPLUS"].values())
    assert card["gate_ids"]["s4_mass_conservation"] == "T-S4-05"
    assert card["gates"][0]["id"] == "T-S1-01" and len(card["gates"]) == 11
    assert set(card["rails"]) == {"R-S2", "R-S3", "R-S7", "R-S8", "R-SCH"}
    assert all(r["pass"] for r in card["rails"].values())
    assert [a["id"] for a in card["advisory"]] == [
        "X-S1-UNIF",
        "X-S3-SIGMA",
        "X-S4-P75",
        "X-S5-HOR",
    ]
    sigma = next(a for a in card["advisory"] if a["id"] == "X-S3-SIGMA")
    assert sigma["value"] == 1.0 and sigma["pass_b"] is False  # scalar sigma in the fixture
    assert card["collapse_flags"] == {"s1_near_uniform": False, "s4_monolithic": False}
    assert card["thresholds"]["B"]["s4_max_p_group_median_max"] == 0.85
    assert card["thresholds"]["BPLUS"]["s1_merchant_hhi_iqr_min"] == 0.10
    s1 = card["metrics"]["s1"]
    assert s1["merchant_hhi_iqr"] == pytest.approx(0.16)
    assert s1["top1_top2_gap_median"] == pytest.approx(0.35)
    assert card["metrics"]["s4"]["entropy_p50"] == pytest.approx(
        -(0.6 * np.log(0.6) + 0.4 * np.log(0.4))
    )
    assert card["floor_diagnostic"]["available"] is True
    assert card["floor_diagnostic"]["share_n_groups_eq_1"] == 0.0
    assert card["policy_fingerprints"] == PINNED
    assert card["roster_posture"]["preconditions"]["ready_for_realism_grading"] is True
    # JSON-ready (no NaN) and deterministic.
    json.dumps(card, allow_nan=False)
    assert pretty_json(score_seed(good_inputs())) == pretty_json(card)


def test_b_band_only() -> None:
    card = score_seed(good_inputs(s4=s4_frame((0.8, 0.2))))
    row = next(g for g in card["gates"] if g["id"] == "T-S4-01")
    assert row["pass_b"] and not row["pass_bplus"]
    assert card["verdict"] == PASS_B


def test_uniform_s1_fails_and_flags_collapse() -> None:
    uniform = {m: [1.0 / len(ps)] * len(ps) for m, ps in WEIGHTS.items()}
    card = score_seed(good_inputs(s1=s1_frame(uniform, source="uniform")))
    assert card["verdict"] == FAIL_REALISM
    assert card["collapse_flags"]["s1_near_uniform"] is True
    assert card["hard_gates"]["B"]["s1_residual_abs_uniform_median"] is False
    unif = next(a for a in card["advisory"] if a["id"] == "X-S1-UNIF")
    assert unif["value"] == 1.0 and not unif["pass_b"]


def test_monolithic_s4_flags_collapse() -> None:
    card = score_seed(good_inputs(s4=s4_frame((1.0, 0.0))))
    assert card["collapse_flags"]["s4_monolithic"] is True
    assert card["verdict"] == FAIL_REALISM


def test_smoke_roster_is_invalid_for_grading() -> None:
    card = score_seed(good_inputs(roster=smoke_roster()))
    roster = card["roster_posture"]
    assert card["verdict"] == INVALID_FOR_GRADING
    assert roster["horizon_span_days"] == 1
    assert roster["merchant_day_repeat_ge2_total"] == 0
    assert roster["class_channel_coverage_observable"] is False
    assert roster["class_channel_retained"] is None
    assert roster["preconditions"] == {
        "horizon_ge_28_days": False,
        "repeated_arrivals_present": False,
        "class_channel_retained": False,
        "ready_for_realism_grading": False,
    }


def test_missing_roster_is_invalid() -> None:
    card = score_seed(good_inputs(roster=None))
    assert card["roster_posture"]["roster_present"] is False
    assert card["roster_posture"]["arrival_total"] == 0
    assert card["verdict"] == INVALID_FOR_GRADING


@pytest.mark.parametrize(
    ("override", "rail", "reason"),
    [
        ({"s7_audit_report": None}, "R-S7", "missing"),
        ({"s8_flag": None}, "R-S8", "missing"),
        ({"s8_flag": "garbage\n"}, "R-S8", "no sha256_hex"),
        ({"s2_run_report": None}, "R-S2", "missing"),
        (
            {"s2_run_report": {"summary": {"overall_status": "FAIL", "fail_count": 1}}},
            "R-S2",
            "overall_status='FAIL'",
        ),
        ({"s7_audit_report": {"summary": {"overall_status": "PASS"}}}, "R-S7", "fail_count"),
    ],
)
def test_rails_degrade_honestly(override: dict[str, object], rail: str, reason: str) -> None:
    card = score_seed(good_inputs(**override))
    assert card["rails"][rail]["pass"] is False
    assert reason in card["rails"][rail]["reason"]
    assert card["verdict"] == FAIL_REALISM  # gates all pass, the rail vetoes


def test_missing_s3_report_fails_its_rail_and_falls_back_to_table() -> None:
    card = score_seed(good_inputs(s3_run_report=None))
    assert card["rails"]["R-S3"]["pass"] is False
    assert card["metrics"]["s3"]["rng_accounting_source"] == "table"


def test_schema_rail_catches_dtype_and_provenance() -> None:
    bad_dtype = good_inputs(s1=s1_frame().with_columns(pl.col("p_weight").cast(pl.Float32)))
    card = score_seed(bad_dtype)
    assert card["rails"]["R-SCH"]["pass"] is False
    assert "s1_site_weights" in card["rails"]["R-SCH"]["problems"]
    bad_prov = good_inputs(s3=s3_frame().with_columns(rng_stream_id=pl.lit("")))
    card = score_seed(bad_prov)
    assert "rng_stream_id" in card["rails"]["R-SCH"]["reason"]
    assert card["verdict"] == FAIL_REALISM


def test_roster_metrics_by_hand() -> None:
    rows = [
        (1, "2026-01-01T01:00:00.000000Z", "2026-01-01", False),
        (1, "2026-01-01T02:00:00.000000Z", "2026-01-01", None),
        (1, "2026-01-03T02:00:00.000000Z", "2026-01-03", False),
        (2, "2026-01-01T03:00:00.000000Z", "2026-01-01", True),
    ]
    frame = pl.DataFrame(
        rows,
        schema={
            "merchant_id": pl.UInt64,
            "utc_timestamp": pl.String,
            "utc_day": pl.String,
            "is_virtual": pl.Boolean,
        },
        orient="row",
    )
    m = roster_metrics(frame, attributes_frame())
    assert m["arrival_total"] == 4
    assert m["virtual_arrival_total"] == 1  # null is_virtual counts as false
    assert m["physical_arrival_total"] == 3
    assert m["utc_day_count"] == 2
    assert (m["utc_day_min"], m["utc_day_max"]) == (dt.date(2026, 1, 1), dt.date(2026, 1, 3))
    assert m["horizon_span_days"] == 3
    assert m["merchant_day_total"] == 3
    assert m["merchant_day_repeat_ge2_total"] == 1
    assert m["merchant_day_repeat_ge2_share"] == pytest.approx(1 / 3)
    assert m["merchant_total"] == 2 and m["merchants_with_repeat_day_total"] == 1
    assert m["arrivals_per_merchant_day_median"] == 1.0
    assert m["preconditions"]["repeated_arrivals_present"] is False
    assert m["class_channel_coverage_observable"] is False  # no channel field
    assert m["class_channel_retained"] is None


def test_coverage_cells() -> None:
    full = roster_metrics(roster_frame(), attributes_frame())
    assert full["class_channel_retained"] is True
    assert full["class_channel_cells_world"] == [
        "digital|card_not_present",
        "physical_retail|card_present",
        "services|card_present",
    ]
    without_services = roster_frame([r for r in roster_rows() if r["merchant_id"] != 2])
    m = roster_metrics(without_services, attributes_frame())
    assert m["class_channel_coverage_observable"] is True
    assert m["class_channel_retained"] is False
    assert m["class_channel_cells_missing"] == ["services|card_present"]
    assert m["preconditions"]["ready_for_realism_grading"] is False
    wrong_mcc = roster_frame(
        [{**r, "mcc": 1234} if r["merchant_id"] == 1 else r for r in roster_rows()]
    )
    m = roster_metrics(wrong_mcc, attributes_frame())
    assert m["roster_mcc_mismatch_rows"] == 56 and m["class_channel_retained"] is False
    no_world = roster_metrics(roster_frame(), None)
    assert no_world["class_channel_coverage_observable"] is False
    assert no_world["coverage_reason"] == "merchant_attributes missing"


def test_repeat_requires_every_merchant() -> None:
    rows = roster_rows()
    # merchant 3 keeps only one arrival per day: median stays 2, but not every merchant repeats
    rows = [r for r in rows if not (r["merchant_id"] == 3 and r["utc_timestamp"][11:13] == "11")]
    m = roster_metrics(roster_frame(rows), attributes_frame())
    assert m["arrivals_per_merchant_day_median"] == 2.0
    assert m["merchants_with_repeat_day_total"] == 3
    assert m["preconditions"]["repeated_arrivals_present"] is False


def test_floor_diagnostic_unavailable_without_site_timezones() -> None:
    card = score_seed(good_inputs(site_timezones=None))
    assert card["floor_diagnostic"] == {"available": False, "reason": "site_timezones missing"}
    assert card["verdict"] == PASS_BPLUS  # diagnostic only


# --------------------------------------------------------------------------------------------
# loader


def write_seed_home(home: StorageHome, inputs: SeedInputs) -> None:
    """Publish ``inputs`` at their dictionary paths (test fixture, plain writes)."""
    plan = inputs.plan_tokens()
    run = inputs.run_tokens()

    def put(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    put(
        home.path("run_receipt", {"run_id": inputs.run_id}),
        canonical_json(
            {
                "run_id": inputs.run_id,
                "seed": inputs.seed,
                "parameter_hash": inputs.parameter_hash,
                "manifest_fingerprint": inputs.manifest_fingerprint,
                "created_utc": CREATED,
            }
        ),
    )
    for ds, frame in (
        ("s1_site_weights", inputs.s1),
        ("s3_day_effects", inputs.s3),
        ("s4_group_weights", inputs.s4),
        ("merchant_attributes", inputs.merchant_attributes),
        ("site_timezones", inputs.site_timezones),
    ):
        folder = home.path(ds, plan)
        folder.mkdir(parents=True, exist_ok=True)
        write_parquet_part(frame, folder)
    assert inputs.roster is not None
    lines = [
        json.dumps({k: v for k, v in row.items() if v is not None}, sort_keys=True)
        for row in inputs.roster.to_dicts()
    ]
    put(home.path("s5_arrival_roster", run), ("\n".join(lines) + "\n").encode())
    put(home.path("s2_run_report", plan), pretty_json(inputs.s2_run_report))
    put(home.path("s3_run_report", plan), pretty_json(inputs.s3_run_report))
    put(home.path("s7_audit_report", plan), pretty_json(inputs.s7_audit_report))
    put(
        home.path("validation_passed_flag_2B", {"manifest_fingerprint": MF}),
        (inputs.s8_flag or "").encode(),
    )
    sealed = [
        {"asset_id": pid, "version_tag": "v1", "sha256_hex": d, "path": "x", "partition": {}}
        for pid, d in inputs.policy_digests.items()
    ]
    sealed.append(
        {
            "asset_id": "site_locations",
            "version_tag": "v",
            "sha256_hex": "f" * 64,
            "path": "y",
            "partition": {},
        }
    )
    put(home.path("sealed_inputs_2B", plan), canonical_json(sealed))


@pytest.fixture
def home(tmp_path: Path) -> StorageHome:
    return StorageHome(root=tmp_path / "home", policy_root=tmp_path / "policies")


def test_load_seed_inputs_round_trip(home: StorageHome) -> None:
    inputs = good_inputs()
    write_seed_home(home, inputs)
    kw = {"seed": 42, "manifest_fingerprint": MF, "parameter_hash": PH, "run_id": run_id_of(42)}
    loaded = load_seed_inputs(home, **kw)
    assert loaded.policy_digests == PINNED
    assert loaded.generated_utc == CREATED
    assert loaded.s1.equals(inputs.s1)
    assert pretty_json(score_seed(loaded)) == pretty_json(score_seed(inputs))

    home.path("s7_audit_report", loaded.plan_tokens()).unlink()
    home.path("validation_passed_flag_2B", {"manifest_fingerprint": MF}).unlink()
    degraded = score_seed(load_seed_inputs(home, **kw))
    assert degraded["rails"]["R-S7"]["pass"] is False
    assert degraded["rails"]["R-S8"]["pass"] is False


def test_load_seed_inputs_pins_lineage(home: StorageHome) -> None:
    write_seed_home(home, good_inputs())
    with pytest.raises(SegmentError) as exc:
        load_seed_inputs(
            home, seed=42, manifest_fingerprint=MF, parameter_hash="e" * 64, run_id=run_id_of(42)
        )
    assert exc.value.code == "2B-CERT-002"
    with pytest.raises(SegmentError) as exc:
        load_seed_inputs(
            home, seed=7, manifest_fingerprint=MF, parameter_hash=PH, run_id=run_id_of(7)
        )
    assert exc.value.code == "2B-CERT-001"
    for f in home.path("s4_group_weights", {"seed": "42", "manifest_fingerprint": MF}).iterdir():
        f.unlink()
    with pytest.raises(SegmentError) as exc:
        load_seed_inputs(
            home, seed=42, manifest_fingerprint=MF, parameter_hash=PH, run_id=run_id_of(42)
        )
    assert exc.value.code == "2B-CERT-001" and exc.value.dataset == "s4_group_weights"


def test_roster_is_read_without_its_timestamps(tmp_path: Path) -> None:
    from segment2b.certification.scorecard import _read_roster

    path = tmp_path / "arrival_roster.jsonl"
    rows = [
        {
            "channel": "card_present",
            "is_virtual": False,
            "mcc": 5411,
            "merchant_id": 7,
            "utc_day": "2026-01-01",
            "utc_timestamp": "2026-01-01T09:00:00.000000Z",
        },
        {
            "merchant_id": 2**64 - 1,
            "utc_day": "2026-01-02",
            "utc_timestamp": "2026-01-02T00:00:00.000000Z",
        },
    ]
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    got = _read_roster(path)
    assert got is not None
    assert got.columns == ["merchant_id", "utc_day", "is_virtual", "channel", "mcc"]
    assert got.rows() == [
        (7, "2026-01-01", False, "card_present", 5411),
        (2**64 - 1, "2026-01-02", None, None, None),
    ]
    assert _read_roster(tmp_path / "absent.jsonl") is None
    path.write_text(" \n\n")
    empty = _read_roster(path)
    assert empty is not None and empty.height == 0 and "merchant_id" in empty.columns
    path.write_text('{"merchant_id": 1, "utc_day": "2026-01-01"\n')
    with pytest.raises(SegmentError) as err:
        _read_roster(path)
    assert err.value.code == "2B-CERT-020"
