"""S3 realism metrics, diagnostics and gate rows (``certification.md`` §2, §3, §4, §10).

Pure functions over the published ``s3_day_effects`` table (and the ``rng_accounting`` block of
the S3 run-report). Conventions of §2: true median, nearest-rank quantiles, sample std
(ddof = 1) with a single-row group counting as 0.0, shares as fractions.

Gate rows use the shared :class:`segment2b.certification.gates.Gate`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from segment2b.certification.gates import Gate, gate_results
from segment2b.certification.stats import median, nearest_rank, share

__all__ = [
    "S3_GATES",
    "TZ_STD_NONZERO",
    "Gate",
    "gate_results",
    "s3_diagnostics",
    "s3_gate_results",
    "s3_metrics",
]

S3_GATES: tuple[Gate, ...] = (
    Gate("T-S3-01", "merchant_gamma_std_median", 0.03, 0.04, ">="),
    Gate("T-S3-02", "merchant_day_tz_nonzero_share", 0.0, 0.0, ">"),
    # Boolean gate: the metric is 1.0 when all three T-S3-03 terms hold, else 0.0.
    Gate("T-S3-03", "gamma_stability_proxy_pass", 1.0, 1.0, ">="),
)
"""The S3 rows of the gate table (§4). B+ of T-S3-01 adds an unquantified "visible upper tail"
(reported via ``merchant_gamma_std_p90``, not gated)."""

TZ_STD_NONZERO = 1e-12
"""A merchant-day's across-tz std counts as non-zero when strictly above this."""

CLIPPED_SHARE_MAX = 0.01
MAX_ABS_LOG_GAMMA = 4.0


