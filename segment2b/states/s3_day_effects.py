"""2B.S3 — day effects (``s3-day-effects.md``): one γ per merchant × UTC day × tz-group.

Grain: one row per ``(merchant_id, utc_day, tz_group_id)`` over the policy day grid, where a
tz-group is a tzid hosting at least one of the merchant's S1 sites. Each row consumes exactly one
Philox2x64-10 draw at counter ``base + rank`` (rank = 0-based row index in PK order), mapped
``u = (out0 + 0.5)·2^-64`` → Acklam ``z`` → ``log γ = −σ²/2 + σz + w``.

:func:`build_s3` is the pure, fully vectorised core (polars/numpy in, polars out);
:func:`run_s3` is the thin I/O runner (S0 evidence, reads, batched parquet, atomic publish,
run-report). Scalar libm (``math``) is used for ``exp``/``ln``/``sin`` as §6.4 asks, so the floats
match the design's scalar routines bit for bit and do not depend on the host's SIMD dispatch.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import platform
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pydantic

from segment2b.catalogue.schemas import table_errors
from segment2b.core.normal import acklam_inverse_normal
from segment2b.core.philox import (
    PhiloxStream,
    counters_from_base,
    derive_key_counter,
    philox2x64_10,
    uniform_one_indices,
    uniform_open01,
)
from segment2b.errors import SegmentError
from segment2b.policy.models import DayEffectPolicyV1, DayRange, SigmaGammaPolicyV2
from segment2b.policy.store import LoadedPolicy
from segment2b.states.evidence import S0Evidence, load_evidence
from segment2b.states.outcome import StateOutcome, input_version
from segment2b.storage.digests import folder_digest
from segment2b.storage.home import StorageHome
from segment2b.storage.publish import publish_folder
from segment2b.storage.reports import write_report

__all__ = [
    "CODE_VERSION",
    "PREFIX",
    "S3Build",
    "aux_u",
    "build_s3",
    "check_policy",
    "classify_policy_error",
    "day_grid",
    "run_s3",
    "segment_of",
]

PREFIX = "2B-S3"
CODE_VERSION = "s3-day-effects-1"
DATASET = "s3_day_effects"
POLICY_ID = "day_effect_policy_v1"
SCHEMA_REF = "schemas.2B.yaml#/plan/s3_day_effects"
BATCH_ROWS = 100_000
TWO_PI = 2.0 * math.pi
ENGINE = "philox2x64-10"
REQUIRED_RECORD_FIELDS = frozenset(
    {
        "gamma",
        "log_gamma",
        "sigma_gamma",
        "rng_stream_id",
        "rng_counter_lo",
        "rng_counter_hi",
        "created_utc",
    }
)
VALIDATOR_IDS: tuple[str, ...] = tuple(f"V-{i:02d}" for i in range(1, 22))
KEYS = ("merchant_id", "legal_country_iso", "site_order")
_RFC3339_MICROS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
_EXP_MAX = 709.782712893384  # largest x with finite math.exp(x)
_U128_MAX = 2**128 - 1


class _Ledger:
    """Validator states V-01..V-21 for the run-report (PASS unless marked)."""

    def __init__(self) -> None:
        self.status: dict[str, tuple[str, list[str]]] = {v: ("PASS", []) for v in VALIDATOR_IDS}

    def mark(self, vid: str, status: str, code: str) -> None:
        self.status[vid] = (status, [code])

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


# --- policy ---------------------------------------------------------------------------------


def _v2_active(policy: DayEffectPolicyV1) -> SigmaGammaPolicyV2 | None:
    v2 = policy.sigma_gamma_policy_v2
    return v2 if v2 is not None and v2.enabled else None


def _positive(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


def _check_v2(v2: SigmaGammaPolicyV2) -> str | None:
    """§7.1 runtime checks; returns the first problem or None."""
    problems: list[tuple[bool, str]] = [
        ("default" in v2.sigma_base_by_segment, "sigma_base_by_segment lacks 'default'"),
        (
            "default" in v2.weekly_component_amp_by_segment,
            "weekly_component_amp_by_segment lacks 'default'",
        ),
        (_positive(v2.sigma_multiplier_by_tz_group.default), "tz multiplier default must be > 0"),
        (
            all(_positive(s) for s in v2.sigma_base_by_segment.values()),
            "sigma_base_by_segment values must be > 0",
        ),
        (
            all(_positive(r.multiplier) for r in v2.sigma_multiplier_by_tz_group.prefix_rules),
            "prefix_rules multipliers must be > 0",
        ),
        (
            all(math.isfinite(a) and a >= 0 for a in v2.weekly_component_amp_by_segment.values()),
            "weekly_component_amp_by_segment values must be >= 0",
        ),
        (_positive(v2.sigma_min) and _positive(v2.sigma_max), "sigma_min/sigma_max must be > 0"),
        (v2.sigma_max >= v2.sigma_min, "sigma_max < sigma_min"),
        (
            _positive(v2.gamma_clip.min) and _positive(v2.gamma_clip.max),
            "gamma_clip bounds must be > 0",
        ),
        (v2.gamma_clip.max >= v2.gamma_clip.min, "gamma_clip.max < gamma_clip.min"),
        (
            0.0 <= v2.sigma_jitter_by_merchant.amplitude <= 1.0,
            "sigma_jitter_by_merchant.amplitude outside [0, 1]",
        ),
    ]
    return next((msg for ok, msg in problems if not ok), None)


def _parse_day(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        raise ValueError("datetime given where a date is required")
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def day_grid(day_range: DayRange | Mapping[str, Any]) -> list[dt.date]:
    """Every date from ``start_day`` to ``end_day`` inclusive, ascending (§5.1 steps 3-4).

    Raises ``2B-S3-033`` on a parse error or ``start > end``.
    """
    raw = day_range if isinstance(day_range, Mapping) else vars(day_range)
    try:
        start = _parse_day(raw["start_day"])
        end = _parse_day(raw["end_day"])
    except (KeyError, TypeError, ValueError) as exc:
        raise _err(
            "033",
            f"day_range is not a pair of ISO dates: {exc}",
            validator="V-04",
            dataset=POLICY_ID,
            key="day_range",
        ) from exc
    if start > end:
        raise _err(
            "033",
            f"day_range start_day {start} is after end_day {end}",
            validator="V-04",
            dataset=POLICY_ID,
            key="day_range",
            start_day=start.isoformat(),
            end_day=end.isoformat(),
        )
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def check_policy(policy: DayEffectPolicyV1) -> list[dt.date]:
    """§5.1 steps 2-4 on an already schema-valid policy; returns the day grid.

    The pydantic model enforces most of these at load time; they are re-checked here so that a
    policy built in code (``model_copy``/``model_construct``) fails with the state's own codes.
    """

    def minima(message: str, key: str) -> SegmentError:
        return _err("032", message, validator="V-04", dataset=POLICY_ID, key=key)

    if policy.draws_per_row != 1:
        raise minima(f"draws_per_row must be 1, got {policy.draws_per_row}", "draws_per_row")
    if not _positive(policy.sigma_gamma):
        raise minima(f"sigma_gamma must be > 0, got {policy.sigma_gamma}", "sigma_gamma")
    if not policy.rng_stream_id:
        raise minima("rng_stream_id is empty", "rng_stream_id")
    if not policy.rng_engine:
        raise minima("rng_engine is empty", "rng_engine")
    if policy.rng_engine != ENGINE:
        raise _err(
            "060",
            f"rng_engine {policy.rng_engine!r} is not {ENGINE}",
            validator="V-11",
            dataset=POLICY_ID,
            key="rng_engine",
        )
    v2 = _v2_active(policy)
    if v2 is not None:
        problem = _check_v2(v2)
        if problem:
            raise minima(f"sigma_gamma_policy_v2: {problem}", "sigma_gamma_policy_v2")
    missing = sorted(REQUIRED_RECORD_FIELDS - set(policy.record_fields))
    if missing:
        raise minima(f"record_fields lacks {missing}", "record_fields")
    days = day_grid(policy.day_range)
    if not days:
        raise _err("090", "day grid is empty", validator="V-20", dataset=POLICY_ID)
    return days


# Spec order of the §5.1 minima checks; the first applicable code wins.
_CODE_ORDER = ("032", "060", "033")


_SHAPE_ERRORS = frozenset({"missing", "extra_forbidden", "dict_type", "model_type", "list_type"})


def _classify_one(loc: tuple[Any, ...], typ: str, doc: Mapping[str, Any]) -> str:
    """Code suffix of one pydantic error: a §5.1/§7.1 runtime rule, or ``031`` (shape)."""
    shape = typ in _SHAPE_ERRORS
    head = loc[:1]
    if head == ("day_range",):
        return (
            "031" if typ in {"missing", "extra_forbidden"} or (shape and len(loc) == 1) else "033"
        )
    if head == ("sigma_gamma_policy_v2",) and len(loc) > 1:
        # A missing 'default' is a §7.1 runtime check; other missing/unknown keys are shape.
        return "032" if loc[-1] == "default" or not shape else "031"
    if shape:
        return "031"
    if loc in {("draws_per_row",), ("sigma_gamma",)} and typ != "float_parsing":
        return "032"
    if loc == ("rng_stream_id",) and doc.get("rng_stream_id") == "":
        return "032"
    if loc == ("rng_engine",):
        return "032" if doc.get("rng_engine") == "" else "060"
    if loc == ("sigma_gamma_policy_v2",):
        return "032"
    return "031"


def classify_policy_error(document: Any) -> tuple[str, str] | None:
    """Map a policy that fails the pydantic model to the S3 code the spec assigns.

    The design's JSON schema is looser than our model: range/ordering rules that the spec lists
    as runtime checks (§5.1 step 2, §7.1: ``2B-S3-032``; engine: ``060``; day range: ``033``)
    are enforced by the model at load time. A failure made only of such rules gets that code;
    any genuine shape failure (unknown key, missing field, wrong type) stays ``031``.

    Returns
    -------
    tuple or None
        ``(code_suffix, message)``; ``None`` when the document is model-valid.
    """
    try:
        DayEffectPolicyV1.model_validate(document)
    except pydantic.ValidationError as exc:
        errors = exc.errors()
    else:
        return None
    doc = document if isinstance(document, Mapping) else {}
    codes = [
        (
            _classify_one(tuple(e["loc"]), e["type"], doc),
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}",
        )
        for e in errors
    ]
    if any(c == "031" for c, _ in codes):
        return next((c, m) for c, m in codes if c == "031")
    for wanted in _CODE_ORDER:
        for c, m in codes:
            if c == wanted:
                return c, m
    return codes[0]


# --- per-merchant profile (§7.2) ---------------------------------------------------------------


def segment_of(site_count: int) -> str:
    """Size segment: ≤ 8 sites → small, ≤ 24 → mid, else large."""
    if site_count <= 8:
        return "small"
    if site_count <= 24:
        return "mid"
    return "large"


def aux_u(manifest_fingerprint: str, seed: int, label: str, merchant_id: int) -> float:
    """``(double(BE64(SHA256(f"{mf}|{seed}|{label}|{merchant_id}")[0:8])) + 0.5)·2^-64``."""
    digest = hashlib.sha256(
        f"{manifest_fingerprint}|{seed}|{label}|{merchant_id}".encode()
    ).digest()
    return (float(int.from_bytes(digest[:8], "big")) + 0.5) * 2.0**-64


def _tz_multiplier(v2: SigmaGammaPolicyV2, tzid: str) -> float:
    for rule in v2.sigma_multiplier_by_tz_group.prefix_rules:
        if rule.prefix and tzid.startswith(rule.prefix):
            return float(rule.multiplier)
    return float(v2.sigma_multiplier_by_tz_group.default)


def _libm(fn: Any, values: np.ndarray) -> np.ndarray:
    return np.fromiter(map(fn, values.tolist()), dtype=np.float64, count=values.size)


# --- build -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class S3Build:
    """Everything :func:`build_s3` computed.

    Attributes
    ----------
    frame : polars.DataFrame
        The ``s3_day_effects`` table in PK (= writer) order, columns as the contract.
    report : dict
        Run-report sections owned by the core (policy, inputs_summary, rng_accounting,
        validators, samples, diagnostics).
    profiles : polars.DataFrame
        One row per merchant: site_count, segment, base σ, jitter, weekly amp and phase.
    draws : polars.DataFrame
        Row-aligned RNG trace: ``out0`` (UInt64), ``u``, ``z``, weekly term ``w``.
    stream : PhiloxStream
        The run-constant key and base counter.
    timings_ms : dict
        ``join_groups_ms`` and ``draw_ms``.
    """

    frame: pl.DataFrame
    report: dict[str, Any]
    profiles: pl.DataFrame
    draws: pl.DataFrame
    stream: PhiloxStream
    timings_ms: dict[str, int] = field(default_factory=dict)


def _key_sample(frame: pl.DataFrame, limit: int) -> list[dict[str, Any]]:
    return frame.select(KEYS).sort(KEYS).head(limit).to_dicts()


def _tz_groups(
    site_timezones: pl.DataFrame, s1_keys: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """§5.2: multimap check, S1 ⟕ site_timezones join check, groups and site counts."""
    tz = site_timezones.select(
        pl.col("merchant_id").cast(pl.UInt64),
        pl.col("legal_country_iso").cast(pl.String),
        pl.col("site_order").cast(pl.Int64),
        pl.col("tzid").cast(pl.String),
    )
    multi = tz.group_by(KEYS).agg(pl.len().alias("rows"), pl.col("tzid").n_unique().alias("tzids"))
    multi = multi.filter((pl.col("rows") > 1) & (pl.col("tzids") > 1))
    if multi.height:
        sample = _key_sample(multi, 5)
        raise _err(
            "041",
            f"{multi.height} site key(s) map to more than one tzid",
            validator="V-05",
            dataset="site_timezones",
            key=str(sample[0]),
            count=multi.height,
            sample_keys=sample,
        )
    s1 = s1_keys.select(
        pl.col("merchant_id").cast(pl.UInt64),
        pl.col("legal_country_iso").cast(pl.String),
        pl.col("site_order").cast(pl.Int64),
    )
    # Exact duplicate site_timezones rows are tolerated (§5.2 step 5), so join on unique rows.
    joined = s1.join(tz.unique(), on=list(KEYS), how="left")
    misses = joined.filter(pl.col("tzid").is_null())
    if misses.height:
        sample = _key_sample(misses, 5)
        raise _err(
            "040",
            f"{misses.height} S1 site key(s) have no site_timezones row",
            validator="V-05",
            dataset="site_timezones",
            key=str(sample[0]),
            count=misses.height,
            sample_keys=sample,
        )
    groups = joined.select("merchant_id", "tzid").unique()
    # README decision 3: site_count = the merchant's real number of sites (all countries).
    counts = joined.group_by("merchant_id").agg(
        pl.struct("legal_country_iso", "site_order").n_unique().alias("site_count")
    )
    return groups, counts


def _profiles(
    merchant_ids: np.ndarray,
    site_counts: np.ndarray,
    v2: SigmaGammaPolicyV2 | None,
    *,
    manifest_fingerprint: str,
    seed: int,
) -> dict[str, np.ndarray | list[str]]:
    """§7.2 per-merchant profile (computed once per merchant)."""
    segments = [segment_of(int(c)) for c in site_counts.tolist()]
    n = merchant_ids.size
    if v2 is None:
        return {
            "segment": segments,
            "base_sigma": np.full(n, np.nan),
            "jitter_u": np.full(n, np.nan),
            "jitter_mult": np.ones(n),
            "weekly_amp": np.zeros(n),
            "weekly_u": np.full(n, np.nan),
            "weekly_phase": np.zeros(n),
        }
    base = v2.sigma_base_by_segment
    amps = v2.weekly_component_amp_by_segment
    jit = v2.sigma_jitter_by_merchant
    ids = [int(m) for m in merchant_ids.tolist()]
    jitter_u = np.array(
        [aux_u(manifest_fingerprint, seed, "2B.S3.sigma_jitter", m) for m in ids], dtype=np.float64
    )
    weekly_u = np.array(
        [aux_u(manifest_fingerprint, seed, "2B.S3.weekly_phase", m) for m in ids], dtype=np.float64
    )
    amplitude = float(jit.amplitude)
    jitter_mult = (
        np.array([1.0 + amplitude * (2.0 * ju - 1.0) for ju in jitter_u.tolist()])
        if jit.enabled
        else np.ones(n)
    )
    return {
        "segment": segments,
        "base_sigma": np.array([float(base.get(s, base["default"])) for s in segments]),
        "jitter_u": jitter_u,
        "jitter_mult": jitter_mult.astype(np.float64),
        "weekly_amp": np.array([float(amps.get(s, amps["default"])) for s in segments]),
        "weekly_u": weekly_u,
        "weekly_phase": np.array([TWO_PI * wu for wu in weekly_u.tolist()], dtype=np.float64),
    }


def _first_row_error(
    checks: list[tuple[np.ndarray, str, str, str]],
    keys: tuple[np.ndarray, np.ndarray, np.ndarray],
    tz_names: list[str],
) -> SegmentError | None:
    """The first (lowest-rank) row failing any per-row guard; ties follow ``checks`` order."""
    first_rows = [(int(np.flatnonzero(m)[0]), i) for i, (m, *_rest) in enumerate(checks) if m.any()]
    if not first_rows:
        return None
    row, which = min(first_rows)
    _, code, validator, message = checks[which]
    m_ids, days, tz_codes = keys
    key = {
        "merchant_id": int(m_ids[row]),
        "utc_day": (dt.date(1970, 1, 1) + dt.timedelta(days=int(days[row]))).isoformat(),
        "tz_group_id": tz_names[int(tz_codes[row])],
    }
    return _err(code, message, validator=validator, key=str(key), row_rank=row, **key)


def build_s3(
    site_timezones: pl.DataFrame,
    s1_site_weights: pl.DataFrame,
    policy: DayEffectPolicyV1,
    *,
    manifest_fingerprint: str,
    seed: int,
    created_utc: str,
) -> S3Build:
    """Draw the day factors of every merchant × day × tz-group (pure; ``s3-day-effects.md`` §5).

    Parameters
    ----------
    site_timezones : polars.DataFrame
        2A egress: ``merchant_id, legal_country_iso, site_order, tzid`` (extra columns ignored).
    s1_site_weights : polars.DataFrame
        S1 output; only the key columns ``merchant_id, legal_country_iso, site_order`` are used
        (the merchant's site count is its number of S1 sites, README decision 3).
    policy : DayEffectPolicyV1
        Validated ``day_effect_policy_v1``.
    manifest_fingerprint : str
        Run fingerprint (hex64); keys the Philox stream and the §7.2 per-merchant profile.
    seed : int
        Run seed (uint64).
    created_utc : str
        S0 ``verified_at_utc``, echoed on every row.

    Returns
    -------
    S3Build
        The table in PK order plus run-report sections, profiles and the RNG trace.

    Raises
    ------
    SegmentError
        ``2B-S3-032/033/060/090`` (policy), ``040/041`` (join), ``064`` (counter wrap),
        ``057/058`` (row guards), ``042/083/063/050/062`` (structural self-checks), ``086``
        (created_utc not rfc3339 micros).

    Compatibility guarantee
    -----------------------
    Row ranks, counters and ``out0`` are bit-exact with §6.5; ``u``/``z``/``σ``/``w``/``γ`` use
    the spec's evaluation order with libm scalars, so the bytes are stable for fixed inputs.
    """
    t0 = time.perf_counter()
    led = _Ledger()
    days = check_policy(policy)
    if not isinstance(created_utc, str) or not _RFC3339_MICROS.match(created_utc):
        raise _err(
            "086",
            "created_utc is not rfc3339 with 6 fractional digits",
            validator="V-14",
            key=str(created_utc),
        )
    v2 = _v2_active(policy)
    try:
        stream = derive_key_counter(
            policy.rng_derivation.domain_master,
            policy.rng_derivation.domain_stream,
            policy.rng_stream_id,
            manifest_fingerprint,
            seed,
        )
    except ValueError as exc:
        raise _err(
            "032", str(exc), validator="V-04", dataset=POLICY_ID, key="manifest_fingerprint"
        ) from exc

    groups, counts = _tz_groups(site_timezones, s1_site_weights)
    tz_names = sorted(set(groups["tzid"].to_list()))  # code-point order == UTF-8 byte order
    tz_code = {name: i for i, name in enumerate(tz_names)}
    groups = groups.with_columns(
        pl.col("tzid").replace_strict(tz_code, return_dtype=pl.Int64).alias("tz_code")
    ).sort(["merchant_id", "tz_code"])
    counts = counts.sort("merchant_id")
    g_merchant = groups["merchant_id"].to_numpy()
    g_tz = groups["tz_code"].to_numpy().astype(np.int64)
    m_ids = counts["merchant_id"].to_numpy()
    site_counts = counts["site_count"].to_numpy().astype(np.int64)
    n_merchants = m_ids.size
    m_of_group = np.searchsorted(m_ids, g_merchant)
    n_groups = np.bincount(m_of_group, minlength=n_merchants).astype(np.int64)
    g_off = np.concatenate(([0], np.cumsum(n_groups)[:-1])).astype(np.int64)
    n_days = len(days)
    epoch = dt.date(1970, 1, 1)
    day_ord = np.array([(d - epoch).days for d in days], dtype=np.int64)
    weekday = np.array([d.weekday() for d in days], dtype=np.int64)
    tz_groups_total = int(g_merchant.size)
    rows_expected = tz_groups_total * n_days
    t_join = time.perf_counter()

    # §5.3: counter wrap is checked before any draw.
    if rows_expected and stream.base_counter + rows_expected - 1 > _U128_MAX:
        led.mark("V-13", "FAIL", f"{PREFIX}-064")
        raise _err(
            "064",
            "128-bit counter range would wrap",
            validator="V-13",
            rows_expected=rows_expected,
        )

    # Row grid: merchants ↑ → days ↑ → tzids ↑; rank i is the row index.
    rows_per_m = n_groups * n_days
    row_start = np.concatenate(([0], np.cumsum(rows_per_m)[:-1])).astype(np.int64)
    m_row = np.repeat(np.arange(n_merchants, dtype=np.int64), rows_per_m)
    k = np.arange(rows_expected, dtype=np.int64) - row_start[m_row]
    n_row = n_groups[m_row]
    day_idx = k // n_row
    g_row = g_off[m_row] + (k - day_idx * n_row)
    merchant_col = m_ids[m_row]
    day_col = day_ord[day_idx]
    tz_col = g_tz[g_row]

    # §6: one Philox call per row at counter base + rank.
    try:
        ctr_hi, ctr_lo = counters_from_base(stream.counter_hi, stream.counter_lo, rows_expected)
    except OverflowError as exc:  # pragma: no cover - guarded above
        raise _err("064", str(exc), validator="V-13") from exc
    out0, _ = philox2x64_10(ctr_lo, ctr_hi, stream.key)
    u = uniform_open01(out0)
    u_one = np.zeros(rows_expected, dtype=bool)
    u_one[uniform_one_indices(u)] = True
    z = acklam_inverse_normal(np.where(u_one, 0.5, u))

    # σ per group (v2) or scalar; weekly term per merchant-day.
    profile = _profiles(
        m_ids, site_counts, v2, manifest_fingerprint=manifest_fingerprint, seed=seed
    )
    if v2 is None:
        sigma_group = np.full(tz_groups_total, float(policy.sigma_gamma))
        w_row = None
    else:
        tz_mult = np.array([_tz_multiplier(v2, t) for t in tz_names], dtype=np.float64)
        base_sigma = np.asarray(profile["base_sigma"])[m_of_group]
        jitter = np.asarray(profile["jitter_mult"])[m_of_group]
        raw = (base_sigma * tz_mult[g_tz]) * jitter
        sigma_group = np.minimum(np.maximum(raw, float(v2.sigma_min)), float(v2.sigma_max))
        amp = np.asarray(profile["weekly_amp"])
        phase = np.asarray(profile["weekly_phase"])
        wd_phase = np.array([TWO_PI * (wd / 7) for wd in weekday.tolist()], dtype=np.float64)
        w_md = np.zeros(n_merchants * n_days, dtype=np.float64)
        has_amp = np.repeat(amp > 0.0, n_days)
        if has_amp.any():
            arg = (wd_phase[None, :] + phase[:, None]).ravel()
            sin_arg = np.zeros_like(arg)
            sin_arg[has_amp] = _libm(math.sin, arg[has_amp])
            w_md = np.where(has_amp, np.repeat(amp, n_days) * sin_arg, 0.0)
        w_row = w_md[m_row * n_days + day_idx]
    sigma = sigma_group[g_row]
    # V-10 (§13.4): scalar mode echoes the policy σ; v2 rows lie in [sigma_min, sigma_max].
    lo_s, hi_s = (
        (float(policy.sigma_gamma),) * 2
        if v2 is None
        else (float(v2.sigma_min), float(v2.sigma_max))
    )
    if sigma.size and ((sigma < lo_s) | (sigma > hi_s)).any():
        raise _err("059", "sigma_gamma outside the policy resolution", validator="V-10")

    # log γ = (−0.5·σ·σ) + σ·z + w, left to right.
    log_gamma = (-0.5 * sigma) * sigma
    log_gamma = log_gamma + sigma * z
    if w_row is not None:
        log_gamma = log_gamma + w_row
    finite_lg = np.isfinite(log_gamma)
    safe = finite_lg & (log_gamma <= _EXP_MAX)
    gamma = np.full(rows_expected, np.inf)
    gamma[~np.isfinite(log_gamma)] = np.nan
    gamma[safe] = _libm(math.exp, log_gamma[safe])
    clipped = np.zeros(rows_expected, dtype=bool)
    if v2 is not None:
        clip_min, clip_max = float(v2.gamma_clip.min), float(v2.gamma_clip.max)
        g2 = np.minimum(np.maximum(gamma, clip_min), clip_max)
        clipped = safe & (g2 != gamma)
        if clipped.any():
            gamma = np.where(clipped, g2, gamma)
            log_gamma = log_gamma.copy()
            log_gamma[clipped] = _libm(math.log, g2[clipped])

    row_keys = (merchant_col, day_col, tz_col)
    failure = _first_row_error(
        [
            (u_one, "058", "V-09", "uniform u == 1.0 (out0 >= 2^64-1024): ICDF undefined"),
            (~(sigma > 0.0), "032", "V-09", "sigma <= 0 at runtime"),
            (~(np.isfinite(gamma) & (gamma > 0.0)), "057", "V-09", "gamma <= 0 or non-finite"),
            (~np.isfinite(log_gamma), "058", "V-09", "log_gamma is non-finite"),
        ],
        row_keys,
        tz_names,
    )
    if failure is not None:
        raise failure
    t_draw = time.perf_counter()

    # Structural self-checks (V-07/V-08/V-13/V-06/V-12): cheap, vectorised.
    if rows_expected > 1:
        m0, m1 = merchant_col[:-1], merchant_col[1:]
        d0, d1 = day_col[:-1], day_col[1:]
        t0_, t1_ = tz_col[:-1], tz_col[1:]
        same_md = (m1 == m0) & (d1 == d0)
        if (same_md & (t1_ == t0_)).any():
            raise _err("042", "PK duplicate in the generated grid", validator="V-07")
        ascending = (m1 > m0) | ((m1 == m0) & (d1 > d0)) | (same_md & (t1_ > t0_))
        if not ascending.all():
            raise _err("083", "writer order is not PK order", validator="V-08")
        inc = (ctr_hi[1:] > ctr_hi[:-1]) | (
            (ctr_hi[1:] == ctr_hi[:-1]) & (ctr_lo[1:] > ctr_lo[:-1])
        )
        if not inc.all():
            raise _err("063", "counters are not strictly increasing", validator="V-13")
    rows_written = int(gamma.size)
    if rows_written != rows_expected:  # pragma: no cover - structural
        raise _err("050", "coverage mismatch", validator="V-06")
    draws_total = int(out0.size)
    if draws_total != rows_written:  # pragma: no cover - structural
        raise _err("062", "draws_total != rows_written", validator="V-12")

    tz_series = pl.Series("tz_group_id", tz_names, dtype=pl.String)
    frame = pl.DataFrame(
        {
            "merchant_id": pl.Series(merchant_col, dtype=pl.UInt64),
            "utc_day": pl.Series(day_col.astype(np.int32)).cast(pl.Date),
            "tz_group_id": tz_series.gather(pl.Series(tz_col, dtype=pl.UInt32))
            if rows_expected
            else pl.Series([], dtype=pl.String),
            "gamma": gamma,
            "log_gamma": log_gamma,
            "sigma_gamma": sigma,
            "rng_stream_id": pl.repeat(policy.rng_stream_id, rows_expected, eager=True),
            "rng_counter_lo": pl.Series(ctr_lo, dtype=pl.UInt64),
            "rng_counter_hi": pl.Series(ctr_hi, dtype=pl.UInt64),
            "created_utc": pl.repeat(created_utc, rows_expected, eager=True),
        }
    ).with_columns(pl.col("tz_group_id").cast(pl.String))
    profiles = pl.DataFrame(
        {
            "merchant_id": pl.Series(m_ids, dtype=pl.UInt64),
            "site_count": site_counts,
            "n_tz_groups": n_groups,
            "segment": profile["segment"],
            "base_sigma": profile["base_sigma"],
            "jitter_u": profile["jitter_u"],
            "jitter_mult": profile["jitter_mult"],
            "weekly_amp": profile["weekly_amp"],
            "weekly_u": profile["weekly_u"],
            "weekly_phase": profile["weekly_phase"],
        }
    )
    draws = pl.DataFrame(
        {
            "out0": pl.Series(out0, dtype=pl.UInt64),
            "u": u,
            "z": z,
            "w": w_row if w_row is not None else np.zeros(rows_expected),
        }
    )
    t_end = time.perf_counter()

    # V-21 (Warn): output tzids ⊆ site_timezones tzids (tautological here; kept for the report).
    tz_all = set(site_timezones["tzid"].cast(pl.String).unique().to_list())
    warn_tzids = sorted(set(tz_names) - tz_all)
    if warn_tzids:
        led.mark("V-21", "WARN", f"{PREFIX}-191")

    report = _core_report(
        policy=policy,
        v2=v2,
        days=days,
        frame=frame,
        profiles=profiles,
        draws=draws,
        ctr=(ctr_hi, ctr_lo),
        clipped=int(clipped.sum()),
        counts=(n_merchants, tz_groups_total, rows_expected, rows_written, draws_total),
        ledger=led,
        warn_tzids=warn_tzids,
    )
    return S3Build(
        frame=frame,
        report=report,
        profiles=profiles,
        draws=draws,
        stream=stream,
        timings_ms={
            "join_groups_ms": int((t_join - t0) * 1000),
            "draw_ms": int((t_draw - t_join) * 1000),
            "frame_ms": int((t_end - t_draw) * 1000),
        },
    )


def _core_report(
    *,
    policy: DayEffectPolicyV1,
    v2: SigmaGammaPolicyV2 | None,
    days: list[dt.date],
    frame: pl.DataFrame,
    profiles: pl.DataFrame,
    draws: pl.DataFrame,
    ctr: tuple[np.ndarray, np.ndarray],
    clipped: int,
    counts: tuple[int, int, int, int, int],
    ledger: _Ledger,
    warn_tzids: list[str],
) -> dict[str, Any]:
    """Run-report sections computed from the build (§12), plus §10 certification diagnostics."""
    n_merchants, tz_groups_total, rows_expected, rows_written, draws_total = counts
    ctr_hi, ctr_lo = ctr
    n = frame.height
    sigma = frame["sigma_gamma"]
    log_gamma = frame["log_gamma"]
    sigma_scalar = float(policy.sigma_gamma)
    seg_of = dict(
        zip(profiles["merchant_id"].to_list(), profiles["segment"].to_list(), strict=True)
    )
    amp_of = dict(
        zip(profiles["merchant_id"].to_list(), profiles["weekly_amp"].to_list(), strict=True)
    )
    head = frame.head(20).to_dicts()
    sample_rows = [
        {
            "merchant_id": r["merchant_id"],
            "utc_day": r["utc_day"].isoformat(),
            "tz_group_id": r["tz_group_id"],
            "gamma": r["gamma"],
            "log_gamma": r["log_gamma"],
            "sigma_source": (
                f"sigma_gamma_policy_v2:{seg_of[r['merchant_id']]}"
                if v2 is not None
                else "sigma_gamma_v1"
            ),
            "sigma_value": r["sigma_gamma"],
            "weekly_amp": amp_of[r["merchant_id"]] if v2 is not None else 0.0,
            "rng_counter_hi": r["rng_counter_hi"],
            "rng_counter_lo": r["rng_counter_lo"],
        }
        for r in head
    ]
    per_day = frame.group_by("utc_day").len().sort("utc_day").head(10).to_dicts() if n else []
    coverage_by_day = [
        {"utc_day": r["utc_day"].isoformat(), "expected": tz_groups_total, "observed": r["len"]}
        for r in per_day
    ]
    expected_rows = profiles.select(
        "merchant_id", (pl.col("n_tz_groups") * len(days)).alias("expected_rows")
    )
    observed = frame.group_by("merchant_id").len().rename({"len": "observed_rows"})
    per_merchant = (
        expected_rows.join(observed, on="merchant_id", how="left")
        .with_columns(pl.col("observed_rows").fill_null(0))
        .with_columns((pl.col("observed_rows") - pl.col("expected_rows")).alias("delta"))
        .with_columns(pl.col("delta").abs().alias("_abs"))
        .sort(["_abs", "merchant_id"], descending=[True, False])
        .drop("_abs")
        .head(10)
        .to_dicts()
    )
    monotonic = [
        {
            "prev": {"hi": int(ctr_hi[i]), "lo": int(ctr_lo[i])},
            "next": {"hi": int(ctr_hi[i + 1]), "lo": int(ctr_lo[i + 1])},
        }
        for i in range(min(10, n - 1))
    ]
    sig = sigma.to_numpy()
    w = draws["w"].to_numpy()
    amps = profiles["weekly_amp"].to_numpy()
    abs_lg = np.abs(log_gamma.to_numpy())
    warn, fail = ledger.counts()
    samples: dict[str, Any] = {
        "rows": sample_rows,
        "coverage_by_day": coverage_by_day,
        "tz_groups_per_merchant": per_merchant,
        "rng_monotonic": monotonic,
    }
    if warn_tzids:
        samples["warn_tzids"] = warn_tzids[:20]
    return {
        "policy": {
            "id": POLICY_ID,
            "version_tag": policy.version_tag,
            "sha256_hex": policy.sha256_hex,
            "rng_engine": policy.rng_engine,
            "rng_stream_id": policy.rng_stream_id,
            "sigma_policy_mode": "sigma_gamma_policy_v2" if v2 is not None else "scalar_v1",
            "sigma_gamma": sigma_scalar,
            "sigma_min": float(v2.sigma_min) if v2 is not None else sigma_scalar,
            "sigma_max": float(v2.sigma_max) if v2 is not None else sigma_scalar,
            "gamma_clip_min": float(v2.gamma_clip.min) if v2 is not None else 0.0,
            "gamma_clip_max": float(v2.gamma_clip.max) if v2 is not None else 0.0,
            "day_range": {"start_day": days[0].isoformat(), "end_day": days[-1].isoformat()},
        },
        "inputs_summary": {
            "merchants_total": n_merchants,
            "tz_groups_total": tz_groups_total,
            "days_total": len(days),
        },
        "rng_accounting": {
            "rows_expected": rows_expected,
            "rows_written": rows_written,
            "draws_total": draws_total,
            "first_counter": {"hi": int(ctr_hi[0]), "lo": int(ctr_lo[0])} if n else None,
            "last_counter": {"hi": int(ctr_hi[-1]), "lo": int(ctr_lo[-1])} if n else None,
            "max_abs_log_gamma": float(abs_lg.max()) if n else 0.0,
            "sigma_gamma": sigma_scalar,
            "sigma_gamma_min_observed": float(sig.min()) if n else 0.0,
            "sigma_gamma_max_observed": float(sig.max()) if n else 0.0,
            "nonpositive_gamma_rows": int((frame["gamma"] <= 0.0).sum()),
            "gamma_clipped_rows": clipped,
            "pk_duplicates": 0,
            "join_misses": 0,
        },
        "validators": ledger.rows(),
        "summary": {"overall_status": "PASS", "warn_count": warn, "fail_count": fail},
        "samples": samples,
        "diagnostics": {
            "sigma_distinct_values": int(sigma.n_unique()) if n else 0,
            "weekly_amp_max": float(amps.max()) if v2 and amps.size else 0.0,
            "weekly_amp_median": float(np.median(amps)) if v2 and amps.size else 0.0,
            "weekly_term_abs_max": float(np.abs(w).max()) if n else 0.0,
            "weekly_term_rms": math.sqrt(float(np.mean(w * w))) if n else 0.0,
            "merchants_with_weekly_term": int((amps > 0).sum()) if v2 else 0,
        },
    }


# --- runner ----------------------------------------------------------------------------------


def _open_policy(ev: S0Evidence) -> LoadedPolicy:
    """Open the sealed policy; model failures are re-coded per §5.1 (031/032/033/060)."""
    try:
        return ev.policy(POLICY_ID)
    except SegmentError as err:
        if err.code != f"{PREFIX}-031":
            raise
        path = ev.path(POLICY_ID)
        try:
            document = json.loads(path.read_bytes())
        except ValueError:
            raise err from None
        found = classify_policy_error(document)
        if found is None or found[0] == "031":
            raise
        code, message = found
        validator = "V-11" if code == "060" else "V-04"
        raise _err(
            code, f"policy {path.name} {message}", validator=validator, dataset=POLICY_ID
        ) from err


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
    bad = batch.select(
        (pl.col("merchant_id") < 1).sum().alias("merchant_id >= 1"),
        (pl.col("tz_group_id").str.len_bytes() < 1).sum().alias("tz_group_id minLength 1"),
        (~(pl.col("gamma") > 0.0)).sum().alias("gamma > 0"),
        (~pl.col("log_gamma").is_finite()).sum().alias("log_gamma finite"),
        (~(pl.col("sigma_gamma") > 0.0)).sum().alias("sigma_gamma > 0"),
        (pl.col("rng_stream_id").str.len_bytes() < 1).sum().alias("rng_stream_id minLength 1"),
        (~pl.col("created_utc").str.contains(_RFC3339_MICROS.pattern))
        .sum()
        .alias("created_utc rfc3339_micros"),
    ).row(0, named=True)
    return [f"{name}: {count} row(s) violate" for name, count in bad.items() if count]


def _write_parts(frame: pl.DataFrame, stage: Path) -> None:
    """``part-NNNNN.parquet`` of ≤ 100,000 rows each, zstd, PK order (§5.5)."""
    n_parts = max(1, -(-frame.height // BATCH_ROWS))
    for i in range(n_parts):
        batch = frame.slice(i * BATCH_ROWS, BATCH_ROWS)
        errors = batch_errors(batch)
        if errors:
            raise _err(
                "030",
                f"output batch {i} fails its schema: {errors[0]}",
                validator="V-16",
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


def run_s3(home: StorageHome, *, seed: int, manifest_fingerprint: str) -> StateOutcome:
    """Run S3 for one seed: S0 evidence → reads → :func:`build_s3` → publish → run-report.

    Grain of the output: one row per merchant × UTC day × tz-group. Returns the table (for
    asset checks), the run-report and the publish result; ``extras["profiles"]`` holds the
    per-merchant σ profile.
    """
    t0 = time.perf_counter()
    tokens = {"seed": str(seed), "manifest_fingerprint": manifest_fingerprint}
    ev = load_evidence(home, seed=seed, manifest_fingerprint=manifest_fingerprint, prefix=PREFIX)
    loaded = _open_policy(ev)
    policy = loaded.model
    if not isinstance(policy, DayEffectPolicyV1):  # pragma: no cover - store contract
        raise _err("031", "policy model has the wrong type", validator="V-04", dataset=POLICY_ID)
    tz_path = ev.path("site_timezones")
    tz = _read_folder(tz_path, "site_timezones", [*KEYS, "tzid"])
    s1_path = home.path("s1_site_weights", tokens)
    s1 = _read_folder(s1_path, "s1_site_weights", [*KEYS])
    if "created_utc" in s1.columns:
        stale = s1.filter(pl.col("created_utc") != ev.created_utc)
        if stale.height:
            raise _err(
                "086",
                "s1_site_weights.created_utc differs from the S0 verified_at_utc (stale S1)",
                validator="V-14",
                dataset="s1_site_weights",
                key=str(stale.row(0, named=True)["created_utc"]),
                expected=ev.created_utc,
            )
    out_rel = home.rel(DATASET, tokens)
    if (
        f"seed={seed}" not in out_rel
        or f"manifest_fingerprint={manifest_fingerprint}" not in out_rel
    ):
        raise _err("071", "output path lacks a partition token", validator="V-15", key=out_rel)
    t_resolve = time.perf_counter()

    build = build_s3(
        tz,
        s1,
        policy,
        manifest_fingerprint=manifest_fingerprint,
        seed=seed,
        created_utc=ev.created_utc,
    )
    version = input_version(
        CODE_VERSION,
        policy_sha256=loaded.sha256_hex,
        site_timezones_sha256=ev.row("site_timezones")["sha256_hex"],
        s1_sha256=folder_digest(s1_path),
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
        state="s3",
        dataset_id=DATASET,
        input_version=version,
    )
    t_publish = time.perf_counter()
    cat = home.catalogue
    ids = ("day_effect_policy_v1", "site_timezones", "s1_site_weights", DATASET)
    report: dict[str, Any] = {
        "component": "2B.S3",
        "manifest_fingerprint": manifest_fingerprint,
        "seed": str(seed),
        "created_utc": ev.created_utc,
        "catalogue_resolution": {
            "dictionary_version": cat.dictionary_version,
            "registry_version": cat.registry_version,
        },
        **build.report,
        "inputs_summary": {
            "weights_path": home.rel("s1_site_weights", tokens),
            "timezones_path": ev.row("site_timezones")["path"],
            **build.report["inputs_summary"],
        },
        "policy": {**build.report["policy"], "sha256_hex": loaded.sha256_hex},
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
            "join_groups_ms": build.timings_ms["join_groups_ms"],
            "draw_ms": build.timings_ms["draw_ms"] + build.timings_ms["frame_ms"],
            "write_ms": int(sum(write_s) * 1000),
            "publish_ms": int((t_publish - t_write - sum(write_s)) * 1000),
        },
    }
    if policy.created_utc_policy_echo:
        report["policy_echo"] = {
            "policy_id": POLICY_ID,
            "version_tag": policy.version_tag,
            "sha256_hex": loaded.sha256_hex,
        }
    write_report(home.path("s3_run_report", tokens), report)
    return StateOutcome(
        frame=build.frame,
        report=report,
        published=(published,),
        extras={"profiles": build.profiles},
    )
