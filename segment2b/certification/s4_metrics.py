"""S4 realism metrics, the realism-floor diagnostic and regularizer movement.

``certification.md`` §3 (S4 metrics over merchant-days of the full S3/S4 grid), §4 (gate rows
T-S4-01..05 and the report-only X-S4-P75), §8 (floor diagnostic) and ``s4-group-weights.md`` §7
(gates split by ``n_groups = 1`` vs ``> 1``). Pure functions over published tables.

Gate rows use the shared :class:`segment2b.certification.gates.Gate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from segment2b.certification.gates import Gate, gate_results
from segment2b.certification.stats import median, nearest_rank, share

__all__ = [
    "EPSILON",
    "FLOOR_MATERIAL_DELTA",
    "S4_GATES",
    "S4_REPORT_ONLY_GATES",
    "floor_diagnostic",
    "floor_movement",
    "gate_results",
    "merchant_day_table",
    "regularizer_movement",
    "s4_gate_results",
    "s4_metrics",
]

EPSILON = 1e-12
"""Mass-conservation tolerance (README decision 14)."""

FLOOR_MATERIAL_DELTA = 0.01
"""|Δ| on either floor share that counts as material movement (§8)."""

S4_GATES: tuple[Gate, ...] = (
    Gate("T-S4-01", "max_p_group_median", 0.85, 0.78, "<="),
    Gate("T-S4-02", "share_max_p_group_ge_095", 0.35, 0.20, "<="),
    Gate("T-S4-03", "share_groups_ge_005_ge_2", 0.35, 0.50, ">="),
    Gate("T-S4-04", "entropy_p50", 0.35, 0.45, ">="),
    Gate("T-S4-05", "mass_abs_error_max", EPSILON, EPSILON, "<="),
)
"""The S4 rows of the gate table (§4)."""

S4_REPORT_ONLY_GATES: tuple[Gate, ...] = (
    Gate("X-S4-P75", "max_p_group_p75", 0.93, 0.88, "<=", kind="report_only"),
)
"""Advisory X-S4-P75 (README decision 13): computed and shown, never part of the verdict."""


def s4_gate_results(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Gate rows T-S4-01..05 then X-S4-P75 evaluated against :func:`s4_metrics` output."""
    return gate_results((*S4_GATES, *S4_REPORT_ONLY_GATES), metrics)


def merchant_day_table(s4: pl.DataFrame) -> pl.DataFrame:
    """One row per merchant-day: ``max_p, n_ge_005, H (nats), mass_err, n_groups``."""
    p = pl.col("p_group")
    return (
        s4.group_by(["merchant_id", "utc_day"])
        .agg(
            p.max().alias("max_p"),
            (p >= 0.05).sum().alias("n_ge_005"),
            pl.when(p > 0.0).then(-p * p.log()).otherwise(0.0).sum().alias("H"),
            (p.sum() - 1.0).abs().alias("mass_err"),
            pl.len().alias("n_groups"),
        )
        .sort(["merchant_id", "utc_day"])
    )


def _centre(md: pl.DataFrame, suffix: str = "") -> dict[str, Any]:
    max_p = md["max_p"].to_numpy()
    return {
        f"max_p_group_median{suffix}": median(max_p),
        f"share_max_p_group_ge_095{suffix}": share(max_p >= 0.95),
        f"share_groups_ge_005_ge_2{suffix}": share(md["n_ge_005"].to_numpy() >= 2),
        f"entropy_p50{suffix}": median(md["H"].to_numpy()),
        f"max_p_group_p75{suffix}": nearest_rank(max_p, 0.75),
    }


def s4_metrics(s4: pl.DataFrame) -> dict[str, Any]:
    """The §3 S4 metrics of one seed, plus the same centre metrics on multi-group days.

    Parameters
    ----------
    s4 : polars.DataFrame
        ``s4_group_weights`` rows (``merchant_id, utc_day, tz_group_id, p_group``).

    Returns
    -------
    dict
        ``merchant_day_count, max_p_group_median, share_max_p_group_ge_095,
        share_groups_ge_005_ge_2, entropy_p50, max_p_group_p75, mass_abs_error_max,
        mass_abs_error_p99, mass_rows_over_epsilon, mass_conservation_all_rows`` and the
        ``*_multigroup`` variants over merchant-days with ``n_groups > 1`` (s4 §7 split; NaN
        when there are none), plus ``multigroup_merchant_day_count``.
    """
    md = merchant_day_table(s4)
    mass_err = md["mass_err"].to_numpy()
    multi = md.filter(pl.col("n_groups") > 1)
    out: dict[str, Any] = {"merchant_day_count": md.height, **_centre(md)}
    out.update(
        {
            "mass_abs_error_max": float(mass_err.max()) if mass_err.size else 0.0,
            "mass_abs_error_p99": nearest_rank(mass_err, 0.99) if mass_err.size else 0.0,
            "mass_rows_over_epsilon": int((mass_err > EPSILON).sum()),
            "mass_conservation_all_rows": bool((mass_err <= EPSILON).all()),
            "multigroup_merchant_day_count": multi.height,
            **_centre(multi, "_multigroup"),
        }
    )
    return out