def s3_gate_results(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """:func:`gate_results` over :data:`S3_GATES`."""
    return gate_results(S3_GATES, metrics)


def _std_or_zero(col: str) -> pl.Expr:
    """Sample std (ddof = 1); a single-row group (null) counts as 0.0 (§2)."""
    return pl.col(col).std(ddof=1).fill_null(0.0).fill_nan(0.0)


def s3_metrics(s3: pl.DataFrame, rng_accounting: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The §3 S3 metrics of one seed.

    Parameters
    ----------
    s3 : polars.DataFrame
        ``s3_day_effects`` rows (``merchant_id, utc_day, tz_group_id, gamma``; ``log_gamma``
        used when the run-report block is absent).
    rng_accounting : Mapping, optional
        ``rng_accounting`` of the S3 run-report (``rows_written, nonpositive_gamma_rows,
        gamma_clipped_rows, max_abs_log_gamma``). Without it those three values are derived from
        the table and the clipped-row count is taken as 0 (``rng_accounting_source = "table"``).

    Returns
    -------
    dict
        ``merchant_count, merchant_gamma_std_median, merchant_gamma_std_p90,
        merchant_day_multi_tz_count, merchant_day_tz_std_median,
        merchant_day_tz_nonzero_share, gamma_median, gamma_iqr, gamma_q01, gamma_q99,
        nonpositive_gamma_rows, max_abs_log_gamma, gamma_clipped_share,
        gamma_stability_proxy_pass`` (1.0 / 0.0) and ``rng_accounting_source``.
    """
    per_m = s3.group_by("merchant_id").agg(_std_or_zero("gamma").alias("gstd"))
    gstd = per_m["gstd"].to_numpy()
    md = (
        s3.group_by(["merchant_id", "utc_day"])
        .agg(pl.col("tz_group_id").n_unique().alias("n_tz"), _std_or_zero("gamma").alias("tzstd"))
        .filter(pl.col("n_tz") >= 2)
    )
    tzstd = md["tzstd"].to_numpy()
    gamma = s3["gamma"].to_numpy()
    if rng_accounting is not None:
        rows_written = int(rng_accounting.get("rows_written", s3.height))
        nonpositive = int(rng_accounting.get("nonpositive_gamma_rows", 0))
        clipped = int(rng_accounting.get("gamma_clipped_rows", 0))
        max_abs_lg = float(rng_accounting.get("max_abs_log_gamma", 0.0))
        source = "run_report"
    else:
        rows_written = s3.height
        nonpositive = int((gamma <= 0.0).sum())
        clipped = 0
        lg = s3["log_gamma"].to_numpy() if "log_gamma" in s3.columns else np.log(gamma)
        max_abs_lg = float(np.abs(lg).max()) if lg.size else 0.0
        source = "table"
    clipped_share = clipped / rows_written if rows_written else 0.0
    stability = (
        nonpositive == 0 and clipped_share <= CLIPPED_SHARE_MAX and max_abs_lg <= MAX_ABS_LOG_GAMMA
    )
    return {
        "merchant_count": per_m.height,
        "merchant_gamma_std_median": median(gstd),
        "merchant_gamma_std_p90": nearest_rank(gstd, 0.90),
        "merchant_day_multi_tz_count": md.height,
        "merchant_day_tz_std_median": median(tzstd) if tzstd.size else 0.0,
        "merchant_day_tz_nonzero_share": share(tzstd > TZ_STD_NONZERO) if tzstd.size else 0.0,
        "gamma_median": median(gamma),
        "gamma_iqr": nearest_rank(gamma, 0.75) - nearest_rank(gamma, 0.25),
        "gamma_q01": nearest_rank(gamma, 0.01),
        "gamma_q99": nearest_rank(gamma, 0.99),
        "nonpositive_gamma_rows": nonpositive,
        "max_abs_log_gamma": max_abs_lg,
        "gamma_clipped_share": clipped_share,
        "gamma_stability_proxy_pass": 1.0 if stability else 0.0,
        "rng_accounting_source": source,
    }


def _weekly_fit_amplitudes(x: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Per-row least-squares amplitude of ``a·cos(phase) + b·sin(phase) + c`` (rows = merchants)."""
    design = np.column_stack([np.cos(phase), np.sin(phase), np.ones_like(phase)])
    coef = np.linalg.lstsq(design, x.T, rcond=None)[0]
    return np.hypot(coef[0], coef[1])


def s3_diagnostics(s3: pl.DataFrame, run_report: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """§10 advisory S3 diagnostics: σ heterogeneity and the weekly component actually present.

    Returns
    -------
    dict
        - ``sigma_distinct_values``: distinct ``sigma_gamma`` values (baseline scalar mode: 1).
        - ``sigma_merchant_iqr``: nearest-rank IQR, across merchants, of each merchant's median σ.
        - ``sigma_within_merchant_iqr_median``: median over merchants of the IQR of σ over the
          merchant's own rows (tz-group multipliers only).
        - ``weekly_amp_rms_estimate``: data estimate of the RMS weekly amplitude. Per merchant,
          the merchant-day mean of ``log γ + σ²/2`` (= weekly term + noise) is fitted with a
          7-day sinusoid (weekday phase) and, as a noise control, with an 11-day sinusoid;
          ``sqrt(max(mean(A_7²) − mean(A_11²), 0))``. Needs ``sigma_gamma`` and ``log_gamma``.
        - ``weekly_fit_amp_median`` / ``control_fit_amp_median``: the raw fitted amplitudes.
        - from the run-report ``diagnostics`` block when given: ``weekly_amp_median``,
          ``weekly_amp_max``, ``weekly_term_abs_max``, ``weekly_term_rms`` (exact, as drawn).
    """
    out: dict[str, Any] = {}
    sigma = s3["sigma_gamma"]
    out["sigma_distinct_values"] = int(sigma.n_unique())
    per_m = s3.group_by("merchant_id").agg(
        pl.col("sigma_gamma").median().alias("med"),
        (
            pl.col("sigma_gamma").quantile(0.75, "nearest")
            - pl.col("sigma_gamma").quantile(0.25, "nearest")
        ).alias("iqr"),
    )
    meds = per_m["med"].to_numpy()
    out["sigma_merchant_iqr"] = nearest_rank(meds, 0.75) - nearest_rank(meds, 0.25)
    out["sigma_within_merchant_iqr_median"] = median(per_m["iqr"].to_numpy())

    resid = (
        s3.with_columns(
            (pl.col("log_gamma") + 0.5 * pl.col("sigma_gamma") * pl.col("sigma_gamma")).alias("x")
        )
        .group_by(["merchant_id", "utc_day"])
        .agg(pl.col("x").mean())
        .sort(["merchant_id", "utc_day"])
    )
    days = resid["utc_day"].unique().sort()
    n_days = days.len()
    wide = resid.pivot(on="utc_day", index="merchant_id", values="x", sort_columns=True)
    x = wide.drop("merchant_id").to_numpy()
    if n_days >= 4 and x.size and not np.isnan(x).any():
        weekday = np.array([d.weekday() for d in days.to_list()], dtype=np.float64)
        ordinal = np.arange(n_days, dtype=np.float64)
        a7 = _weekly_fit_amplitudes(x, 2.0 * math.pi * weekday / 7.0)
        a11 = _weekly_fit_amplitudes(x, 2.0 * math.pi * ordinal / 11.0)
        out["weekly_fit_amp_median"] = median(a7)
        out["control_fit_amp_median"] = median(a11)
        out["weekly_amp_rms_estimate"] = math.sqrt(
            max(float(np.mean(a7**2)) - float(np.mean(a11**2)), 0.0)
        )
    else:
        out["weekly_fit_amp_median"] = None
        out["control_fit_amp_median"] = None
        out["weekly_amp_rms_estimate"] = None
    diag = (run_report or {}).get("diagnostics", {})
    for key in ("weekly_amp_median", "weekly_amp_max", "weekly_term_abs_max", "weekly_term_rms"):
        out[key] = diag.get(key)
    return out
