"""S1 metrics (certification.md §3) on hand-computed tables, and the S1 gate rows (§4)."""

from __future__ import annotations

import math

import polars as pl
import pytest

from segment2b.certification.gates import S1_GATES, Gate
from segment2b.certification.s1_metrics import s1_gate_results, s1_metrics


def _s1(rows: list[tuple[int, str, int, float, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "merchant_id": pl.UInt64,
            "legal_country_iso": pl.String,
            "site_order": pl.Int32,
            "p_weight": pl.Float64,
            "weight_source": pl.String,
        },
        orient="row",
    )


HAND = _s1(
    [
        # A: p = (.5, .3, .2) across two countries (one merchant, K = 3).
        (1, "FR", 1, 0.5, "profile_mixture_v2:hub_spoke"),
        (1, "FR", 2, 0.3, "profile_mixture_v2:hub_spoke"),
        (1, "GB", 1, 0.2, "profile_mixture_v2:hub_spoke"),
        # B: (.6, .4).
        (2, "US", 1, 0.6, "uniform"),
        (2, "US", 2, 0.4, "uniform"),
        # C: a single site.
        (3, "JP", 1, 1.0, "uniform"),
        # D: uniform over 4.
        *[(4, "DE", o, 0.25, "uniform") for o in range(1, 5)],
    ]
)


def test_hand_computed_metrics() -> None:
    m = s1_metrics(HAND)
    assert m["merchant_count"] == 4
    # Merchant residual medians: A median(1/6, 1/30, 2/15) = 2/15; B 0.1; C 0; D 0.
    # Median of (0, 0, 0.1, 2/15) = (0 + 0.1) / 2.
    assert m["residual_abs_uniform_median"] == pytest.approx(0.05, abs=1e-15)
    # Gaps: A .2, B .2, C 1 − 0, D 0 → median .2.
    assert m["top1_top2_gap_median"] == pytest.approx(0.2, abs=1e-15)
    # HHI: A .38, B .52, C 1, D .25 → sorted (.25, .38, .52, 1); nearest rank:
    # q25 index round(0.75) = 1 → .38; q75 index round(2.25) = 2 → .52.
    assert m["merchant_hhi_q25"] == pytest.approx(0.38)
    assert m["merchant_hhi_q75"] == pytest.approx(0.52)
    assert m["merchant_hhi_iqr"] == pytest.approx(0.14)
    assert m["uniform_row_share"] == pytest.approx(7 / 10)


def test_uniform_world_has_exact_zero_residual_and_gap() -> None:
    rows = [
        (mid, "GB", o, 1.0 / k, "uniform")
        for mid, k in ((1, 3), (2, 7), (3, 2), (4, 11))
        for o in range(1, k + 1)
    ]
    m = s1_metrics(_s1(rows))
    assert m["residual_abs_uniform_median"] == 0.0
    assert m["top1_top2_gap_median"] == 0.0
    assert m["uniform_row_share"] == 1.0
    results = {r["id"]: (r["pass_b"], r["pass_bplus"]) for r in s1_gate_results(m)}
    assert results["T-S1-01"] == (False, False)
    assert results["T-S1-02"] == (False, False)
    assert results["X-S1-UNIF"] == (False, False)


def test_even_number_of_merchants_uses_true_median() -> None:
    rows = [
        (1, "GB", 1, 0.9, "x"),
        (1, "GB", 2, 0.1, "x"),
        (2, "GB", 1, 0.7, "x"),
        (2, "GB", 2, 0.3, "x"),
    ]
    m = s1_metrics(_s1(rows))
    assert m["top1_top2_gap_median"] == pytest.approx((0.8 + 0.4) / 2)


def test_gate_rows_and_inclusive_bounds() -> None:
    gates = {g.id: g for g in S1_GATES}
    assert list(gates) == ["T-S1-01", "T-S1-02", "T-S1-03", "X-S1-UNIF"]
    assert gates["T-S1-01"].evaluate(0.003) == (True, False)
    assert gates["T-S1-01"].evaluate(0.006) == (True, True)
    assert gates["T-S1-02"].evaluate(0.0299) == (False, False)
    assert gates["T-S1-03"].evaluate(0.10) == (True, True)
    assert gates["X-S1-UNIF"].evaluate(0.90) == (False, False)  # strict "<"
    assert gates["X-S1-UNIF"].evaluate(0.0) == (True, True)
    assert gates["X-S1-UNIF"].kind == "report_only"
    assert gates["T-S1-01"].evaluate(math.nan) == (False, False)
    assert Gate("T-X", "m", 0.85, 0.78, "<=").evaluate(0.8) == (True, False)


def test_gate_results_carry_value_and_thresholds() -> None:
    rows = s1_gate_results(s1_metrics(HAND))
    first = rows[0]
    assert first["id"] == "T-S1-01" and first["metric"] == "residual_abs_uniform_median"
    assert first["value"] == pytest.approx(0.05)
    assert (first["b_threshold"], first["bplus_threshold"], first["op"]) == (0.003, 0.006, ">=")
    assert first["pass_b"] and first["pass_bplus"]
