"""2B.S4 — zone-group renormalisation (``s4-group-weights.md``) → ``s4_group_weights``.

Grain: one row per ``(merchant_id, utc_day, tz_group_id)`` — the S3 grid. For each merchant-day
the group mix is ``base_share × γ`` renormalised, then (for ≥ ``apply_when_groups_ge`` groups,
when enabled) passed through ``group_mix_regularizer_v1`` (:mod:`segment2b.core.group_mix`).
RNG-free. Every sum the spec calls serial is a serial left-to-right sum (``numpy.bincount``
accumulates in index order), so the floats equal the design's scalar Python loop.

:func:`build_s4` is the pure, vectorised core; :func:`run_s4` the thin I/O runner.
"""

from __future__ import annotations

import math
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from segment2b.catalogue.schemas import table_errors
from segment2b.core.group_mix import (
    EPSILON,
    RegularizerError,
    RegularizerParams,
    regularize,
    segment_entropy,
    segment_ids,
    segment_max,
    segment_sum,
)
from segment2b.errors import SegmentError
from segment2b.policy.models import GroupMixRegularizerV1
from segment2b.states.evidence import load_evidence
from segment2b.states.outcome import StateOutcome, input_version
from segment2b.storage.digests import folder_digest
from segment2b.storage.home import StorageHome
from segment2b.storage.publish import publish_folder
from segment2b.storage.reports import write_report

__all__ = [
    "CODE_VERSION",
    "PREFIX",
    "S4Build",
    "build_s4",
    "regularizer_settings",
    "run_s4",
]

PREFIX = "2B-S4"
CODE_VERSION = "s4-group-weights-1"
DATASET = "s4_group_weights"
POLICY_ID = "group_mix_regularizer_v1"
SCHEMA_REF = "schemas.2B.yaml#/plan/s4_group_weights"
BATCH_ROWS = 100_000
VALIDATOR_IDS: tuple[str, ...] = tuple(f"V-{i:02d}" for i in range(1, 21))
KEYS = ("merchant_id", "legal_country_iso", "site_order")
PK = ("merchant_id", "utc_day", "tz_group_id")
_RFC3339_MICROS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
_EPOCH_ORD = 719_163  # date(1970, 1, 1).toordinal()


class _Ledger:
    """Validator states V-01..V-20 (all Abort; S4 has no WARN validators)."""

    def __init__(self) -> None:
        self.status: dict[str, tuple[str, list[str]]] = {v: ("PASS", []) for v in VALIDATOR_IDS}

    def rows(self) -> list[dict[str, Any]]:
        return [{"id": v, "status": s, "codes": c} for v, (s, c) in self.status.items()]

    def counts(self) -> tuple[int, int]:
        warn = sum(1 for s, _ in self.status.values() if s == "WARN")
        fail = sum(1 for s, _ in self.status.values() if s == "FAIL")
        return warn, fail


def _err(
    suffix: str,
    message: str,
    *,
    validator: str,
    dataset: str | None = DATASET,
    key: str | None = None,
    **context: Any,
) -> SegmentError:
    return SegmentError(
        f"{PREFIX}-{suffix}",
        message,
        dataset=dataset,
        key=key,
        validator=validator,
        context=context,
    )


def regularizer_settings(policy: GroupMixRegularizerV1) -> tuple[bool, int, RegularizerParams]:
    """Policy → ``(enabled, apply_when_groups_ge, params)`` with the §4 parse-as defaults."""
    enabled = bool(policy.enabled)
    apply_ge = max(2, int(policy.apply_when_groups_ge or 2))
    params = RegularizerParams(
        soft_cap=float(policy.max_p_group_soft_cap or 1.0),
        strength=float(policy.regularization_strength or 0.0),
        entropy_floor=float(policy.entropy_floor or 0.0),
        preserve_rank_order=True
        if policy.preserve_rank_order is None
        else bool(policy.preserve_rank_order),
        sum_to_one=True if policy.sum_to_one is None else bool(policy.sum_to_one),
    )
    return enabled, apply_ge, params


@dataclass(frozen=True)
class S4Build:
    """Everything :func:`build_s4` computed.

    Attributes
    ----------
    frame : polars.DataFrame
        ``s4_group_weights`` in PK order, columns as the (columns-strict) contract.
    provenance : polars.DataFrame
        One row per merchant-day: ``merchant_id, utc_day, n_groups, eligible, applied,
        lambda_s, lambda_c, lambda_e, h_pre, h_post, max_p_pre, max_p_post, delta_mass``.
        Kept out of the table because the schema is columns-strict.
    report : dict
        Run-report sections owned by the core.
    timings_ms : dict
        ``join_groups_ms``, ``aggregate_ms``, ``combine_ms``, ``normalise_ms``.
    """

    frame: pl.DataFrame
    provenance: pl.DataFrame
    report: dict[str, Any]
    timings_ms: dict[str, int] = field(default_factory=dict)