def floor_diagnostic(s4: pl.DataFrame, site_timezones: pl.DataFrame) -> dict[str, Any]:
    """The tail-floor analyzer of §8 for one run.

    Returns
    -------
    dict
        ``merchant_days_total``; ``merchant_share_single_tz`` (share of merchants in
        ``site_timezones`` with exactly one distinct tzid); ``share_n_groups_eq_1`` (share of
        merchant-days with one group); ``share_max_p_ge_095``; ``share_max_p_ge_095_given_
        multigroup`` (over ``n_groups > 1``; 0.0 if none); ``tail_floor_binding`` =
        ``|share_n_groups_eq_1 − share_max_p_ge_095| ≤ 1e-12``.
    """
    md = merchant_day_table(s4)
    n_groups = md["n_groups"].to_numpy()
    max_p = md["max_p"].to_numpy()
    tz_per_m = site_timezones.group_by("merchant_id").agg(pl.col("tzid").n_unique().alias("k"))
    single_groups = share(n_groups == 1)
    tail = share(max_p >= 0.95)
    multi = n_groups > 1
    return {
        "merchant_days_total": md.height,
        "merchant_share_single_tz": share(tz_per_m["k"].to_numpy() == 1),
        "share_n_groups_eq_1": single_groups,
        "share_max_p_ge_095": tail,
        "share_max_p_ge_095_given_multigroup": share(max_p[multi] >= 0.95),
        "tail_floor_binding": abs(single_groups - tail) <= EPSILON,
    }


def floor_movement(baseline: Mapping[str, Any], candidate: Mapping[str, Any]) -> dict[str, Any]:
    """Baseline / candidate / delta of the two floor shares; material if either |Δ| ≥ 0.01."""
    keys = ("share_n_groups_eq_1", "share_max_p_ge_095")
    delta = {k: float(candidate[k]) - float(baseline[k]) for k in keys}
    return {
        "baseline": {k: baseline[k] for k in keys},
        "candidate": {k: candidate[k] for k in keys},
        "delta": delta,
        "material": any(abs(v) >= FLOOR_MATERIAL_DELTA for v in delta.values()),
    }


def regularizer_movement(provenance: pl.DataFrame) -> dict[str, Any]:
    """How far the regularizer moved the mix: ``delta_mass`` over merchant-days.

    ``provenance`` is the per-merchant-day frame S4 returns (``delta_mass, eligible, applied``).
    Over all merchant-days (single-group days count as 0) and over eligible days only; p90 is
    nearest-rank.
    """
    dm = provenance["delta_mass"].to_numpy()
    elig = provenance["eligible"].to_numpy().astype(bool)
    applied = provenance["applied"].to_numpy().astype(bool)
    dm_e = dm[elig]
    return {
        "merchant_days": int(dm.size),
        "delta_mass_median": median(dm) if dm.size else 0.0,
        "delta_mass_p90": nearest_rank(dm, 0.90) if dm.size else 0.0,
        "delta_mass_max": float(dm.max()) if dm.size else 0.0,
        "eligible_merchant_days": int(elig.sum()),
        "applied_merchant_days": int(applied.sum()),
        "delta_mass_median_eligible": median(dm_e) if dm_e.size else 0.0,
        "delta_mass_p90_eligible": nearest_rank(dm_e, 0.90) if dm_e.size else 0.0,
        "applied_share_of_eligible": float(applied[elig].mean()) if dm_e.size else 0.0,
        "delta_mass_mean": float(np.mean(dm)) if dm.size else 0.0,
    }


ECHO_KEYS = ("merchant_id", "utc_day", "tz_group_id")


def gamma_echo_mismatches(s4: pl.DataFrame, s3: pl.DataFrame) -> pl.DataFrame:
    """Rows where S4's ``gamma`` is not S3's on the same (merchant, UTC day, tz group), or
    where either side has no such row (grain: one row per key; ``gamma`` / ``gamma_s3``, null
    for the missing side).

    Both tables are published in primary-key order, so when their keys match row for row the
    gammas are compared in place; only otherwise is a full join needed to pair them up.
    """
    keys = list(ECHO_KEYS)
    a = s4.select(*keys, "gamma")
    b = s3.select(*keys, "gamma")
    if a.height == b.height and a.select(keys).equals(b.select(keys)):
        paired = a.with_columns(b.get_column("gamma").alias("gamma_s3"))
    else:
        paired = a.join(b, on=keys, how="full", suffix="_s3", coalesce=True)
    return paired.filter(
        pl.col("gamma").is_null()
        | pl.col("gamma_s3").is_null()
        | (pl.col("gamma") != pl.col("gamma_s3"))
    )
