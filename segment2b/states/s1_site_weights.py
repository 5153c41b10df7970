"""2B.S1 — per-merchant site weights (``s1-site-weights.md``).

Grain: one row per site ``(merchant_id, legal_country_iso, site_order)``; weights sum to 1 per
**merchant** across all its countries. RNG-free: the ``profile_mixture_v2`` generator draws its
per-merchant variety from SHA-256 of stable keys (§6), so the output is a pure function of the
policy bytes and the site keys.

``build_s1`` is the pure core (polars/numpy in, polars out) and ``run_s1`` the thin runner:
S0 evidence, dictionary-resolved read, publish, run-report.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from segment2b.catalogue.schemas import table_errors
from segment2b.core.alias import (
    grid_masses,
    segment_first_argmax,
    segment_ids,
    segment_max,
    segment_offsets,
    segment_positions,
    segment_sum,
)
from segment2b.errors import SegmentError
from segment2b.policy.models import AliasLayoutPolicyV1, ProfileMixtureV2
from segment2b.states.evidence import EvidenceCodes, S0Evidence, load_evidence
from segment2b.states.outcome import StateOutcome, input_version
from segment2b.states.s0_gate import environment
from segment2b.storage.digests import folder_digest
from segment2b.storage.home import StorageHome
from segment2b.storage.publish import PublishResult, publish_folder
from segment2b.storage.reports import write_report
from segment2b.storage.tables import conform, read_partition, write_parquet_part

PREFIX = "2B-S1"
CODE_VERSION = "s1-1"
DATASET = "s1_site_weights"
POLICY_ID = "alias_layout_policy_v1"
SCHEMA_REF = "schemas.2B.yaml#/plan/s1_site_weights"
PK: tuple[str, str, str] = ("merchant_id", "legal_country_iso", "site_order")
COMPONENTS: tuple[str, str, str] = ("hub_spoke", "heavy_tail", "near_uniform")
BUCKETS: tuple[str, str, str] = ("small", "mid", "large")
PROFILE_DOMAIN = "2B.S1.profile_mixture_v2"
PROFILE_MODE = "profile_mixture_v2"
SUPPORTED_MODES = ("uniform", "column", PROFILE_MODE, "")
LIMIT_MODES = ("none", "absolute", "relative")
VALIDATOR_IDS: tuple[str, ...] = tuple(f"V-{i:02d}" for i in range(1, 21))
PART_ROWS = 100_000
"""File split rule (§3): flush after the merchant that makes the buffer reach ≥ 100 000 rows."""
MAX_BITS = 62
"""Largest grid exponent whose masses and sums stay exact in int64 (spec only says b ≥ 1)."""

_LOG = logging.getLogger(__name__)
_TWO64 = float(1 << 64)
_RFC3339_MICROS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
_ISO2 = re.compile(r"^[A-Z]{2}$")
_EVIDENCE_CODES = EvidenceCodes(
    receipt_missing="001",
    inventory_invalid="020",
    not_sealed="022",
    path_mismatch="070",
    digest_mismatch="022",  # §2 recommendation: policy H1 != sealed digest is an undeclared read
    created_missing="056",
    policy_schema="031",
)
# Validators for errors raised without one (evidence helpers are shared across states).
_CODE_VALIDATOR = {
    "001": "V-01",
    "020": "V-02",
    "021": "V-02",
    "022": "V-19",
    "031": "V-04",
    "032": "V-04",
    "033": "V-04",
    "040": "V-05",
    "041": "V-06",
    "042": "V-08",
    "050": "V-09",
    "051": "V-10",
    "052": "V-12",
    "053": "V-13",
    "056": "V-15",
    "057": "V-09",
    "070": "V-03",
    "080": "V-17",
    "081": "V-18",
    "082": "V-17",
    "083": "V-07",
}


def _err(
    suffix: str,
    message: str,
    *,
    key: str | None = None,
    validator: str | None = None,
    dataset: str = DATASET,
    **context: Any,
) -> SegmentError:
    return SegmentError(
        f"{PREFIX}-{suffix}",
        message,
        dataset=dataset,
        key=key,
        validator=validator or _CODE_VALIDATOR.get(suffix),
        context=context,
    )


# --- validator ledger (shared with S2) -----------------------------------------------------


class ValidatorLedger:
    """PASS/FAIL/WARN per validator id for the run-report (``validators[]`` + ``summary``)."""

    def __init__(self, ids: Sequence[str]) -> None:
        self.status: dict[str, tuple[str, list[str]]] = {v: ("PASS", []) for v in ids}

    def warn(self, vid: str, code: str) -> None:
        self.status[vid] = ("WARN", [code])

    def fail(self, vid: str, code: str) -> None:
        self.status[vid] = ("FAIL", [code])

    def fail_from(self, err: SegmentError, code_validator: Mapping[str, str]) -> None:
        """Record an abort against its validator (explicit, else by code suffix)."""
        vid = err.validator if err.validator in self.status else None
        vid = vid or code_validator.get(err.code.rsplit("-", 1)[-1])
        if vid in self.status:
            self.fail(vid, err.code)

    def rows(self) -> list[dict[str, Any]]:
        return [{"id": v, "status": s, "codes": c} for v, (s, c) in sorted(self.status.items())]

    def summary(self, *, failed: bool = False) -> dict[str, Any]:
        warn = sum(1 for s, _ in self.status.values() if s == "WARN")
        fail = sum(1 for s, _ in self.status.values() if s == "FAIL")
        if failed:
            fail = max(fail, 1)
        return {
            "overall_status": "FAIL" if fail else "PASS",
            "warn_count": warn,
            "fail_count": fail,
        }


# --- hash-to-unit law (§6.2) ---------------------------------------------------------------


def hash_to_unit(*parts: object) -> float:
    """``U(parts…)``: SHA-256 of ``"|".join(str(p))``, first 8 bytes big-endian → (v + ½)/2^64.

    The int→float conversion rounds to nearest-even, so the result lies in (0, 1] (exactly 1.0
    for v near 2^64).
    """
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode("utf-8")).digest()
    return (float(int.from_bytes(digest[:8], "big")) + 0.5) / _TWO64


def site_scores(merchant_ids: Sequence[int], site_orders: Sequence[int]) -> np.ndarray:
    """``s_i = U(domain, merchant_id, site_order, "site")`` for every site, vectorised.

    One SHA-256 per site (the law needs it); the 8-byte prefixes are gathered into one buffer
    and converted array-wise. numpy's uint64 → float64 cast rounds to nearest-even like
    Python's ``float(int)`` (pinned by a test near 2^64).
    """
    prefixes = b"".join(
        hashlib.sha256(f"{PROFILE_DOMAIN}|{m}|{o}|site".encode()).digest()[:8]
        for m, o in zip(merchant_ids, site_orders, strict=True)
    )
    v = np.frombuffer(prefixes, dtype=">u8").astype(np.uint64)
    return (v.astype(np.float64) + 0.5) / _TWO64


# --- policy resolution (V-04) ---------------------------------------------------------------


@dataclass(frozen=True)
class S1Settings:
    """The policy fields S1 reads, validated (§4): codes 032/033 are raised here."""

    mode: str
    label: str
    column: str | None
    floor_mode: str
    floor_value: float
    cap_mode: str
    cap_value: float
    fallback_mode: str
    normalisation_epsilon: float
    quantisation_epsilon: float
    tiny_negative_epsilon: float
    bits: int
    profile: ProfileMixtureV2 | None

    @property
    def grid_size(self) -> int:
        return 1 << self.bits


def _limit(spec: Mapping[str, Any] | None, name: str, *, required: bool) -> tuple[str, float]:
    if spec is None:
        if required:
            raise _err("032", f"policy field {name} is missing", key=name, dataset=POLICY_ID)
        return "none", 0.0
    mode = spec.get("mode", None if required else "none")
    if mode not in LIMIT_MODES:
        raise _err(
            "032",
            f"policy {name}.mode={mode!r} is not one of {LIMIT_MODES}",
            key=f"{name}.mode",
            dataset=POLICY_ID,
        )
    if mode == "none":
        return "none", 0.0
    value = spec.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _err(
            "032",
            f"policy {name}.value must be a finite number for mode {mode}",
            key=f"{name}.value",
            dataset=POLICY_ID,
        )
    return str(mode), float(value)


def resolve_settings(policy: AliasLayoutPolicyV1) -> S1Settings:
    """V-04 minima and generator config, in the order of §4 (all ``2B-S1-032``/``033``)."""

    def bad(field_name: str, message: str) -> SegmentError:
        return _err("032", message, key=field_name, dataset=POLICY_ID)

    for name in (
        "weight_source",
        "floor_spec",
        "normalisation_epsilon",
        "quantised_bits",
        "quantisation_epsilon",
        "required_s1_provenance",
        "fallback",
    ):
        if getattr(policy, name, None) is None:
            raise bad(name, f"policy field {name} is missing")
    prov = policy.required_s1_provenance
    for flag in ("weight_source", "quantised_bits", "floor_applied"):
        if not prov.get(flag):
            raise bad(
                f"required_s1_provenance.{flag}",
                f"required_s1_provenance.{flag} must be true",
            )
    ws = policy.weight_source
    if not isinstance(ws, Mapping):
        raise bad("weight_source", "weight_source must be an object")
    mode = str(ws.get("mode") or "")
    if mode not in SUPPORTED_MODES:
        raise bad("weight_source.mode", f"weight_source.mode={mode!r} is not supported")
    label = str(ws.get("id") or mode)
    if not label:
        raise bad("weight_source.id", "weight_source has neither id nor mode (no label)")
    profile = policy.profile_mixture_v2
    if mode == PROFILE_MODE:
        if profile is None:
            raise bad("profile_mixture_v2", "mode profile_mixture_v2 needs the profile block")
        if profile.deterministic_seed_scope != "merchant_id":
            raise bad(
                "profile_mixture_v2.deterministic_seed_scope",
                "deterministic_seed_scope must be 'merchant_id'",
            )
    eps = policy.normalisation_epsilon
    eps_q = policy.quantisation_epsilon
    bits = policy.quantised_bits
    if not eps > 0:
        raise bad("normalisation_epsilon", "normalisation_epsilon must be > 0")
    if not eps_q > 0:
        raise bad("quantisation_epsilon", "quantisation_epsilon must be > 0")
    if not 1 <= bits <= MAX_BITS:
        raise bad("quantised_bits", f"quantised_bits must lie in [1, {MAX_BITS}]")
    floor_mode, floor_value = _limit(policy.floor_spec, "floor_spec", required=True)
    cap_mode, cap_value = _limit(policy.cap_spec, "cap_spec", required=False)
    fallback_mode = str(policy.fallback.get("mode", ""))
    column: str | None = None
    if mode not in ("uniform", PROFILE_MODE):
        # `column` mode, and the tolerated empty mode, name a site_locations column.
        column = str(ws.get("column") or ws.get("id") or "")
        if not column:
            raise _err(
                "033",
                "weight_source names no column (column/id both empty)",
                key="weight_source.column",
                dataset=POLICY_ID,
            )
    tiny = policy.tiny_negative_epsilon
    return S1Settings(
        mode=mode,
        label=label,
        column=column,
        floor_mode=floor_mode,
        floor_value=floor_value,
        cap_mode=cap_mode,
        cap_value=cap_value,
        fallback_mode=fallback_mode,
        normalisation_epsilon=float(eps),
        quantisation_epsilon=float(eps_q),
        tiny_negative_epsilon=float(tiny) if tiny else float(eps),
        bits=int(bits),
        profile=profile if mode == PROFILE_MODE else None,
    )


# --- profile_mixture_v2 (§6) ----------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _component_cumulative(pm: ProfileMixtureV2, bucket: str, merchant_id: int) -> list[float]:
    """§6.3 step 2-3: clamped, normalised component weights as running sums (Python floats)."""
    table = pm.mixture_weights
    if all(_number(v) is not None for v in table.values()):
        weights_map: Mapping[str, Any] = table  # flat {component: w} applies to every bucket
    else:
        entry = table.get(bucket)
        if not isinstance(entry, Mapping):
            raise _err(
                "032",
                f"profile_mixture_v2.mixture_weights has no map for bucket {bucket!r}",
                key=f"merchant_id={merchant_id}",
                dataset=POLICY_ID,
                detail="missing mixture_weights bucket",
            )
        weights_map = entry
    weights = []
    for comp in COMPONENTS:
        w = _number(weights_map.get(comp, 0.0))
        if w is None or not math.isfinite(w):
            raise _err(
                "032",
                f"mixture_weights[{bucket}][{comp}] is not a finite number",
                key=f"merchant_id={merchant_id}",
                dataset=POLICY_ID,
                detail="invalid mixture weight",
            )
        weights.append(max(w, 0.0))
    total = weights[0] + weights[1] + weights[2]
    if not total > 0:
        raise _err(
            "032",
            f"mixture_weights for bucket {bucket!r} sum to {total} (must be > 0)",
            key=f"merchant_id={merchant_id}",
            dataset=POLICY_ID,
            detail="mixture weights sum <= 0",
        )
    running, out = 0.0, []
    for w in weights:
        running += w / total
        out.append(running)
    return out


def _alpha(pm: ProfileMixtureV2, bucket: str, comp: str, merchant_id: int) -> float:
    """§6.3 step 4: α resolution (plain number, bucket map/number/default, top-level)."""
    table = pm.concentration_alpha_by_bucket
    value: Any
    if _number(table) is not None:
        value = table
    else:
        assert isinstance(table, Mapping)
        entry = table.get(bucket)
        if isinstance(entry, Mapping):
            value = entry.get(comp, entry.get("default"))
        elif entry is not None:
            value = entry
        else:
            value = table.get(comp, table.get("default"))
    alpha = _number(value)
    if alpha is None or not math.isfinite(alpha) or not alpha > 0:
        raise _err(
            "032",
            f"concentration alpha for ({bucket}, {comp}) is {value!r}; must be finite and > 0",
            key=f"merchant_id={merchant_id}",
            dataset=POLICY_ID,
            detail="invalid alpha",
        )
    return alpha


def _bucket_share(value: Any, bucket: str, default: float, name: str) -> float:
    """Soft cap / secondary floor: number, or ``{bucket: x}`` (missing → default); → [0, 1]."""
    raw = value if _number(value) is not None else value.get(bucket, default)
    x = _number(raw)
    if x is None or math.isnan(x):
        raise _err(
            "032",
            f"profile_mixture_v2.{name}[{bucket}] is not a number",
            key=f"profile_mixture_v2.{name}",
            dataset=POLICY_ID,
        )
    return min(max(x, 0.0), 1.0)


@dataclass(frozen=True)
class ProfileResult:
    """Generator output: per-site base vector plus merchant-level provenance (§6.4)."""

    p: np.ndarray
    bucket: np.ndarray
    component: np.ndarray
    alpha: np.ndarray
    selector_u: np.ndarray
    top1_pre_cap: np.ndarray
    top1_post_cap: np.ndarray
    soft_cap_applied: np.ndarray
    secondary_floor_applied: np.ndarray


def _fail_generator(merchant_id: int, detail: str) -> SegmentError:
    return _err(
        "032",
        f"profile_mixture_v2 failed for merchant {merchant_id}: {detail}",
        key=f"merchant_id={merchant_id}",
        detail=detail,
    )


def profile_mixture_v2(
    merchant_ids: np.ndarray,
    site_orders: np.ndarray,
    offsets: np.ndarray,
    pm: ProfileMixtureV2,
) -> ProfileResult:
    """§6.3 for every merchant at once: bucket, component, α, ranks, shape, cap, floor.

    Rows are in PK order and grouped by merchant (``offsets``). Element-wise steps run over
    all sites; per-merchant sums use :func:`segment_sum` (numpy ``.sum()``, as the design);
    only the secondary-floor donor walk (large + near_uniform with K ≥ 42) is a Python loop.
    """
    sizes = np.diff(offsets)
    n_seg = sizes.size
    seg = segment_ids(offsets)
    pos = segment_positions(offsets)
    first = offsets[:-1]
    mids: list[int] = merchant_ids[first].tolist()

    # 1. Size bucket: first of small/mid/large whose [min, max] holds K, else K<=5/<=20 rule.
    bucket = np.full(n_seg, -1, dtype=np.int64)
    for b_idx, name in enumerate(BUCKETS):
        spec = pm.merchant_size_buckets.get(name)
        if spec is None:
            continue
        hi = math.inf if spec.max_sites is None else spec.max_sites
        hit = (bucket < 0) & (sizes >= spec.min_sites) & (sizes <= hi)
        bucket[hit] = b_idx
    unmatched = bucket < 0
    bucket[unmatched] = np.where(sizes <= 5, 0, np.where(sizes <= 20, 1, 2))[unmatched]

    # 2-3. Component from u_c against the bucket's running sums (+1e-15 slack).
    selector_u = np.array([hash_to_unit(PROFILE_DOMAIN, m, "component") for m in mids])
    cumulative = np.zeros((len(BUCKETS), len(COMPONENTS)))
    used_buckets = np.unique(bucket).tolist()
    for b_idx in used_buckets:
        example = mids[int(np.flatnonzero(bucket == b_idx)[0])]
        cumulative[b_idx] = _component_cumulative(pm, BUCKETS[b_idx], example)
    hits = selector_u[:, None] <= cumulative[bucket] + 1e-15
    component = np.where(hits.any(axis=1), hits.argmax(axis=1), 2)

    # 4. α per (bucket, component) actually used.
    alpha_table = np.full((len(BUCKETS), len(COMPONENTS)), np.nan)
    for b_idx, c_idx in {(int(b), int(c)) for b, c in zip(bucket, component, strict=True)}:
        example = mids[int(np.flatnonzero((bucket == b_idx) & (component == c_idx))[0])]
        alpha_table[b_idx, c_idx] = _alpha(pm, BUCKETS[b_idx], COMPONENTS[c_idx], example)
    alpha = alpha_table[bucket, component]

    # 5. Ranks: stable sort by descending score, ties keep PK order.
    scores = site_scores(merchant_ids.tolist(), site_orders.tolist())
    by_score = np.lexsort((pos, -scores, seg))
    rank = np.empty(seg.size, dtype=np.int64)
    rank[by_score] = pos + 1  # by_score keeps segments contiguous with equal sizes

    # 6. Raw shape. Powers via math.pow per distinct exponent (never a vectorised pow, whose
    # last ulp may differ between SIMD builds): raw = 1.0 / pow(rank, e).
    comp_e, alpha_e = component[seg], alpha[seg]
    raw = np.empty(seg.size, dtype=np.float64)
    powered = comp_e != 2
    exponent = np.where(comp_e == 0, np.maximum(alpha_e, 1.0), np.maximum(alpha_e, 0.5))
    for e in np.unique(exponent[powered]).tolist():
        sel = powered & (exponent == e)
        ranks = rank[sel]
        table = np.array([1.0 / math.pow(r, e) for r in range(1, int(ranks.max()) + 1)])
        raw[sel] = table[ranks - 1]
    near = ~powered
    raw[near] = 1.0 + alpha_e[near] / (rank[near] + 1)
    hub = np.flatnonzero(component == 0)
    if hub.size:
        top = by_score[first[hub]]
        boost = np.maximum(1.0, alpha[hub] * np.maximum(2, sizes[hub] // 2))
        raw[top] = raw[top] + boost
    bad = ~np.isfinite(raw) | (raw <= 0)
    if bad.any():
        raise _fail_generator(mids[int(seg[np.argmax(bad)])], "invalid raw values")

    # 7. Normalise.
    p = raw / segment_sum(raw, offsets)[seg]
    top1_pre = segment_max(p, offsets)

    # 8. Soft cap on the first maximum, excess spread pro rata over the others.
    cap = np.array([_bucket_share(pm.top1_soft_cap_by_bucket, b, 1.0, "cap") for b in BUCKETS])
    cap_m = cap[bucket]
    t = segment_first_argmax(p, offsets)
    capped = (sizes >= 2) & (cap_m < 1.0) & (p[t] > cap_m + 1e-15)
    if capped.any():
        c_seg = np.flatnonzero(capped)
        excess = p[t[c_seg]] - cap_m[c_seg]
        p[t[c_seg]] = cap_m[c_seg]
        others = capped[seg]
        others[t[c_seg]] = False
        o_idx = np.flatnonzero(others)
        o_sizes = sizes[c_seg] - 1
        o_seg = np.repeat(np.arange(c_seg.size), o_sizes)
        rest = segment_sum(p[o_idx], np.concatenate(([0], np.cumsum(o_sizes))))
        r_e, ex_e = rest[o_seg], excess[o_seg]
        flat = r_e <= 1e-15
        vals = p[o_idx]
        vals[flat] = ex_e[flat] / o_sizes[o_seg][flat]
        vals[~flat] = vals[~flat] + vals[~flat] / r_e[~flat] * ex_e[~flat]
        p[o_idx] = vals

    # 9. Secondary floor: raise the second-largest share to m by draining donors in p order.
    floor_m = np.array(
        [_bucket_share(pm.min_secondary_mass, b, 0.0, "min_secondary_mass") for b in BUCKETS]
    )[bucket]
    by_p = np.lexsort((pos, -p, seg))
    second = by_p[np.minimum(first + 1, seg.size - 1)]
    short = (sizes >= 2) & (floor_m > 0) & (p[second] + 1e-15 < floor_m)
    for s_idx in np.flatnonzero(short).tolist():
        a, k = int(first[s_idx]), int(sizes[s_idx])
        order = (by_p[a : a + k] - a).tolist()
        vals_l = p[a : a + k].tolist()
        sec = order[1]
        need = float(floor_m[s_idx]) - vals_l[sec]
        for d in order:
            if d == sec:
                continue
            available = max(vals_l[d] - 1e-12, 0.0)
            if available == 0:
                continue
            x = min(available, need)
            vals_l[d] -= x
            vals_l[sec] += x
            need -= x
            if need <= 1e-12:
                break
        if need > 1e-9:
            raise _fail_generator(mids[s_idx], "infeasible secondary floor")
        p[a : a + k] = vals_l

    # 10. Clip at 0 and renormalise.
    p = np.maximum(p, 0.0)
    total = segment_sum(p, offsets)
    bad_total = ~np.isfinite(total) | (total <= 0)
    if bad_total.any():
        raise _fail_generator(mids[int(np.argmax(bad_total))], "invalid mass")
    p = p / total[seg]
    return ProfileResult(
        p=p,
        bucket=bucket,
        component=component,
        alpha=alpha,
        selector_u=selector_u,
        top1_pre_cap=top1_pre,
        top1_post_cap=segment_max(p, offsets),
        soft_cap_applied=capped,
        secondary_floor_applied=short,
    )


# --- build (§5) --------------------------------------------------------------------------------


@dataclass(frozen=True)
class S1Build:
    """Output of :func:`build_s1`.

    ``frame``: ``s1_site_weights`` rows in PK order, schema-exact. ``merchants``: one row per
    merchant with §6.4 provenance and normalisation/quantisation diagnostics (run-report only).
    ``p_hat``: per row, the quantised weight m/G of the §8 coherence check.
    """

    frame: pl.DataFrame
    merchants: pl.DataFrame
    p_hat: np.ndarray
    counters: Mapping[str, Any]
    settings: S1Settings
    durations_ms: Mapping[str, int] = field(default_factory=dict)


def _key(mid: Any, iso: Any, order: Any) -> str:
    return f"merchant_id={mid}/legal_country_iso={iso}/site_order={order}"


def _row_key(frame: pl.DataFrame, i: int) -> str:
    row = frame.row(i, named=True)
    return _key(row["merchant_id"], row["legal_country_iso"], row["site_order"])


def _merchant_frame(
    mids: np.ndarray, sizes: np.ndarray, columns: Mapping[str, Any]
) -> pl.DataFrame:
    return pl.DataFrame(
        {"merchant_id": pl.Series(mids, dtype=pl.UInt64), "sites": sizes, **columns}
    )


def _empty_build(settings: S1Settings) -> S1Build:
    frame = conform(
        pl.DataFrame(
            {
                "merchant_id": pl.Series([], dtype=pl.UInt64),
                "legal_country_iso": pl.Series([], dtype=pl.String),
                "site_order": pl.Series([], dtype=pl.Int32),
                "p_weight": pl.Series([], dtype=pl.Float64),
                "weight_source": pl.Series([], dtype=pl.String),
                "quantised_bits": pl.Series([], dtype=pl.Int32),
                "floor_applied": pl.Series([], dtype=pl.Boolean),
                "created_utc": pl.Series([], dtype=pl.String),
            }
        ),
        SCHEMA_REF,
    )
    counters = _counters(
        settings,
        merchants_total=0,
        sites_total=0,
        transforms={},
        profile=None,
        max_mass_err=0.0,
        max_delta=0.0,
        exact=0,
    )
    merchants = _merchant_frame(np.zeros(0, np.uint64), np.zeros(0, np.int64), {})
    return S1Build(frame, merchants, np.zeros(0), counters, settings)


def _counters(
    settings: S1Settings,
    *,
    merchants_total: int,
    sites_total: int,
    transforms: Mapping[str, int],
    profile: ProfileResult | None,
    max_mass_err: float,
    max_delta: float,
    exact: int,
) -> dict[str, Any]:
    comp_counts: dict[str, int] = {}
    bucket_counts: dict[str, int] = {}
    if profile is not None:
        for c_idx, n in zip(*np.unique(profile.component, return_counts=True), strict=True):
            comp_counts[COMPONENTS[int(c_idx)]] = int(n)
        for b_idx, n in zip(*np.unique(profile.bucket, return_counts=True), strict=True):
            bucket_counts[BUCKETS[int(b_idx)]] = int(n)
    return {
        "merchants_total": merchants_total,
        "sites_total": sites_total,
        "floors_applied_rows": int(transforms.get("floors_applied_rows", 0)),
        "caps_applied_rows": int(transforms.get("caps_applied_rows", 0)),
        "zero_mass_fallback_merchants": int(transforms.get("zero_mass_fallback_merchants", 0)),
        "tiny_negative_clamps": int(transforms.get("tiny_negative_clamps", 0)),
        "profile_mixture_merchants": merchants_total if profile is not None else 0,
        "profile_soft_cap_applied_merchants": (
            int(profile.soft_cap_applied.sum()) if profile is not None else 0
        ),
        "profile_secondary_floor_applied_merchants": (
            int(profile.secondary_floor_applied.sum()) if profile is not None else 0
        ),
        "profile_component_counts": dict(sorted(comp_counts.items())),
        "profile_bucket_counts": dict(sorted(bucket_counts.items())),
        "max_abs_mass_error_pre_quant": max_mass_err,
        "merchants_over_epsilon": 0,
        "grid_bits": settings.bits,
        "grid_size": settings.grid_size,
        "max_abs_delta_per_row": max_delta,
        "merchants_mass_exact_after_quant": exact,
    }


def _sorted_sites(site_locations: pl.DataFrame, settings: S1Settings) -> pl.DataFrame:
    """Project, sort by PK and reject duplicate keys (V-06)."""
    missing = [c for c in PK if c not in site_locations.columns]
    if missing:
        raise _err(
            "020",
            f"site_locations lacks PK column(s) {missing}",
            dataset="site_locations",
            key=",".join(missing),
        )
    cols = list(PK)
    if settings.column is not None:
        if settings.column not in site_locations.columns:
            raise _err(
                "033",
                f"weight_source column {settings.column!r} is not in site_locations",
                dataset=POLICY_ID,
                key=settings.column,
            )
        if settings.column not in cols:
            cols.append(settings.column)
    frame = site_locations.select(cols).sort(list(PK))
    if frame.height > 1:
        same = (
            (frame["merchant_id"] == frame["merchant_id"].shift(1))
            & (frame["legal_country_iso"] == frame["legal_country_iso"].shift(1))
            & (frame["site_order"] == frame["site_order"].shift(1))
        ).fill_null(False)
        if same.any():
            i = int(same.arg_true()[0])
            raise _err(
                "041",
                "duplicate primary key in site_locations",
                dataset="site_locations",
                key=_row_key(frame, i),
            )
    return frame


def _base_weights(frame: pl.DataFrame, settings: S1Settings) -> np.ndarray:
    """§5 step 3a for `uniform` and `column` modes (the generator is handled by the caller)."""
    if settings.mode == "uniform":
        return np.ones(frame.height, dtype=np.float64)
    assert settings.column is not None
    try:
        col = frame[settings.column].cast(pl.Float64, strict=True)
    except pl.exceptions.PolarsError as exc:
        raise _err(
            "050",
            f"weight column {settings.column!r} does not cast to float64: {exc}",
            dataset="site_locations",
            key=settings.column,
        ) from exc
    return col.fill_null(math.nan).to_numpy().astype(np.float64, copy=True)


def build_s1(
    site_locations: pl.DataFrame, policy: AliasLayoutPolicyV1, *, created_utc: str
) -> S1Build:
    """Freeze one probability law per merchant over its sites (§5, §6, §8).

    Grain of the output: one row per site, PK ``(merchant_id, legal_country_iso, site_order)``,
    in PK order, exactly the columns of ``schemas.2B.yaml#/plan/s1_site_weights``.

    Parameters
    ----------
    site_locations : polars.DataFrame
        1B ``site_locations`` (at least the PK columns, plus the weight column in column mode).
    policy : AliasLayoutPolicyV1
        Validated policy model (schema errors are ``2B-S1-031`` at load time).
    created_utc : str
        S0 ``verified_at_utc`` (time law).

    Raises
    ------
    SegmentError
        With the §11 code, naming the dataset and the offending merchant/site key.
    """
    t0 = time.perf_counter()
    settings = resolve_settings(policy)
    if not created_utc or not _RFC3339_MICROS.match(created_utc):
        raise _err("056", f"created_utc {created_utc!r} is not RFC-3339 µs", key="created_utc")
    frame = _sorted_sites(site_locations, settings)
    n = frame.height
    if n == 0:
        return _empty_build(settings)
    mid_arr = frame["merchant_id"].to_numpy()
    offsets = segment_offsets(mid_arr)
    sizes = np.diff(offsets)
    seg = segment_ids(offsets)
    mids = mid_arr[offsets[:-1]]

    def merchant_key(i: int) -> str:
        return f"merchant_id={int(mids[i])}"

    # 3a. Base weights.
    profile: ProfileResult | None = None
    if settings.profile is not None:
        profile = profile_mixture_v2(
            mid_arr, frame["site_order"].to_numpy(), offsets, settings.profile
        )
        w = profile.p
    else:
        w = _base_weights(frame, settings)
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise _err(
            "050", f"invalid base weight {w[i]!r}", dataset="site_locations", key=_row_key(frame, i)
        )
    t1 = time.perf_counter()

    # 3b-c. Floor and cap, both thresholds taken from the base weights w.
    w_max = segment_max(w, offsets)[seg]
    u = w.copy()
    floor_applied = np.zeros(n, dtype=bool)
    if settings.floor_mode != "none":
        f = settings.floor_value * (w_max if settings.floor_mode == "relative" else 1.0)
        floor_applied = w < f
        u = np.where(floor_applied, f, u)
    caps_rows = 0
    if settings.cap_mode != "none":
        c = settings.cap_value * (w_max if settings.cap_mode == "relative" else 1.0)
        capped = u > c
        caps_rows = int(capped.sum())
        u = np.where(capped, c, u)
    floors_rows = int(floor_applied.sum())

    # 3d. Zero-mass fallback.
    mass = segment_sum(u, offsets)
    zero = ~np.isfinite(mass) | (mass <= 0)
    if zero.any():
        if settings.fallback_mode != "uniform":
            raise _err(
                "053",
                f"zero-mass merchant needs fallback 'uniform', policy has "
                f"{settings.fallback_mode!r}",
                key=merchant_key(int(np.argmax(zero))),
            )
        rows = zero[seg]
        u[rows] = 1.0
        floor_applied[rows] = True
        floors_rows += int(sizes[zero].sum())
        mass = segment_sum(u, offsets)

    # 3e. Normalise per merchant (never per merchant×country: §13).
    p = u / mass[seg]
    sums = segment_sum(p, offsets)
    abs_err = np.abs(sums - 1.0)
    eps = settings.normalisation_epsilon
    if (abs_err > eps).any():
        i = int(np.argmax(abs_err))
        raise _err("051", f"Σp − 1 = {sums[i] - 1.0:.3e} exceeds ε", key=merchant_key(i))
    max_mass_err = float(abs_err.max())

    # 3f. Tiny negatives: clamp within τ, renormalise once.
    clamps = 0
    negative = p < 0
    if negative.any():
        worst = int(np.argmin(p))
        if p[worst] < -settings.tiny_negative_epsilon:
            raise _err("057", f"p_weight {p[worst]!r} below −τ", key=_row_key(frame, worst))
        touched = np.zeros(sizes.size, dtype=bool)
        touched[seg[negative]] = True
        clamps = int(negative.sum())
        p[negative] = 0.0
        floor_applied[negative] = True
        re_sum = segment_sum(p, offsets)
        if (re_sum[touched] <= 0).any():
            raise _err("051", "renormalisation after clamping has no mass")
        rows = touched[seg]
        p[rows] = p[rows] / re_sum[seg][rows]
        sums = segment_sum(p, offsets)
        abs_err = np.abs(sums - 1.0)
        if (abs_err > eps).any():
            i = int(np.argmax(abs_err))
            raise _err("051", "Σp − 1 exceeds ε after clamping", key=merchant_key(i))
        max_mass_err = max(max_mass_err, float(abs_err.max()))

    # 3g. Range.
    out_of_range = (p < 0) | (p > 1) | ~np.isfinite(p)
    if out_of_range.any():
        i = int(np.argmax(out_of_range))
        raise _err("057", f"p_weight {p[i]!r} outside [0, 1]", key=_row_key(frame, i))
    t2 = time.perf_counter()

    # 3h. Quantisation coherence (§8): S1's ranking law, integers never persisted.
    grid = grid_masses(p, offsets, settings.bits, residual="floor_fraction", skip_nonpositive=True)
    p_hat = grid.masses / float(settings.grid_size)
    delta = np.abs(p_hat - p)
    max_delta_m = segment_max(delta, offsets)
    quant_bad = (grid.unassigned > 0) | (segment_max(grid.masses, offsets) < 0)
    quant_bad |= max_delta_m > settings.quantisation_epsilon
    if quant_bad.any():
        i = int(np.argmax(quant_bad))
        raise _err(
            "052",
            f"quantisation incoherent at b={settings.bits}: max |m/G − p| = "
            f"{max_delta_m[i]:.3e}, unassigned Δ = {int(grid.unassigned[i])}",
            key=merchant_key(i),
            max_abs_delta=float(max_delta_m[i]),
            quantisation_epsilon=settings.quantisation_epsilon,
        )
    t3 = time.perf_counter()

    # 3i. Emit.
    if profile is not None:
        labels = np.array([f"{PROFILE_MODE}:{c}" for c in COMPONENTS])[profile.component[seg]]
        weight_source = pl.Series("weight_source", labels, dtype=pl.String)
    else:
        weight_source = pl.Series("weight_source", [settings.label] * n, dtype=pl.String)
    out = conform(
        frame.select(PK).with_columns(
            pl.Series("p_weight", p, dtype=pl.Float64),
            weight_source,
            pl.lit(settings.bits, dtype=pl.Int32).alias("quantised_bits"),
            pl.Series("floor_applied", floor_applied, dtype=pl.Boolean),
            pl.lit(created_utc, dtype=pl.String).alias("created_utc"),
        ),
        SCHEMA_REF,
    )
    _validate_output(out, frame)

    merchant_cols: dict[str, Any] = {
        "sum_p": sums,
        "abs_error": abs_err,
        "max_abs_delta": max_delta_m,
    }
    if profile is not None:
        merchant_cols |= {
            "weight_profile": [PROFILE_MODE] * mids.size,
            "mixture_component": np.array(COMPONENTS)[profile.component],
            "alpha_used": profile.alpha,
            "size_bucket": np.array(BUCKETS)[profile.bucket],
            "selector_u": profile.selector_u,
            "top1_pre_cap": profile.top1_pre_cap,
            "top1_post_cap": profile.top1_post_cap,
            "soft_cap_applied": profile.soft_cap_applied,
            "secondary_floor_applied": profile.secondary_floor_applied,
        }
    counters = _counters(
        settings,
        merchants_total=int(mids.size),
        sites_total=n,
        transforms={
            "floors_applied_rows": floors_rows,
            "caps_applied_rows": caps_rows,
            "zero_mass_fallback_merchants": int(zero.sum()),
            "tiny_negative_clamps": clamps,
        },
        profile=profile,
        max_mass_err=max_mass_err,
        max_delta=float(delta.max()),
        exact=int((grid.unassigned == 0).sum()),
    )
    t4 = time.perf_counter()
    return S1Build(
        frame=out,
        merchants=_merchant_frame(mids, sizes, merchant_cols),
        p_hat=p_hat,
        counters=counters,
        settings=settings,
        durations_ms={
            "transform_ms": round((t1 - t0) * 1000),
            "normalise_ms": round((t2 - t1) * 1000),
            "quantise_ms": round((t3 - t2) * 1000),
            "emit_ms": round((t4 - t3) * 1000),
        },
    )


def _validate_output(out: pl.DataFrame, source: pl.DataFrame) -> None:
    """V-05 schema + values, V-07 writer order, V-08 coverage (cheap, whole frame)."""
    errors = table_errors(SCHEMA_REF, out)
    checks = {
        "merchant_id >= 1": pl.col("merchant_id") >= 1,
        "legal_country_iso is iso2": pl.col("legal_country_iso").str.contains(_ISO2.pattern),
        "site_order >= 1": pl.col("site_order") >= 1,
        "p_weight in [0,1]": pl.col("p_weight").is_between(0.0, 1.0),
        "weight_source non-empty": pl.col("weight_source").str.len_chars() >= 1,
        "quantised_bits >= 1": pl.col("quantised_bits") >= 1,
        "created_utc rfc3339_micros": pl.col("created_utc").str.contains(_RFC3339_MICROS.pattern),
    }
    if not errors:
        ok = out.select(**{k: v.all() for k, v in checks.items()}).row(0, named=True)
        errors = [f"rule '{k}' fails" for k, v in ok.items() if not v]
    if errors:
        raise _err("040", f"output fails its schema: {errors[0]}", schema_errors=errors)
    if out.height != source.height:
        raise _err("042", f"{out.height} rows emitted for {source.height} sites")
    if out.height > 1:
        prev = out.select(PK).shift(1)
        cur = out.select(PK)
        # Tuple order on (merchant, country, order): strictly increasing after the first row.
        gt = (
            (cur["merchant_id"] > prev["merchant_id"])
            | (
                (cur["merchant_id"] == prev["merchant_id"])
                & (
                    (cur["legal_country_iso"] > prev["legal_country_iso"])
                    | (
                        (cur["legal_country_iso"] == prev["legal_country_iso"])
                        & (cur["site_order"] > prev["site_order"])
                    )
                )
            )
        ).fill_null(True)
        if not gt.all():
            i = int((~gt).arg_true()[0])
            raise _err("083", "writer order is not the PK order", key=_row_key(out, i))


# --- files (§3 split rule) ---------------------------------------------------------------------


def part_bounds(merchant_sizes: Sequence[int], rows_per_part: int = PART_ROWS) -> list[int]:
    """Row offsets of the part files: flush after the merchant that reaches ``rows_per_part``."""
    bounds, buffered, row = [0], 0, 0
    for k in merchant_sizes:
        row += k
        buffered += k
        if buffered >= rows_per_part:
            bounds.append(row)
            buffered = 0
    if bounds[-1] != row or row == 0:
        bounds.append(row)
    return bounds


def write_s1_parts(frame: pl.DataFrame, folder: Any) -> list[str]:
    """Write ``part-00000.parquet``, ``part-00001.parquet``, … (merchants never split).

    Every file goes through :func:`write_parquet_part` so the writer settings stay pinned in
    one place; an empty frame still writes one zero-row file carrying the schema.
    """
    sizes = frame.group_by("merchant_id", maintain_order=True).len()["len"].to_list()
    bounds = part_bounds(sizes)
    names = []
    for k, (a, b) in enumerate(itertools.pairwise(bounds)):
        path = write_parquet_part(frame.slice(a, b - a), folder, f"part-{k:05d}.parquet")
        names.append(path.name)
    return names


# --- runner ------------------------------------------------------------------------------------


def _optional_pins(ev: S0Evidence, led: ValidatorLedger) -> list[str]:
    """V-20: the 2A pins are all-or-none; they never influence weights."""
    pins = ("site_timezones", "tz_timetable_cache")
    sealed = [p for p in pins if ev.is_sealed(p)]
    if len(sealed) == 1:
        led.warn("V-20", f"{PREFIX}-090")
        return []
    for pin in sealed:
        ev.path(pin)  # sealed path / partition equality (070)
    return sealed


def _samples(build: S1Build) -> dict[str, Any]:
    frame = build.frame
    n = min(frame.height, 20)
    keys = frame.select(PK).head(n).rows()
    pw = frame["p_weight"].to_numpy()
    by_desc = frame.sort(["p_weight", *PK], descending=[True, False, False, False])
    by_asc = frame.sort(["p_weight", *PK])

    def extreme(sub: pl.DataFrame) -> list[dict[str, Any]]:
        return [
            {
                "key": [r["merchant_id"], r["legal_country_iso"], r["site_order"]],
                "p_weight": r["p_weight"],
            }
            for r in sub.head(10).iter_rows(named=True)
        ]

    delta = np.abs(build.p_hat - pw)
    q_order = np.lexsort((np.arange(pw.size), -delta))[:20]
    all_keys = frame.select(PK)
    merchants = build.merchants
    norm = merchants.sort(["abs_error", "merchant_id"], descending=[True, False]).head(20)
    profile_cols = [
        "weight_profile",
        "mixture_component",
        "alpha_used",
        "size_bucket",
        "selector_u",
        "top1_pre_cap",
        "top1_post_cap",
        "soft_cap_applied",
        "secondary_floor_applied",
    ]
    profile_rows: list[dict[str, Any]] = []
    if "weight_profile" in merchants.columns:
        profile_rows = merchants.select("merchant_id", "sites", *profile_cols).head(20).to_dicts()
    return {
        "key_coverage": [{"key": list(k), "present": True} for k in keys],
        "normalisation": [
            {
                "merchant_id": r["merchant_id"],
                "sites": r["sites"],
                "sum_p": r["sum_p"],
                "abs_error": r["abs_error"],
            }
            for r in norm.iter_rows(named=True)
        ],
        "profile_mixture": profile_rows,
        "extremes": {"top": extreme(by_desc), "bottom": extreme(by_asc)},
        "quantisation": [
            {
                "key": list(all_keys.row(int(i))),
                "p_weight": float(pw[i]),
                "p_hat": float(build.p_hat[i]),
                "abs_delta": float(delta[i]),
            }
            for i in q_order
        ],
    }


def _report(
    *,
    home: StorageHome,
    tokens: Mapping[str, str],
    ev: S0Evidence,
    build: S1Build,
    policy_version_tag: str,
    policy_digest: str,
    published: PublishResult,
    led: ValidatorLedger,
    durations: Mapping[str, int],
    base: Mapping[str, Any],
) -> dict[str, Any]:
    c = build.counters
    s = build.settings
    transforms = {
        k: c[k]
        for k in (
            "floors_applied_rows",
            "caps_applied_rows",
            "zero_mass_fallback_merchants",
            "tiny_negative_clamps",
            "profile_mixture_merchants",
            "profile_soft_cap_applied_merchants",
            "profile_secondary_floor_applied_merchants",
            "profile_component_counts",
            "profile_bucket_counts",
        )
    }
    return {
        **base,
        "created_utc": ev.created_utc,
        "policy": {
            "id": POLICY_ID,
            "version_tag": policy_version_tag,
            "sha256_hex": policy_digest,
            "weight_source_mode": s.mode,
            "weight_source_label": s.label,
            "quantised_bits": s.bits,
            "normalisation_epsilon": s.normalisation_epsilon,
            "quantisation_epsilon": s.quantisation_epsilon,
        },
        "inputs_summary": {
            "site_locations_path": home.rel("site_locations", tokens),
            "merchants_total": c["merchants_total"],
            "sites_total": c["sites_total"],
        },
        "transforms": transforms,
        "normalisation": {
            "max_abs_mass_error_pre_quant": c["max_abs_mass_error_pre_quant"],
            "merchants_over_epsilon": c["merchants_over_epsilon"],
        },
        "quantisation": {
            "grid_bits": c["grid_bits"],
            "grid_size": c["grid_size"],
            "max_abs_delta_per_row": c["max_abs_delta_per_row"],
            "merchants_mass_exact_after_quant": c["merchants_mass_exact_after_quant"],
        },
        "publish": {
            "target_path": home.rel(DATASET, tokens),
            "bytes_written": published.bytes,
            "write_once_verified": True,
            "atomic_publish": published.outcome != "idempotent",
            "outcome": published.outcome,
        },
        "validators": led.rows(),
        "summary": led.summary(),
        "samples": _samples(build),
        "id_map": [
            {"id": "site_locations", "path": home.rel("site_locations", tokens)},
            {"id": POLICY_ID, "path": home.rel(POLICY_ID, tokens)},
            {"id": DATASET, "path": home.rel(DATASET, tokens)},
        ],
        "durations_ms": dict(durations),
    }


def run_s1(home: StorageHome, *, seed: int, manifest_fingerprint: str) -> StateOutcome:
    """Execute S1 for one seed × fingerprint; any Abort writes a FAIL run-report and re-raises.

    Publishes ``s1_site_weights`` (one partition folder, atomic rename) and returns the frame,
    the run-report and the publish result.
    """
    tokens = {"seed": str(seed), "manifest_fingerprint": manifest_fingerprint}
    led = ValidatorLedger(VALIDATOR_IDS)
    cat = home.catalogue
    base: dict[str, Any] = {
        "component": "2B.S1",
        "manifest_fingerprint": manifest_fingerprint,
        "seed": str(seed),
        "catalogue_resolution": {
            "dictionary_version": cat.dictionary_version,
            "registry_version": cat.registry_version,
        },
        "environment": {**environment(), "network_io_detected": 0},
    }
    report_path = home.path("s1_run_report", tokens)
    try:
        outcome = _run(
            home, tokens, seed=seed, manifest_fingerprint=manifest_fingerprint, led=led, base=base
        )
    except SegmentError as err:
        led.fail_from(err, _CODE_VALIDATOR)
        write_report(
            report_path,
            {
                **base,
                "validators": led.rows(),
                "summary": led.summary(failed=True),
                "failure": {
                    **err.payload(),
                    "manifest_fingerprint": manifest_fingerprint,
                    "seed": seed,
                },
            },
        )
        raise
    write_report(report_path, dict(outcome.report))
    return outcome


def _run(
    home: StorageHome,
    tokens: Mapping[str, str],
    *,
    seed: int,
    manifest_fingerprint: str,
    led: ValidatorLedger,
    base: Mapping[str, Any],
) -> StateOutcome:
    t0 = time.perf_counter()
    ev = load_evidence(
        home,
        seed=seed,
        manifest_fingerprint=manifest_fingerprint,
        prefix=PREFIX,
        codes=_EVIDENCE_CODES,
    )
    loaded = ev.policy(POLICY_ID)
    policy = loaded.model
    assert isinstance(policy, AliasLayoutPolicyV1)
    folder = ev.path("site_locations")
    _optional_pins(ev, led)
    if not folder.is_dir():
        raise _err(
            "020", "site_locations partition is missing", dataset="site_locations", key=str(folder)
        )
    sealed_digest = ev.row("site_locations")["sha256_hex"]
    if folder_digest(folder) != sealed_digest:
        raise _err(
            "022",
            "site_locations bytes differ from what S0 sealed (re-run S0)",
            dataset="site_locations",
            key=home.rel("site_locations", tokens),
        )
    entry = home.catalogue.entry("site_locations", code=f"{PREFIX}-020")
    sites = read_partition(
        folder, dataset_id="site_locations", schema_ref=entry.schema_ref, code=f"{PREFIX}-020"
    )
    t1 = time.perf_counter()
    if sites.height == 0:
        _LOG.warning("S1 seed=%s: site_locations is empty; publishing an empty table", seed)
    build = build_s1(sites, policy, created_utc=ev.created_utc)
    t2 = time.perf_counter()

    target = home.path(DATASET, tokens)
    rel = home.rel(DATASET, tokens)
    if f"seed={seed}" not in rel or f"manifest_fingerprint={manifest_fingerprint}" not in rel:
        raise _err("070", "output path lacks its partition tokens", key=rel)
    published = publish_folder(
        home,
        target,
        lambda stage: write_s1_parts(build.frame, stage),
        prefix=PREFIX,
        state="s1",
        dataset_id=DATASET,
        input_version=input_version(
            CODE_VERSION, site_locations=sealed_digest, policy=loaded.sha256_hex
        ),
    )
    t3 = time.perf_counter()
    durations = {
        "resolve_ms": round((t1 - t0) * 1000),
        **{k: v for k, v in build.durations_ms.items() if k != "emit_ms"},
        "publish_ms": round((t3 - t2) * 1000),
    }
    report = _report(
        home=home,
        tokens=tokens,
        ev=ev,
        build=build,
        policy_version_tag=policy.version_tag,
        policy_digest=loaded.sha256_hex,
        published=published,
        led=led,
        durations=durations,
        base=base,
    )
    return StateOutcome(build.frame, report, [published], extras={"build": build})