def _iso(day_ord: int) -> str:
    import datetime as dt

    return dt.date.fromordinal(day_ord + _EPOCH_ORD).isoformat()


# --- base shares (§5 steps 1-5) ----------------------------------------------------------------


def _base_shares(
    s1: pl.DataFrame, site_timezones: pl.DataFrame
) -> tuple[pl.DataFrame, float, list[dict[str, Any]]]:
    """Per (merchant, tzid) Σ p_weight in S1 scan order, with the 041/057/040/052 checks.

    Returns the groups sorted by (merchant_id, tzid), the largest |Σ base_share − 1| and the 20
    worst merchants.
    """
    tz = site_timezones.select(
        pl.col("merchant_id").cast(pl.UInt64),
        pl.col("legal_country_iso").cast(pl.String),
        pl.col("site_order").cast(pl.Int64),
        pl.col("tzid").cast(pl.String),
    )
    dup = tz.group_by(KEYS).len().filter(pl.col("len") > 1)
    if dup.height:
        sample = dup.select(KEYS).sort(KEYS).head(10).to_dicts()
        raise _err(
            "041",
            f"{dup.height} site key(s) have more than one site_timezones row",
            validator="V-04",
            dataset="site_timezones",
            key=str(sample[0]),
            multimap_keys=dup.height,
            sample_keys=sample,
        )
    scan = (
        s1.select(
            pl.col("merchant_id").cast(pl.UInt64),
            pl.col("legal_country_iso").cast(pl.String),
            pl.col("site_order").cast(pl.Int64),
            pl.col("p_weight").cast(pl.Float64),
        )
        .sort(list(KEYS), maintain_order=True)
        .join(tz, on=list(KEYS), how="left", maintain_order="left")
        .with_row_index("scan")
    )
    matched = scan.filter(pl.col("tzid").is_not_null())
    bad = matched.filter(~pl.col("p_weight").is_finite() | (pl.col("p_weight") < 0.0))
    if bad.height:
        row = bad.row(0, named=True)
        raise _err(
            "057",
            f"p_weight {row['p_weight']} is non-finite or negative",
            validator="V-10",
            dataset="s1_site_weights",
            key=str({k: row[k] for k in KEYS}),
        )
    misses = scan.filter(pl.col("tzid").is_null())
    if misses.height:
        sample = misses.select(KEYS).head(10).to_dicts()
        raise _err(
            "040",
            f"{misses.height} S1 site key(s) have no site_timezones row",
            validator="V-04",
            dataset="site_timezones",
            key=str(sample[0]),
            join_misses=misses.height,
            sample_keys=sample,
        )
    # Group ids in order of first appearance (merchant-major, because the scan is sorted).
    firsts = (
        matched.group_by(["merchant_id", "tzid"])
        .agg(pl.col("scan").min().alias("first"))
        .sort("first")
        .with_row_index("gid")
    )
    rows = matched.join(
        firsts.select("merchant_id", "tzid", "gid"),
        on=["merchant_id", "tzid"],
        how="left",
        maintain_order="left",
    )
    gid = rows["gid"].to_numpy().astype(np.int64)
    base = segment_sum(rows["p_weight"].to_numpy(), gid, firsts.height)
    g_merchant = firsts["merchant_id"].to_numpy()
    merchants, m_of_g = np.unique(g_merchant, return_inverse=True)
    msum = segment_sum(base, m_of_g.astype(np.int64), merchants.size)  # first-appearance order
    abs_err = np.abs(msum - 1.0)
    worst = np.lexsort((merchants, -abs_err))[:20]
    worst_rows = [
        {
            "merchant_id": int(merchants[i]),
            "sum_base_share": float(msum[i]),
            "abs_error": float(abs_err[i]),
        }
        for i in worst
    ]
    max_err = float(abs_err.max()) if abs_err.size else 0.0
    over = ~(abs_err <= EPSILON)
    if over.any():
        i = int(np.flatnonzero(over)[0])
        raise _err(
            "052",
            f"merchant base shares sum to {msum[i]!r}, not 1 within {EPSILON}",
            validator="V-05",
            dataset="s1_site_weights",
            key=str(int(merchants[i])),
            merchants_over_base_share_epsilon=int(over.sum()),
            sample=worst_rows,
        )
    groups = (
        firsts.select("merchant_id", "tzid")
        .with_columns(pl.Series("base_share", base))
        .sort(["merchant_id", "tzid"])
    )
    return groups, max_err, worst_rows


# --- S3 stream checks (§5 steps 6-8, 16) -------------------------------------------------------


