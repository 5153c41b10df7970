"""S3/S4 certification metrics on hand-computed cases (certification.md §2, §3, §8, §10)."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from segment2b.certification.s3_metrics import (
    S3_GATES,
    s3_diagnostics,
    s3_gate_results,
    s3_metrics,
)
from segment2b.certification.s4_metrics import (
    S4_GATES,
    S4_REPORT_ONLY_GATES,
    floor_diagnostic,
    floor_movement,
    gamma_echo_mismatches,
    regularizer_movement,
    s4_gate_results,
    s4_metrics,
)

D1, D2 = dt.date(2026, 1, 1), dt.date(2026, 1, 2)


def s3_table() -> pl.DataFrame:
    rows = [
        (1, D1, "A", 1.0, 0.10),
        (1, D1, "B", 1.2, 0.12),
        (1, D2, "A", 0.8, 0.10),
        (1, D2, "B", 0.8, 0.12),
        (2, D1, "A", 1.1, 0.09),
    ]
    return pl.DataFrame(
        rows, schema=["merchant_id", "utc_day", "tz_group_id", "gamma", "sigma_gamma"], orient="row"
    ).with_columns(pl.col("gamma").log().alias("log_gamma"))


def test_s3_metrics_by_hand() -> None:
    acc = {
        "rows_written": 5,
        "nonpositive_gamma_rows": 0,
        "gamma_clipped_rows": 1,
        "max_abs_log_gamma": 0.2,
    }
    m = s3_metrics(s3_table(), acc)
    gstd1 = math.sqrt((0.05**2 + 0.25**2 + 0.15**2 + 0.15**2) / 3)  # ddof=1; merchant 2 -> 0.0
    assert m["merchant_count"] == 2
    assert m["merchant_gamma_std_median"] == pytest.approx(gstd1 / 2, rel=1e-12)
    assert m["merchant_gamma_std_p90"] == pytest.approx(gstd1, rel=1e-12)  # idx round(0.9)=1
    assert m["merchant_day_multi_tz_count"] == 2
    assert m["merchant_day_tz_nonzero_share"] == 0.5  # (1, D2) has equal gammas -> std 0
    assert m["merchant_day_tz_std_median"] == pytest.approx(math.sqrt(0.02) / 2, rel=1e-12)
    assert m["gamma_median"] == 1.0
    assert m["gamma_iqr"] == pytest.approx(1.1 - 0.8)  # nearest rank: idx 3 and idx 1
    assert (m["gamma_q01"], m["gamma_q99"]) == (0.8, 1.2)
    assert m["gamma_clipped_share"] == 0.2
    assert m["gamma_stability_proxy_pass"] == 0.0  # clipped share 0.2 > 0.01
    results = {r["id"]: r for r in s3_gate_results(m)}
    assert results["T-S3-01"]["pass_b"] and results["T-S3-01"]["pass_bplus"]
    assert results["T-S3-02"]["pass_b"]
    assert not results["T-S3-03"]["pass_b"]
    assert [g.id for g in S3_GATES] == ["T-S3-01", "T-S3-02", "T-S3-03"]


def test_s3_metrics_from_table_only() -> None:
    m = s3_metrics(s3_table())
    assert m["rng_accounting_source"] == "table"
    assert m["max_abs_log_gamma"] == pytest.approx(-math.log(0.8))
    assert m["gamma_stability_proxy_pass"] == 1.0


def test_no_multi_tz_days_gives_zero_share() -> None:
    m = s3_metrics(s3_table().filter(pl.col("tz_group_id") == "A"))
    assert m["merchant_day_multi_tz_count"] == 0
    assert m["merchant_day_tz_nonzero_share"] == 0.0
    assert not s3_gate_results(m)[1]["pass_b"]  # T-S3-02 needs > 0


def test_s3_diagnostics_sigma() -> None:
    d = s3_diagnostics(s3_table())
    assert d["sigma_distinct_values"] == 3
    assert d["sigma_merchant_iqr"] == pytest.approx(0.11 - 0.09)  # merchant medians 0.11, 0.09
    assert d["sigma_within_merchant_iqr_median"] == pytest.approx(0.01)  # (0.02 + 0) / 2
    assert d["weekly_amp_rms_estimate"] is None  # two days cannot carry a weekly fit
    report = {"diagnostics": {"weekly_amp_median": 0.01, "weekly_term_abs_max": 0.012}}
    assert s3_diagnostics(s3_table(), report)["weekly_term_abs_max"] == 0.012


def _weekly_table(amp: float) -> pl.DataFrame:
    days = [D1 + dt.timedelta(days=i) for i in range(90)]
    rows = []
    for m, phase in ((1, 0.3), (2, 2.0)):
        for d in days:
            w = amp * math.sin(2.0 * math.pi * d.weekday() / 7 + phase)
            sigma = 0.1
            rows.append((m, d, "A", sigma, -0.5 * sigma * sigma + w))
    return pl.DataFrame(
        rows,
        schema=["merchant_id", "utc_day", "tz_group_id", "sigma_gamma", "log_gamma"],
        orient="row",
    )


def test_weekly_amplitude_actually_present() -> None:
    d = s3_diagnostics(_weekly_table(0.05))
    assert d["weekly_fit_amp_median"] == pytest.approx(0.05, rel=1e-9)
    assert 0.045 < d["weekly_amp_rms_estimate"] <= 0.05
    flat = s3_diagnostics(_weekly_table(0.0))
    assert flat["weekly_amp_rms_estimate"] == pytest.approx(0.0, abs=1e-12)


def s4_table() -> pl.DataFrame:
    rows = [
        (1, D1, "A", 1.0),
        (2, D1, "A", 0.5),
        (2, D1, "B", 0.5),
        (2, D2, "A", 0.96),
        (2, D2, "B", 0.04),
        (3, D1, "A", 0.7),
        (3, D1, "B", 0.2),
        (3, D1, "C", 0.1),
    ]
    return pl.DataFrame(
        rows, schema=["merchant_id", "utc_day", "tz_group_id", "p_group"], orient="row"
    )


def _h(*ps: float) -> float:
    return -sum(p * math.log(p) for p in ps if p > 0)


def test_s4_metrics_by_hand() -> None:
    m = s4_metrics(s4_table())
    assert m["merchant_day_count"] == 4
    assert m["max_p_group_median"] == pytest.approx((0.7 + 0.96) / 2)
    assert m["share_max_p_group_ge_095"] == 0.5  # 1.0 and 0.96
    assert m["share_groups_ge_005_ge_2"] == 0.5  # [0.5, 0.5] and [0.7, 0.2, 0.1]
    assert m["entropy_p50"] == pytest.approx((_h(0.96, 0.04) + _h(0.5, 0.5)) / 2, rel=1e-12)
    assert m["max_p_group_p75"] == 0.96  # sorted [0.5, 0.7, 0.96, 1.0], idx round(2.25) = 2
    assert m["mass_abs_error_max"] <= 1e-12 and m["mass_rows_over_epsilon"] == 0
    assert m["mass_conservation_all_rows"] is True
    assert m["multigroup_merchant_day_count"] == 3
    assert m["max_p_group_median_multigroup"] == 0.7
    assert m["share_max_p_group_ge_095_multigroup"] == pytest.approx(1 / 3)
    rows = {r["id"]: r for r in s4_gate_results(m)}
    assert list(rows) == ["T-S4-01", "T-S4-02", "T-S4-03", "T-S4-04", "T-S4-05", "X-S4-P75"]
    assert rows["T-S4-01"]["pass_b"] and not rows["T-S4-01"]["pass_bplus"]  # 0.83
    assert not rows["T-S4-02"]["pass_b"]  # 0.5 > 0.35
    assert rows["T-S4-03"]["pass_b"] and rows["T-S4-03"]["pass_bplus"]  # 0.5 >= 0.50
    assert rows["T-S4-04"]["pass_b"] and not rows["T-S4-04"]["pass_bplus"]  # ~0.430
    assert rows["T-S4-05"]["pass_b"] and rows["T-S4-05"]["pass_bplus"]
    assert rows["X-S4-P75"]["kind"] == "report_only" and not rows["X-S4-P75"]["pass_b"]
    assert len(S4_GATES) == 5 and len(S4_REPORT_ONLY_GATES) == 1


def test_mass_error_is_measured() -> None:
    bad = s4_table().with_columns(
        pl.when(pl.col("merchant_id") == 1).then(1.0 + 1e-9).otherwise("p_group").alias("p_group")
    )
    m = s4_metrics(bad)
    assert m["mass_abs_error_max"] == pytest.approx(1e-9)
    assert m["mass_rows_over_epsilon"] == 1 and m["mass_conservation_all_rows"] is False
    assert not {r["id"]: r for r in s4_gate_results(m)}["T-S4-05"]["pass_b"]


def test_floor_diagnostic_by_hand() -> None:
    tz = pl.DataFrame(
        {
            "merchant_id": [1, 1, 2, 2, 3, 3, 3, 4],
            "tzid": ["A", "A", "A", "B", "A", "B", "C", "A"],
        }
    )
    f = floor_diagnostic(s4_table(), tz)
    assert f["merchant_days_total"] == 4
    assert f["merchant_share_single_tz"] == 0.5  # merchants 1 and 4
    assert f["share_n_groups_eq_1"] == 0.25
    assert f["share_max_p_ge_095"] == 0.5
    assert f["share_max_p_ge_095_given_multigroup"] == pytest.approx(1 / 3)
    assert f["tail_floor_binding"] is False
    binding = floor_diagnostic(s4_table().filter(pl.col("utc_day") == D1), tz)
    assert binding["tail_floor_binding"] is True
    assert binding["share_max_p_ge_095_given_multigroup"] == 0.0


def test_floor_movement_material() -> None:
    base = {"share_n_groups_eq_1": 0.48, "share_max_p_ge_095": 0.49}
    moved = floor_movement(base, {"share_n_groups_eq_1": 0.48, "share_max_p_ge_095": 0.47})
    assert moved["delta"]["share_max_p_ge_095"] == pytest.approx(-0.02)
    assert moved["material"] is True
    still = floor_movement(base, {"share_n_groups_eq_1": 0.485, "share_max_p_ge_095": 0.49})
    assert still["material"] is False


def test_regularizer_movement_by_hand() -> None:
    prov = pl.DataFrame(
        {
            "delta_mass": [0.0, 0.1, 0.2, 0.3, 0.0],
            "eligible": [False, True, True, True, True],
            "applied": [False, True, True, True, False],
        }
    )
    mv = regularizer_movement(prov)
    assert mv["delta_mass_median"] == 0.1
    assert mv["delta_mass_p90"] == 0.3  # sorted [0, 0, .1, .2, .3], idx round(3.6) = 4
    assert mv["delta_mass_median_eligible"] == pytest.approx(0.15)
    assert mv["delta_mass_p90_eligible"] == 0.3  # idx round(2.7) = 3
    assert mv["applied_share_of_eligible"] == 0.75
    assert mv["eligible_merchant_days"] == 4 and mv["applied_merchant_days"] == 3
    assert np.isclose(mv["delta_mass_mean"], 0.12)


def _echo_keys(frame: pl.DataFrame) -> list[tuple]:
    return [tuple(r) for r in frame.select("merchant_id", "utc_day", "tz_group_id").rows()]


def test_gamma_echo_compares_aligned_tables_in_place_and_joins_otherwise() -> None:
    s3 = s3_table()
    assert gamma_echo_mismatches(s3, s3).height == 0
    # Aligned keys, one gamma changed: that row, with both values.
    changed = s3.with_columns(
        pl.when(pl.int_range(pl.len()) == 2).then(0.5).otherwise(pl.col("gamma")).alias("gamma")
    )
    bad = gamma_echo_mismatches(changed, s3)
    assert _echo_keys(bad) == [(1, D2, "A")]
    assert bad.row(0, named=True)["gamma"] == 0.5 and bad.row(0, named=True)["gamma_s3"] == 0.8
    # Same rows in another order: paired by key, nothing to report.
    assert gamma_echo_mismatches(s3.reverse(), s3).height == 0
    # A row S4 lacks: reported with its key and a null S4 gamma.
    missing = gamma_echo_mismatches(s3.head(4), s3)
    assert _echo_keys(missing) == [(2, D1, "A")]
    assert missing.row(0, named=True)["gamma"] is None
