"""S1 realism metrics (certification.md §3), from ``s1_site_weights`` alone.

Universe: every row of the table; per merchant m (all its countries): residual
``median_i |p_i − 1/n_m|``, gap ``top1 − top2`` (top2 = 0 for a single site) and
``hhi = Σ p_i²``. Per-merchant statistics are one polars ``group_by``; the cross-merchant
median and nearest-rank quantiles follow ``certification.stats`` exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from segment2b.certification.gates import S1_GATES, Gate, gate_results
from segment2b.certification.stats import median, nearest_rank

__all__ = ["S1_GATES", "Gate", "s1_gate_results", "s1_metrics"]


def s1_metrics(s1: pl.DataFrame) -> dict[str, float | int]:
    """The §3 S1 metrics plus X-S1-UNIF's ``uniform_row_share``.

    Keys: ``merchant_count``, ``residual_abs_uniform_median`` (median of merchant medians),
    ``top1_top2_gap_median``, ``merchant_hhi_q25``, ``merchant_hhi_q75``, ``merchant_hhi_iqr``
    (nearest rank), ``uniform_row_share`` (share of rows with ``weight_source == "uniform"``).
    """
    per_merchant = (
        s1.lazy()
        .with_columns(n_sites=pl.len().over("merchant_id"))
        .group_by("merchant_id")
        .agg(
            resid=(pl.col("p_weight") - 1.0 / pl.col("n_sites")).abs().median(),
            top1=pl.col("p_weight").max(),
            # Second-largest value (not second distinct): 0.0 when the merchant has one site.
            top2=pl.col("p_weight").sort(descending=True).get(1, null_on_oob=True).fill_null(0.0),
            hhi=(pl.col("p_weight") ** 2).sum(),
        )
        .collect()
    )
    hhi = per_merchant["hhi"].to_numpy()
    q25 = nearest_rank(hhi, 0.25)
    q75 = nearest_rank(hhi, 0.75)
    uniform = float((s1["weight_source"] == "uniform").mean() or 0.0) if s1.height else 0.0
    return {
        "merchant_count": per_merchant.height,
        "residual_abs_uniform_median": median(per_merchant["resid"].to_numpy()),
        "top1_top2_gap_median": median((per_merchant["top1"] - per_merchant["top2"]).to_numpy()),
        "merchant_hhi_q25": q25,
        "merchant_hhi_q75": q75,
        "merchant_hhi_iqr": q75 - q25,
        "uniform_row_share": uniform,
    }


def s1_gate_results(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per S1 gate: id, metric, observed value, thresholds, pass at B / B+."""
    return gate_results(S1_GATES, metrics)