def _order_error(m: np.ndarray, d: np.ndarray, t: np.ndarray, tz_names: list[str]) -> None:
    """Adjacent S3 keys must strictly increase: equal → 041A (V-07), smaller → 083 (V-08)."""
    if m.size < 2:
        return
    same_m = m[1:] == m[:-1]
    same_md = same_m & (d[1:] == d[:-1])
    equal = same_md & (t[1:] == t[:-1])
    greater = (m[1:] > m[:-1]) | (same_m & (d[1:] > d[:-1])) | (same_md & (t[1:] > t[:-1]))
    broken = ~greater
    if not broken.any():
        return
    i = int(np.flatnonzero(broken)[0]) + 1
    key = str({"merchant_id": int(m[i]), "utc_day": _iso(int(d[i])), "tz_group_id": tz_names[t[i]]})
    if equal[i - 1]:
        raise _err("041A", "duplicate PK in s3_day_effects", validator="V-07", key=key, row=i)
    raise _err("083", "s3_day_effects rows are not in PK order", validator="V-08", key=key, row=i)


def _coverage_error(
    m: np.ndarray,
    d: np.ndarray,
    t: np.ndarray,
    *,
    groups: pl.DataFrame,
    tz_code: dict[str, int],
    n_days: int,
    rows_expected: int,
) -> SegmentError:
    """The code the streaming design would raise first for an S3 grid ≠ merchants × D × tzids.

    Event positions follow the stream: row checks fire at their row, a merchant-day's tzid-list
    check when the day is flushed, a merchant's day-list check on merchant change, the closing
    checks at the end; the earliest event wins.
    """
    n = m.size
    g = groups.with_columns(
        pl.col("tzid").replace_strict(tz_code, return_dtype=pl.Int64).alias("t")
    )
    n_of_m = g.group_by("merchant_id").len().rename({"len": "n"})
    s3 = pl.DataFrame(
        {"merchant_id": pl.Series(m, dtype=pl.UInt64), "d": d, "t": t}
    ).with_row_index("row")
    s3 = s3.join(n_of_m, on="merchant_id", how="left", maintain_order="left").join(
        g.select("merchant_id", "t", pl.lit(True).alias("known")),
        on=["merchant_id", "t"],
        how="left",
        maintain_order="left",
    )
    events: list[tuple[float, str, str, str]] = []
    absent_m = s3.filter(pl.col("n").is_null())
    if absent_m.height:
        events.append(
            (float(absent_m["row"][0]), "050", "V-06", "merchant absent from base shares")
        )
    absent_g = s3.filter(pl.col("n").is_not_null() & pl.col("known").is_null())
    if absent_g.height:
        events.append(
            (
                float(absent_g["row"][0]),
                "050",
                "V-06",
                "tz group absent from merchant's base shares",
            )
        )
    md = s3.group_by(["merchant_id", "d"], maintain_order=True).agg(
        pl.col("row").max().alias("last"), pl.len().alias("rows"), pl.col("n").first()
    )
    bad_md = md.filter(pl.col("n").is_not_null() & (pl.col("rows") != pl.col("n")))
    if bad_md.height:
        events.append(
            (float(bad_md["last"][0]) + 0.5, "050", "V-06", "merchant-day tzid list != groups")
        )
    per_m = md.group_by("merchant_id", maintain_order=True).agg(
        pl.col("last").max(), pl.len().alias("days")
    )
    bad_m = per_m.filter(pl.col("days") != n_days)
    if bad_m.height:
        events.append(
            (float(bad_m["last"][0]) + 0.75, "090", "V-12", "merchant day list != S3 day grid")
        )
    seen = set(per_m["merchant_id"].to_list())
    expected = set(n_of_m["merchant_id"].to_list())
    if n != rows_expected or seen != expected:
        events.append((math.inf, "050", "V-06", "rows or merchants differ from the expected grid"))
    if not events:  # pragma: no cover - callers only get here on a mismatch
        events.append((math.inf, "050", "V-06", "S3 grid differs from merchants x days x groups"))
    pos, code, validator, message = min(events, key=lambda e: e[0])
    row = min(int(pos), n - 1) if n and math.isfinite(pos) else None
    key = (
        str({"merchant_id": int(m[row]), "utc_day": _iso(int(d[row]))}) if row is not None else None
    )
    return _err(
        code,
        message,
        validator=validator,
        dataset="s3_day_effects",
        key=key,
        rows_expected=rows_expected,
        rows_observed=n,
    )


# --- build ---------------------------------------------------------------------------------


def build_s4(
    s1: pl.DataFrame,
    site_timezones: pl.DataFrame,
    s3: pl.DataFrame,
    reg_policy: GroupMixRegularizerV1,
    *,
    created_utc: str,
) -> S4Build:
    """Combine S1 base shares with S3 γ per merchant-day and regularize (pure; s4 §5-§6).

    Parameters
    ----------
    s1 : polars.DataFrame
        ``s1_site_weights``: ``merchant_id, legal_country_iso, site_order, p_weight``.
    site_timezones : polars.DataFrame
        2A egress: ``merchant_id, legal_country_iso, site_order, tzid``.
    s3 : polars.DataFrame
        ``s3_day_effects`` in file (= PK) order: ``merchant_id, utc_day, tz_group_id, gamma``
        (``created_utc`` is checked when present).
    reg_policy : GroupMixRegularizerV1
        Validated ``group_mix_regularizer_v1``.
    created_utc : str
        S0 ``verified_at_utc``.

    Returns
    -------
    S4Build
        Output table, per-merchant-day regularizer provenance and run-report sections.

    Raises
    ------
    SegmentError
        ``2B-S4-041/057/040/052`` (base shares), ``090/041A/083/050`` (S3 grid), ``086``
        (created_utc), ``057/051/096/095`` (per merchant-day flush).
    """
    t0 = time.perf_counter()
    led = _Ledger()
    enabled, apply_ge, params = regularizer_settings(reg_policy)
    if not isinstance(created_utc, str) or not _RFC3339_MICROS.match(created_utc):
        raise _err(
            "086", "created_utc is not rfc3339 micros", validator="V-14", key=str(created_utc)
        )

    groups, base_max_err, base_worst = _base_shares(s1, site_timezones)
    t_join = time.perf_counter()

    s3 = s3.select(
        pl.col("merchant_id").cast(pl.UInt64),
        pl.col("utc_day").cast(pl.Date),
        pl.col("tz_group_id").cast(pl.String),
        pl.col("gamma").cast(pl.Float64),
        *([pl.col("created_utc")] if "created_utc" in s3.columns else []),
    )
    if "created_utc" in s3.columns:
        stale = s3.filter(pl.col("created_utc") != created_utc)
        if stale.height:
            raise _err(
                "086",
                "s3_day_effects.created_utc differs from the S0 verified_at_utc (stale S3)",
                validator="V-14",
                dataset="s3_day_effects",
                key=str(stale["created_utc"][0]),
                expected=created_utc,
            )
    days = s3["utc_day"].unique().sort()
    n_days = days.len()
    if n_days == 0:
        raise _err("090", "s3_day_effects has no days", validator="V-12", dataset="s3_day_effects")
    tz_names = sorted(set(s3["tz_group_id"].unique().to_list()) | set(groups["tzid"].to_list()))
    tz_code = {name: i for i, name in enumerate(tz_names)}
    m_s3 = s3["merchant_id"].to_numpy()
    d_s3 = s3["utc_day"].cast(pl.Int32).to_numpy().astype(np.int64)
    t_s3 = s3["tz_group_id"].replace_strict(tz_code, return_dtype=pl.Int64).to_numpy()
    _order_error(m_s3, d_s3, t_s3, tz_names)

    # Expected grid: base merchants ↑ × D ↑ × tzids ↑.
    g_merchant = groups["merchant_id"].to_numpy()
    g_tz = groups["tzid"].replace_strict(tz_code, return_dtype=pl.Int64).to_numpy()
    g_base_raw = groups["base_share"].to_numpy()
    merchants, m_of_g = np.unique(g_merchant, return_inverse=True)
    n_m = np.bincount(m_of_g, minlength=merchants.size).astype(np.int64)
    g_off = np.concatenate(([0], np.cumsum(n_m)[:-1])).astype(np.int64)
    day_ord = days.cast(pl.Int32).to_numpy().astype(np.int64)
    tz_groups_total = int(g_merchant.size)
    rows_expected = tz_groups_total * n_days
    rows_per_m = n_m * n_days
    row_start = np.concatenate(([0], np.cumsum(rows_per_m)[:-1])).astype(np.int64)
    m_row = np.repeat(np.arange(merchants.size, dtype=np.int64), rows_per_m)
    k = np.arange(rows_expected, dtype=np.int64) - row_start[m_row]
    n_row = n_m[m_row]
    day_idx = k // n_row
    g_row = g_off[m_row] + (k - day_idx * n_row)
    grid_ok = (
        m_s3.size == rows_expected
        and np.array_equal(m_s3, merchants[m_row])
        and np.array_equal(d_s3, day_ord[day_idx])
        and np.array_equal(t_s3, g_tz[g_row])
    )
    if not grid_ok:
        raise _coverage_error(
            m_s3,
            d_s3,
            t_s3,
            groups=groups,
            tz_code=tz_code,
            n_days=n_days,
            rows_expected=rows_expected,
        )
    t_agg = time.perf_counter()

    # Per merchant-day flush, vectorised (§5 steps 9-15); md = merchant-day index.
    n_md = merchants.size * n_days
    md_row = m_row * n_days + day_idx
    md_len = np.repeat(n_m, n_days)
    gamma = s3["gamma"].to_numpy()

    def md_key(md: int) -> str:
        return str(
            {
                "merchant_id": int(merchants[md // n_days]),
                "utc_day": _iso(int(day_ord[md % n_days])),
            }
        )

    base_row = g_base_raw[g_row]
    bad_base = ~np.isfinite(base_row) | (base_row < 0.0) | (base_row > 1.0 + EPSILON)
    bad_gamma = ~np.isfinite(gamma) | ~(gamma > 0.0)
    if bad_base.any() or bad_gamma.any():
        i = int(np.flatnonzero(bad_base | bad_gamma)[0])
        what = "base_share" if bad_base[i] else "gamma"
        raise _err(
            "057",
            f"{what} out of domain ({base_row[i] if bad_base[i] else gamma[i]!r})",
            validator="V-10",
            key=md_key(int(md_row[i])),
        )
    base_row = np.where(base_row > 1.0, 1.0, base_row)  # (1, 1+ε] → 1.0 (pitfall 2)
    mass_raw = base_row * gamma
    denom = segment_sum(mass_raw, md_row, n_md)
    bad_denom = ~np.isfinite(denom) | ~(denom > 0.0)
    if bad_denom.any():
        md = int(np.flatnonzero(bad_denom)[0])
        raise _err("051", f"denom_raw {denom[md]!r} is not > 0", validator="V-11", key=md_key(md))
    denom_row = denom[md_row]
    ratio = mass_raw / denom_row
    p_raw = ratio.copy()
    if (p_raw < -EPSILON).any():
        i = int(np.flatnonzero(p_raw < -EPSILON)[0])
        raise _err(
            "057", f"p {p_raw[i]!r} < -epsilon", validator="V-10", key=md_key(int(md_row[i]))
        )
    neg_md = segment_sum((p_raw < 0.0).astype(np.float64), md_row, n_md) > 0.0
    if neg_md.any():
        rows = neg_md[md_row]
        p_raw = np.where(rows & (p_raw < 0.0), 0.0, p_raw)
        clamped = segment_sum(p_raw, md_row, n_md)
        if (~(clamped[neg_md] > 0.0)).any():
            md = int(np.flatnonzero(neg_md & ~(clamped > 0.0))[0])
            raise _err("051", "clamped sum <= 0", validator="V-11", key=md_key(md))
        p_raw = np.where(rows, p_raw / np.where(rows, clamped[md_row], 1.0), p_raw)
    t_combine = time.perf_counter()

    # Regularizer on eligible merchant-days.
    eligible = (md_len >= apply_ge) if enabled else np.zeros(n_md, dtype=bool)
    elig_row = eligible[md_row]
    p = p_raw.copy()
    all_seg = segment_ids(md_len)
    h_pre = segment_entropy(p_raw, all_seg, n_md)
    max_pre = segment_max(p_raw, md_len)
    lam_s = np.zeros(n_md)
    lam_c = np.zeros(n_md)
    lam_e = np.zeros(n_md)
    delta = np.zeros(n_md)
    applied = np.zeros(n_md, dtype=bool)
    h_post = h_pre.copy()
    elig_idx = np.flatnonzero(eligible)
    if elig_idx.size:
        try:
            res = regularize(p_raw[elig_row], md_len[eligible], params)
        except RegularizerError as exc:
            md = int(elig_idx[exc.segment])
            raise _err(
                "096", f"regularizer failed: {exc}", validator="V-11", key=md_key(md)
            ) from exc
        p[elig_row] = res.p
        lam_s[elig_idx] = res.lambda_s
        lam_c[elig_idx] = res.lambda_c
        lam_e[elig_idx] = res.lambda_e
        delta[elig_idx] = res.delta_mass
        applied[elig_idx] = res.applied
        h_post[elig_idx] = res.h_post
    max_post = segment_max(p, md_len)

    mass_err = np.abs(segment_sum(p, md_row, n_md) - 1.0)
    over = mass_err > EPSILON
    if over.any():
        md = int(np.flatnonzero(over)[0])
        raise _err("051", f"sum p_group off by {mass_err[md]!r}", validator="V-11", key=md_key(md))
    audit = (
        (np.abs(segment_sum(mass_raw, md_row, n_md) - denom) > EPSILON)
        | (segment_sum((np.abs(p_raw - ratio) > EPSILON).astype(np.float64), md_row, n_md) > 0)
        | (
            ~applied
            & (segment_sum((np.abs(p - ratio) > EPSILON).astype(np.float64), md_row, n_md) > 0)
        )
    )
    if audit.any():
        md = int(np.flatnonzero(audit)[0])
        raise _err("095", "audit columns incoherent", validator="V-19", key=md_key(md))
    bad_p = (p < -EPSILON) | (p > 1.0 + EPSILON)
    if bad_p.any():
        i = int(np.flatnonzero(bad_p)[0])
        raise _err(
            "057", f"p_group {p[i]!r} outside [0, 1]", validator="V-10", key=md_key(int(md_row[i]))
        )
    t_norm = time.perf_counter()

    frame = pl.DataFrame(
        {
            "merchant_id": s3["merchant_id"],
            "utc_day": s3["utc_day"],
            "tz_group_id": s3["tz_group_id"],
            "p_group": p,
            "base_share": base_row,
            "gamma": s3["gamma"],
            "created_utc": pl.repeat(created_utc, rows_expected, eager=True, dtype=pl.String),
            "mass_raw": mass_raw,
            "denom_raw": denom_row,
        }
    )
    md_merchant = np.repeat(merchants, n_days)
    md_day = np.tile(day_ord, merchants.size)
    provenance = pl.DataFrame(
        {
            "merchant_id": pl.Series(md_merchant, dtype=pl.UInt64),
            "utc_day": pl.Series(md_day.astype(np.int32)).cast(pl.Date),
            "n_groups": md_len,
            "eligible": eligible,
            "applied": applied,
            "lambda_s": lam_s,
            "lambda_c": lam_c,
            "lambda_e": lam_e,
            "h_pre": h_pre,
            "h_post": h_post,
            "max_p_pre": max_pre,
            "max_p_post": max_post,
            "delta_mass": delta,
            "mass_abs_error": mass_err,
        }
    )
    report = _core_report(
        reg_policy=reg_policy,
        enabled=enabled,
        apply_ge=apply_ge,
        params=params,
        frame=frame,
        provenance=provenance,
        counts=(int(merchants.size), tz_groups_total, n_days, rows_expected),
        day_ord=day_ord,
        base=(base_max_err, base_worst),
        ledger=led,
    )
    return S4Build(
        frame=frame,
        provenance=provenance,
        report=report,
        timings_ms={
            "join_groups_ms": int((t_join - t0) * 1000),
            "aggregate_ms": int((t_agg - t_join) * 1000),
            "combine_ms": int((t_combine - t_agg) * 1000),
            "normalise_ms": int((t_norm - t_combine) * 1000),
        },
    )


def _core_report(
    *,
    reg_policy: GroupMixRegularizerV1,
    enabled: bool,
    apply_ge: int,
    params: RegularizerParams,
    frame: pl.DataFrame,
    provenance: pl.DataFrame,
    counts: tuple[int, int, int, int],
    day_ord: np.ndarray,
    base: tuple[float, list[dict[str, Any]]],
    ledger: _Ledger,
) -> dict[str, Any]:
    """Run-report sections of s4 §10 computed from the build."""
    merchants_total, tz_groups_total, days_total, rows_expected = counts
    base_max_err, base_worst = base
    prov = provenance
    elig = prov.filter(pl.col("eligible"))
    appl = prov.filter(pl.col("applied"))
    warn, fail = ledger.counts()
    worst_norm = (
        prov.select("merchant_id", "utc_day", "mass_abs_error")
        .sort(["mass_abs_error", "merchant_id", "utc_day"], descending=[True, False, False])
        .head(20)
        .with_columns(pl.col("utc_day").cast(pl.String))
        .to_dicts()
    )
    per_day = frame.group_by("utc_day").len().sort("utc_day").head(10)
    coverage = [
        {"utc_day": d.isoformat(), "expected": tz_groups_total, "observed": n}
        for d, n in per_day.iter_rows()
    ]
    reg_samples = (
        appl.head(20)
        .select(
            "merchant_id",
            pl.col("utc_day").cast(pl.String),
            "delta_mass",
            pl.col("h_pre").alias("entropy_pre"),
            pl.col("h_post").alias("entropy_post"),
            "max_p_pre",
            "max_p_post",
        )
        .to_dicts()
    )
    samples: dict[str, Any] = {
        "rows": frame.head(20)
        .select(
            "merchant_id",
            pl.col("utc_day").cast(pl.String),
            "tz_group_id",
            "base_share",
            "gamma",
            "p_group",
        )
        .to_dicts(),
        "normalisation": worst_norm,
        "base_share": base_worst,
        "coverage": coverage,
    }
    if reg_samples:
        samples["regularizer"] = reg_samples

    def fmax(col: str, frame_: pl.DataFrame) -> float:
        return float(frame_[col].to_numpy().max()) if frame_.height else 0.0

    normalisation = {
        "max_abs_mass_error_per_day": fmax("mass_abs_error", prov),
        "merchants_days_over_epsilon": int((prov["mass_abs_error"] > EPSILON).sum()),
        "regularizer_rows_eligible": elig.height,
        "regularizer_rows_applied": appl.height,
        "regularizer_total_delta_mass": float(
            segment_sum(elig["delta_mass"].to_numpy(), np.zeros(elig.height, dtype=np.int64), 1)[0]
        )
        if elig.height
        else 0.0,
        "regularizer_max_delta_mass": fmax("delta_mass", elig),
        "regularizer_max_lambda_cap": fmax("lambda_c", elig),
        "regularizer_max_lambda_entropy": fmax("lambda_e", elig),
    }
    return {
        "policy": {
            "id": POLICY_ID,
            "version_tag": reg_policy.version_tag,
            "sha256_hex": reg_policy.sha256_hex,
            "enabled": enabled,
            "apply_when_groups_ge": apply_ge,
            "max_p_group_soft_cap": params.soft_cap,
            "regularization_strength": params.strength,
            "entropy_floor": params.entropy_floor,
            "preserve_rank_order": params.preserve_rank_order,
            "sum_to_one": params.sum_to_one,
        },
        "inputs_summary": {
            "merchants_total": merchants_total,
            "tz_groups_total": tz_groups_total,
            "days_total": days_total,
        },
        "aggregation": {"base_share_sigma_max_abs_error": base_max_err, "epsilon": EPSILON},
        "normalisation": normalisation,
        "validators": ledger.rows(),
        "summary": {"overall_status": "PASS", "warn_count": warn, "fail_count": fail},
        "samples": samples,
        "counters": {
            "merchants_total": merchants_total,
            "tz_groups_total": tz_groups_total,
            "days_total": days_total,
            "rows_expected": rows_expected,
            "rows_written": frame.height,
            "pk_duplicates": 0,
            "join_misses": 0,
            "multimap_keys": 0,
            "merchants_over_base_share_epsilon": 0,
            "merchants_days_over_norm_epsilon": normalisation["merchants_days_over_epsilon"],
            "regularizer_rows_eligible": elig.height,
            "regularizer_rows_applied": appl.height,
        },
        "day_grid": {
            "first": _iso(int(day_ord[0])),
            "last": _iso(int(day_ord[-1])),
        },
    }


# --- runner ----------------------------------------------------------------------------------


def _read_folder(folder: Path, dataset_id: str, columns: list[str]) -> pl.DataFrame:
    """Sorted ``*.parquet`` of one partition folder; missing folder/files/columns → 020."""
    if not folder.is_dir():
        raise _err(
            "020",
            "input partition folder is missing",
            validator="V-02",
            dataset=dataset_id,
            key=str(folder),
        )
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise _err(
            "020",
            "input partition has no parquet files",
            validator="V-02",
            dataset=dataset_id,
            key=str(folder),
        )
    frame = pl.concat([pl.read_parquet(f) for f in files], how="vertical")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise _err(
            "020",
            f"input lacks column(s) {missing}",
            validator="V-02",
            dataset=dataset_id,
            key=str(folder),
        )
    return frame


def batch_errors(batch: pl.DataFrame) -> list[str]:
    """Columns-strict schema check plus vectorised value constraints of one output batch."""
    errors = table_errors(SCHEMA_REF, batch)
    if errors or batch.height == 0:
        return errors
    unit = pl.col("p_group").is_between(0.0, 1.0)
    bad = batch.select(
        (pl.col("merchant_id") < 1).sum().alias("merchant_id >= 1"),
        (pl.col("tz_group_id").str.len_bytes() < 1).sum().alias("tz_group_id minLength 1"),
        (~unit).sum().alias("p_group in [0,1]"),
        (~pl.col("base_share").is_between(0.0, 1.0)).sum().alias("base_share in [0,1]"),
        (~(pl.col("gamma") > 0.0)).sum().alias("gamma > 0"),
        (pl.col("mass_raw") < 0.0).sum().alias("mass_raw >= 0"),
        (pl.col("denom_raw") < 0.0).sum().alias("denom_raw >= 0"),
        (~pl.col("created_utc").str.contains(_RFC3339_MICROS.pattern))
        .sum()
        .alias("created_utc rfc3339_micros"),
    ).row(0, named=True)
    return [f"{name}: {count} row(s) violate" for name, count in bad.items() if count]


def _write_parts(frame: pl.DataFrame, stage: Path) -> None:
    """``part-NNNNN.parquet`` of ≤ 100,000 rows each, zstd, PK order (§5 step 17)."""
    n_parts = max(1, -(-frame.height // BATCH_ROWS))
    for i in range(n_parts):
        batch = frame.slice(i * BATCH_ROWS, BATCH_ROWS)
        errors = batch_errors(batch)
        if errors:
            raise _err(
                "030",
                f"output batch {i} fails its schema: {errors[0]}",
                validator="V-13",
                key=f"part-{i:05d}.parquet",
                schema_errors=errors,
            )
        batch.write_parquet(
            stage / f"part-{i:05d}.parquet",
            compression="zstd",
            compression_level=3,
            row_group_size=BATCH_ROWS,
        )


def _environment() -> dict[str, Any]:
    import os

    return {
        "engine_commit": os.environ.get("ENGINE_COMMIT", "unknown"),
        "python_version": platform.python_version(),
        "platform": f"{platform.system()}-{platform.machine()}",
        "network_io_detected": 0,
    }


def run_s4(home: StorageHome, *, seed: int, manifest_fingerprint: str) -> StateOutcome:
    """Run S4 for one seed: S0 evidence → S1/S3/site_timezones/policy → :func:`build_s4` →
    publish ``s4_group_weights`` → run-report.

    Grain of the output: one row per merchant × UTC day × tz-group. ``extras["provenance"]``
    holds the per-merchant-day regularizer provenance (delta_mass, applied, λ, H_pre/H_post).
    """
    t0 = time.perf_counter()
    tokens = {"seed": str(seed), "manifest_fingerprint": manifest_fingerprint}
    ev = load_evidence(home, seed=seed, manifest_fingerprint=manifest_fingerprint, prefix=PREFIX)
    tz_path = ev.path("site_timezones")
    loaded = ev.policy(POLICY_ID)
    policy = loaded.model
    if not isinstance(policy, GroupMixRegularizerV1):  # pragma: no cover - store contract
        raise _err("031", "policy model has the wrong type", validator="V-18", dataset=POLICY_ID)
    s1_path = home.path("s1_site_weights", tokens)
    s3_path = home.path("s3_day_effects", tokens)
    for dataset_id, path in (("s1_site_weights", s1_path), ("s3_day_effects", s3_path)):
        rel = path.relative_to(home.root).as_posix()
        if f"seed={seed}" not in rel or f"manifest_fingerprint={manifest_fingerprint}" not in rel:
            raise _err(
                "070",
                "input path lacks a partition token",
                validator="V-03",
                dataset=dataset_id,
                key=rel,
            )
    tz = _read_folder(tz_path, "site_timezones", [*KEYS, "tzid"])
    s1 = _read_folder(s1_path, "s1_site_weights", [*KEYS, "p_weight"])
    s3 = _read_folder(s3_path, "s3_day_effects", [*PK, "gamma"])
    if "created_utc" in s1.columns:
        stale = s1.filter(pl.col("created_utc") != ev.created_utc)
        if stale.height:
            raise _err(
                "086",
                "s1_site_weights.created_utc differs from the S0 verified_at_utc (stale S1)",
                validator="V-14",
                dataset="s1_site_weights",
                key=str(stale["created_utc"][0]),
                expected=ev.created_utc,
            )
    out_rel = home.rel(DATASET, tokens)
    if (
        f"seed={seed}" not in out_rel
        or f"manifest_fingerprint={manifest_fingerprint}" not in out_rel
    ):
        raise _err("071", "output path lacks a partition token", validator="V-15", key=out_rel)
    t_resolve = time.perf_counter()

    build = build_s4(s1, tz, s3, policy, created_utc=ev.created_utc)
    version = input_version(
        CODE_VERSION,
        policy_sha256=loaded.sha256_hex,
        site_timezones_sha256=ev.row("site_timezones")["sha256_hex"],
        s1_sha256=folder_digest(s1_path),
        s3_sha256=folder_digest(s3_path),
        created_utc=ev.created_utc,
    )
    write_s: list[float] = []

    def write(stage: Path) -> None:
        tw = time.perf_counter()
        _write_parts(build.frame, stage)
        write_s.append(time.perf_counter() - tw)

    t_write = time.perf_counter()
    published = publish_folder(
        home,
        home.path(DATASET, tokens),
        write,
        prefix=PREFIX,
        state="s4",
        dataset_id=DATASET,
        input_version=version,
    )
    t_publish = time.perf_counter()
    cat = home.catalogue
    ids = ("site_timezones", "s1_site_weights", "s3_day_effects", POLICY_ID, DATASET)
    report: dict[str, Any] = {
        "component": "2B.S4",
        "manifest_fingerprint": manifest_fingerprint,
        "seed": str(seed),
        "created_utc": ev.created_utc,
        "catalogue_resolution": {
            "dictionary_version": cat.dictionary_version,
            "registry_version": cat.registry_version,
        },
        **build.report,
        "policy": {**build.report["policy"], "sha256_hex": loaded.sha256_hex},
        "inputs_summary": {
            "weights_path": home.rel("s1_site_weights", tokens),
            "timezones_path": ev.row("site_timezones")["path"],
            "day_effects_path": home.rel("s3_day_effects", tokens),
            "policy_path": ev.row(POLICY_ID)["path"],
            **build.report["inputs_summary"],
        },
        "counters": {**build.report["counters"], "publish_bytes_total": published.bytes},
        "publish": {
            "target_path": out_rel,
            "bytes_written": published.bytes,
            "write_once_verified": published.outcome == "idempotent",
            "atomic_publish": published.outcome != "idempotent",
            "outcome": published.outcome,
        },
        "environment": _environment(),
        "id_map": [{"id": i, "path": home.rel(i, tokens)} for i in ids],
        "durations_ms": {
            "resolve_ms": int((t_resolve - t0) * 1000),
            **build.timings_ms,
            "write_ms": int(sum(write_s) * 1000),
            "publish_ms": int((t_publish - t_write - sum(write_s)) * 1000),
        },
    }
    write_report(home.path("s4_run_report", tokens), report)
    return StateOutcome(
        frame=build.frame,
        report=report,
        published=(published,),
        extras={"provenance": build.provenance},
    )
