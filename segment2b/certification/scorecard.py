"""Per-seed realism scorecard (``certification.md`` §1, §3–§5, §7 seed rows, §8 shape).

:func:`score_seed` is a pure function of one seed's already-loaded inputs (:class:`SeedInputs`);
:func:`load_seed_inputs` is the thin, read-only loader over a storage home. Scoring never writes
into a state's output.

The scorecard holds every §3 metric (S1, S3, S4 and the roster), the eleven hard gates
T-S1-01..T-S4-05 at B and B+, the rails R-S2, R-S3, R-S7, R-S8 and R-SCH, the advisory X-* rows
and S3 diagnostics (README decision 13), the realism-floor diagnostic (decision 15), the roster
preconditions of README decision 11 and the seed verdict (§7, first four rows). Rails degrade
honestly: a missing or unreadable report or flag fails its rail.

No wall-clock value enters a scorecard: ``generated_utc`` is the run receipt's deterministic
``created_utc`` (time law), so scoring unchanged inputs twice yields the same bytes.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from segment2b.catalogue.dictionary import load_catalogue
from segment2b.catalogue.schemas import table_errors
from segment2b.certification.gates import S1_GATES, Gate, gate_results
from segment2b.certification.s1_metrics import s1_metrics
from segment2b.certification.s3_metrics import S3_GATES, s3_diagnostics, s3_metrics
from segment2b.certification.s4_metrics import (
    EPSILON,
    S4_GATES,
    S4_REPORT_ONLY_GATES,
    floor_diagnostic,
    s4_metrics,
)
from segment2b.certification.stats import median
from segment2b.errors import SegmentError
from segment2b.policy.models import POLICY_IDS
from segment2b.storage.digests import parse_flag
from segment2b.storage.home import StorageHome

__all__ = [
    "ERROR_PREFIX",
    "FAIL_REALISM",
    "GATE_KEYS",
    "HARD_GATES",
    "INVALID_FOR_GRADING",
    "PASS_B",
    "PASS_BPLUS",
    "PHASE",
    "RAIL_IDS",
    "SeedInputs",
    "artifact_name",
    "json_ready",
    "load_seed_inputs",
    "roster_metrics",
    "score_seed",
    "seed_verdict",
    "thresholds",
]

PHASE = "certification"
SEGMENT = "2B"
ERROR_PREFIX = "2B-CERT"

PASS_BPLUS = "PASS_BPLUS"
PASS_B = "PASS_B"
FAIL_REALISM = "FAIL_REALISM"
INVALID_FOR_GRADING = "INVALID_FOR_GRADING"

HORIZON_MIN_DAYS = 28
"""P-HORIZON and X-S5-HOR at B: roster span ≥ 28 days."""
REPEAT_MEDIAN_MIN = 2.0
"""P-REPEAT (README decision 11): median arrivals per active merchant-day ≥ 2."""

HARD_GATES: tuple[Gate, ...] = tuple(
    g for g in (*S1_GATES, *S3_GATES, *S4_GATES) if g.kind == "hard"
)
"""T-S1-01..T-S4-05, in table order (§4)."""

GATE_KEYS: tuple[tuple[str, str], ...] = (
    ("s1_residual_abs_uniform_median", "T-S1-01"),
    ("s1_top1_top2_gap_median", "T-S1-02"),
    ("s1_merchant_hhi_iqr", "T-S1-03"),
    ("s3_merchant_gamma_std_median", "T-S3-01"),
    ("s3_tz_group_differentiation_nonzero", "T-S3-02"),
    ("s3_gamma_stability_proxy", "T-S3-03"),
    ("s4_max_p_group_median", "T-S4-01"),
    ("s4_share_max_p_group_ge_095", "T-S4-02"),
    ("s4_share_groups_ge_005_ge_2", "T-S4-03"),
    ("s4_entropy_p50", "T-S4-04"),
    ("s4_mass_conservation", "T-S4-05"),
)
"""§8 ``hard_gates`` keys → gate table IDs."""

_THRESHOLD_KEYS: tuple[tuple[str, str], ...] = (
    ("s1_residual_abs_uniform_median_min", "T-S1-01"),
    ("s1_top1_top2_gap_median_min", "T-S1-02"),
    ("s1_merchant_hhi_iqr_min", "T-S1-03"),
    ("s3_merchant_gamma_std_median_min", "T-S3-01"),
    ("s4_max_p_group_median_max", "T-S4-01"),
    ("s4_share_max_p_group_ge_095_max", "T-S4-02"),
    ("s4_share_groups_ge_005_ge_2_min", "T-S4-03"),
    ("s4_entropy_p50_min", "T-S4-04"),
    ("s4_mass_abs_error_max_epsilon", "T-S4-05"),  # ours: ε of T-S4-05 (decision 14)
)

SIGMA_ADVISORY = Gate("X-S3-SIGMA", "sigma_distinct_values", 1.0, 1.0, ">", kind="report_only")
"""Advisory (§10, README decision 13): more than one distinct ``sigma_gamma`` value (the
baseline's scalar sigma had exactly one); the same rule as the S3 asset's advisory check."""

RAIL_IDS: tuple[str, ...] = ("R-S2", "R-S3", "R-S7", "R-S8", "R-SCH")

_TABLES: tuple[tuple[str, str], ...] = (
    ("s1", "s1_site_weights"),
    ("s3", "s3_day_effects"),
    ("s4", "s4_group_weights"),
)

_ROSTER_SCHEMA: dict[str, pl.DataType] = {
    "merchant_id": pl.UInt64(),
    "utc_timestamp": pl.String(),
    "utc_day": pl.String(),
    "is_virtual": pl.Boolean(),
    "channel": pl.String(),
    "mcc": pl.Int64(),
}


@dataclass(frozen=True)
class SeedInputs:
    """Everything :func:`score_seed` reads for one seed, already loaded (read-only).

    ``None`` means the input is absent: a missing S2/S3 run-report, S7 report or S8 flag fails
    its rail; a missing roster or merchant attribute table makes the seed not gradable; missing
    ``site_timezones`` leaves the floor diagnostic unavailable. ``policy_digests`` are the
    policy rows of ``sealed_inputs_2B`` (``asset_id → sha256_hex``); ``generated_utc`` is the
    run receipt's deterministic ``created_utc``.
    """

    seed: int
    manifest_fingerprint: str
    parameter_hash: str
    run_id: str
    s1: pl.DataFrame
    s3: pl.DataFrame
    s4: pl.DataFrame
    roster: pl.DataFrame | None = None
    merchant_attributes: pl.DataFrame | None = None
    site_timezones: pl.DataFrame | None = None
    s2_run_report: Mapping[str, Any] | None = None
    s3_run_report: Mapping[str, Any] | None = None
    s7_audit_report: Mapping[str, Any] | None = None
    s8_flag: str | None = None
    policy_digests: Mapping[str, str] = field(default_factory=dict)
    generated_utc: str | None = None
    phase: str = PHASE

    def plan_tokens(self) -> dict[str, str]:
        return {"seed": str(self.seed), "manifest_fingerprint": self.manifest_fingerprint}

    def run_tokens(self) -> dict[str, str]:
        return {**self.plan_tokens(), "parameter_hash": self.parameter_hash, "run_id": self.run_id}


# --------------------------------------------------------------------------------------------
# helpers


def json_ready(obj: Any) -> Any:
    """Plain-JSON form: NaN → ``None``, ±inf → ``"+inf"``/``"-inf"``, numpy scalars and dates
    to Python, mapping keys to ``str`` (so ``json.dumps(..., allow_nan=False)`` never fails)."""
    if isinstance(obj, Mapping):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        value = float(obj)
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "+inf" if value > 0 else "-inf"
        return value
    if isinstance(obj, dt.date):
        return obj.isoformat()
    return obj


def artifact_name(kind: str, suffix: str, ext: str, *, phase: str = PHASE) -> str:
    """§8 artifact name ``segment2b_<phase>_<kind>_<run_id or run-set>.<ext>``."""
    return f"segment2b_{phase}_{kind}_{suffix}.{ext}"


def thresholds() -> dict[str, dict[str, float]]:
    """§8 ``thresholds{B, BPLUS}`` from the gate constants (never re-typed)."""
    by_id = {g.id: g for g in HARD_GATES}
    return {
        "B": {key: by_id[gid].b_threshold for key, gid in _THRESHOLD_KEYS},
        "BPLUS": {key: by_id[gid].bplus_threshold for key, gid in _THRESHOLD_KEYS},
    }


def _as_date(frame: pl.DataFrame, col: str) -> pl.DataFrame:
    if frame.schema[col] == pl.String:
        return frame.with_columns(pl.col(col).str.to_date("%Y-%m-%d"))
    return frame


def _span_days(days: pl.Series) -> int:
    if days.len() == 0 or days.null_count() == days.len():
        return 0
    lo, hi = days.min(), days.max()
    return (hi - lo).days + 1  # type: ignore[operator,union-attr]


# --------------------------------------------------------------------------------------------
# roster (§3 roster metrics, §5 / README decision 11 preconditions)


def _coverage(frame: pl.DataFrame, attributes: pl.DataFrame | None) -> dict[str, Any]:
    """(class, channel) coverage: class = ``mcc_class`` of the merchant in the world's
    attribute table, channel = the roster row's ``channel`` (README decisions 10, 11)."""
    out: dict[str, Any] = {
        "class_channel_coverage_observable": False,
        "class_channel_retained": None,
        "class_channel_cells_world": [],
        "class_channel_cells_roster": [],
        "class_channel_cells_missing": [],
        "roster_unknown_merchant_rows": None,
        "roster_mcc_mismatch_rows": None,
    }
    if attributes is None:
        out["coverage_reason"] = "merchant_attributes missing"
        return out
    attrs = attributes.select(
        pl.col("merchant_id").cast(pl.UInt64),
        pl.col("mcc_class").cast(pl.String),
        pl.col("channel").cast(pl.String),
        pl.col("mcc").cast(pl.Int64).alias("attr_mcc"),
    )
    world = {f"{c}|{ch}" for c, ch in attrs.select("mcc_class", "channel").unique().iter_rows()}
    out["class_channel_cells_world"] = sorted(world)
    if "channel" not in frame.columns or frame.height == 0:
        out["coverage_reason"] = (
            "roster rows carry no channel field" if frame.height else "roster empty"
        )
        return out
    joined = frame.select(
        pl.col("merchant_id").cast(pl.UInt64),
        "channel",
        (pl.col("mcc") if "mcc" in frame.columns else pl.lit(None, pl.Int64)).alias("mcc"),
    ).join(attrs.drop("channel"), on="merchant_id", how="left")
    unknown = int(joined["mcc_class"].null_count())
    mismatch = int(
        joined.filter(pl.col("mcc").is_not_null() & (pl.col("mcc") != pl.col("attr_mcc"))).height
    )
    cells = {
        f"{c}|{ch}"
        for c, ch in joined.drop_nulls(["mcc_class", "channel"])
        .select("mcc_class", "channel")
        .unique()
        .iter_rows()
    }
    out["roster_unknown_merchant_rows"] = unknown
    out["roster_mcc_mismatch_rows"] = mismatch
    out["class_channel_cells_roster"] = sorted(cells)
    out["class_channel_cells_missing"] = sorted(world - cells)
    null_channel = int(frame["channel"].null_count())
    if null_channel or unknown:
        out["coverage_reason"] = (
            f"{null_channel} roster row(s) without channel, {unknown} row(s) of merchants "
            "absent from merchant_attributes"
        )
        return out
    out["class_channel_coverage_observable"] = True
    retained = not (world - cells) and mismatch == 0
    out["class_channel_retained"] = retained
    out["coverage_reason"] = (
        ""
        if retained
        else f"missing cells {sorted(world - cells)}, {mismatch} row(s) with an mcc that "
        "disagrees with merchant_attributes"
    )
    return out


def roster_metrics(
    roster: pl.DataFrame | None, attributes: pl.DataFrame | None = None
) -> dict[str, Any]:
    """§3 roster metrics, the coverage fields and the preconditions (README decision 11).

    Parameters
    ----------
    roster : polars.DataFrame or None
        Every line of ``arrival_roster.jsonl`` (``merchant_id, utc_timestamp, utc_day``;
        optional ``is_virtual`` (missing = false), ``channel``, ``mcc``). ``None`` = no roster.
    attributes : polars.DataFrame or None
        The world's ``merchant_attributes`` (``merchant_id, mcc, mcc_class, channel, …``).

    Returns
    -------
    dict
        The §8 ``roster_posture`` keys plus ``roster_present``, ``merchant_total``,
        ``merchants_with_repeat_day_total``, ``arrivals_per_merchant_day_median``, the
        (class, channel) cell lists and ``preconditions{horizon_ge_28_days,
        repeated_arrivals_present, class_channel_retained, ready_for_realism_grading}``.
    """
    present = roster is not None
    frame = roster if roster is not None else pl.DataFrame(schema=_ROSTER_SCHEMA)
    frame = _as_date(frame, "utc_day")
    days = frame["utc_day"]
    md = frame.group_by(["merchant_id", "utc_day"]).agg(pl.len().alias("n"))
    per_m = md.group_by("merchant_id").agg(pl.col("n").max().alias("max_n"))
    counts = md["n"].to_numpy()
    virtual = (
        int(frame["is_virtual"].fill_null(False).sum()) if "is_virtual" in frame.columns else 0
    )
    repeat_total = int((counts >= 2).sum())
    merchants = per_m.height
    with_repeat = int((per_m["max_n"] >= 2).sum())
    per_day_median = median(counts) if counts.size else math.nan
    out: dict[str, Any] = {
        "roster_present": present,
        "arrival_total": frame.height,
        "virtual_arrival_total": virtual,
        "physical_arrival_total": frame.height - virtual,
        "utc_day_count": int(days.n_unique()) if frame.height else 0,
        "utc_day_min": days.min() if frame.height else None,
        "utc_day_max": days.max() if frame.height else None,
        "horizon_span_days": _span_days(days),
        "merchant_day_total": md.height,
        "merchant_day_repeat_ge2_total": repeat_total,
        "merchant_day_repeat_ge2_share": repeat_total / md.height if md.height else 0.0,
        "merchant_total": merchants,
        "merchants_with_repeat_day_total": with_repeat,
        "arrivals_per_merchant_day_median": per_day_median,
        **_coverage(frame, attributes),
    }
    horizon_ok = out["horizon_span_days"] >= HORIZON_MIN_DAYS
    repeat_ok = merchants > 0 and with_repeat == merchants and per_day_median >= REPEAT_MEDIAN_MIN
    coverage_ok = out["class_channel_retained"] is True
    out["preconditions"] = {
        "horizon_ge_28_days": horizon_ok,
        "repeated_arrivals_present": repeat_ok,
        "class_channel_retained": coverage_ok,
        "ready_for_realism_grading": horizon_ok and repeat_ok and coverage_ok,
    }
    return out


# --------------------------------------------------------------------------------------------
# rails


def _summary_rail(report: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    """``summary.overall_status == "PASS"`` and ``fail_count == 0``; absent ⇒ fail."""
    if report is None:
        return {
            "pass": False,
            "reason": f"{what} missing or unreadable",
            "overall_status": None,
            "fail_count": None,
        }
    summary = report.get("summary") or {}
    status = summary.get("overall_status")
    fails = summary.get("fail_count")
    ok = status == "PASS" and isinstance(fails, int) and not isinstance(fails, bool) and fails == 0
    return {
        "pass": ok,
        "reason": "" if ok else f"{what}: overall_status={status!r}, fail_count={fails!r}",
        "overall_status": status,
        "fail_count": fails,
    }


def _flag_rail(flag: str | None) -> dict[str, Any]:
    """R-S8: ``_passed.flag`` exists for the manifest (and carries a readable digest)."""
    digest = parse_flag(flag) if flag is not None else None
    ok = digest is not None
    reason = ""
    if flag is None:
        reason = "S8 _passed.flag missing"
    elif digest is None:
        reason = "S8 _passed.flag carries no sha256_hex"
    return {"pass": ok, "reason": reason, "present": flag is not None, "sha256_hex": digest}


def _provenance_problems(name: str, frame: pl.DataFrame) -> list[str]:
    """Value-level provenance of the new S1/S3/S4 fields (schema already holds)."""
    problems: list[str] = []

    def bad(expr: pl.Expr, what: str) -> None:
        n = frame.filter(expr).height
        if n:
            problems.append(f"{name}: {n} row(s) {what}")

    if name == "s1_site_weights":
        bad(pl.col("weight_source").str.len_chars() == 0, "with an empty weight_source")
        bad(
            ~pl.col("p_weight").is_finite()
            | (pl.col("p_weight") < 0.0)
            | (pl.col("p_weight") > 1.0),
            "with p_weight outside [0, 1]",
        )
    elif name == "s3_day_effects":
        bad(
            ~pl.col("sigma_gamma").is_finite() | (pl.col("sigma_gamma") <= 0.0),
            "with sigma_gamma not finite and > 0",
        )
        bad(pl.col("rng_stream_id").str.len_chars() == 0, "with an empty rng_stream_id")
    elif name == "s4_group_weights":
        for col in ("p_group", "base_share"):
            bad(
                ~pl.col(col).is_finite() | (pl.col(col) < 0.0) | (pl.col(col) > 1.0),
                f"with {col} outside [0, 1]",
            )
    return problems


def _schema_rail(tables: Mapping[str, pl.DataFrame]) -> dict[str, Any]:
    """R-SCH: S1/S3/S4 tables match their contract columns-strict, and the new provenance
    fields (``weight_source``, ``sigma_gamma``/``rng_stream_id``, ``base_share``) are sane."""
    cat = load_catalogue()
    problems: dict[str, list[str]] = {}
    for dataset_id, frame in tables.items():
        errors = table_errors(cat.entry(dataset_id).schema_ref, frame)
        if not errors:
            errors = _provenance_problems(dataset_id, frame)
        if errors:
            problems[dataset_id] = errors[:5]
    return {
        "pass": not problems,
        "reason": "" if not problems else "; ".join(e[0] for e in problems.values()),
        "problems": problems,
    }


def rails(inputs: SeedInputs) -> dict[str, dict[str, Any]]:
    """R-S2, R-S3, R-S7, R-S8, R-SCH of one seed (each ``{pass, reason, …}``)."""
    return {
        "R-S2": _summary_rail(inputs.s2_run_report, "S2 run-report"),
        "R-S3": _summary_rail(inputs.s3_run_report, "S3 run-report"),
        "R-S7": _summary_rail(inputs.s7_audit_report, "S7 audit report"),
        "R-S8": _flag_rail(inputs.s8_flag),
        "R-SCH": _schema_rail(
            {
                "s1_site_weights": inputs.s1,
                "s3_day_effects": inputs.s3,
                "s4_group_weights": inputs.s4,
            }
        ),
    }


# --------------------------------------------------------------------------------------------
# verdict and scorecard


def seed_verdict(
    ready: bool, rail_rows: Mapping[str, Mapping[str, Any]], gate_rows: Sequence[Mapping[str, Any]]
) -> str:
    """§7 per-seed reducer: roster not ready ⇒ INVALID; every hard gate and rail at B+ ⇒
    PASS_BPLUS; at B ⇒ PASS_B; else FAIL_REALISM (rails are hard, veto at both bands)."""
    if not ready:
        return INVALID_FOR_GRADING
    rails_ok = all(r["pass"] for r in rail_rows.values())
    if rails_ok and all(g["pass_bplus"] for g in gate_rows):
        return PASS_BPLUS
    if rails_ok and all(g["pass_b"] for g in gate_rows):
        return PASS_B
    return FAIL_REALISM


def _policy_horizon_days(inputs: SeedInputs) -> int:
    for frame in (inputs.s4, inputs.s3):
        if frame.height and "utc_day" in frame.columns:
            return _span_days(_as_date(frame.select("utc_day"), "utc_day")["utc_day"])
    return 0


def _paths(inputs: SeedInputs) -> dict[str, str]:
    """Home-relative locations (§8 ``paths``), rendered from the dictionary."""
    cat = load_catalogue()
    plan, run = inputs.plan_tokens(), inputs.run_tokens()
    return {
        "s1_glob": cat.render("s1_site_weights", plan) + "*.parquet",
        "s3_glob": cat.render("s3_day_effects", plan) + "*.parquet",
        "s4_glob": cat.render("s4_group_weights", plan) + "*.parquet",
        "roster_path": cat.render("s5_arrival_roster", run),
    }


def _floor(inputs: SeedInputs) -> dict[str, Any]:
    if inputs.site_timezones is None:
        return {"available": False, "reason": "site_timezones missing"}
    return {"available": True, "reason": "", **floor_diagnostic(inputs.s4, inputs.site_timezones)}


def score_seed(inputs: SeedInputs) -> dict[str, Any]:
    """The per-seed scorecard (§8 shape plus our additions), JSON-ready.

    Keys: ``generated_utc, phase, segment, seed, run_id, baseline_authority, paths,
    thresholds{B, BPLUS}, metrics{s1, s3, s4}, hard_gates{B, BPLUS}, gate_ids, gates[],
    rails{R-*}, advisory[], s3_diagnostics, floor_diagnostic, collapse_flags, roster_posture,
    gamma_clipped_share, policy_fingerprints, verdict``.
    """
    s1m = s1_metrics(inputs.s1)
    s3m = s3_metrics(inputs.s3, (inputs.s3_run_report or {}).get("rng_accounting"))
    s4m = s4_metrics(inputs.s4)
    roster = roster_metrics(inputs.roster, inputs.merchant_attributes)
    flat = {**s1m, **s3m, **s4m, "horizon_span_days": roster["horizon_span_days"]}
    gate_rows = gate_results(HARD_GATES, flat)
    by_id = {row["id"]: row for row in gate_rows}
    policy_days = _policy_horizon_days(inputs)
    horizon_gate = Gate(
        "X-S5-HOR",
        "horizon_span_days",
        HORIZON_MIN_DAYS,
        max(HORIZON_MIN_DAYS, policy_days),
        ">=",
        kind="report_only",
    )
    s3_diag = s3_diagnostics(inputs.s3, inputs.s3_run_report)
    advisory = gate_results(
        (
            *(g for g in S1_GATES if g.kind == "report_only"),
            SIGMA_ADVISORY,
            *S4_REPORT_ONLY_GATES,
            horizon_gate,
        ),
        {**flat, "sigma_distinct_values": s3_diag["sigma_distinct_values"]},
    )
    rail_rows = rails(inputs)
    collapse = {
        "s1_near_uniform": not (by_id["T-S1-01"]["pass_b"] and by_id["T-S1-02"]["pass_b"]),
        "s4_monolithic": not (by_id["T-S4-01"]["pass_b"] and by_id["T-S4-04"]["pass_b"]),
    }
    ready = roster["preconditions"]["ready_for_realism_grading"]
    lineage = {
        "seed": inputs.seed,
        "manifest_fingerprint": inputs.manifest_fingerprint,
        "parameter_hash": inputs.parameter_hash,
        "run_id": inputs.run_id,
    }
    card = {
        "generated_utc": inputs.generated_utc,
        "phase": inputs.phase,
        "segment": SEGMENT,
        "seed": inputs.seed,
        "run_id": inputs.run_id,
        "baseline_authority": {
            "runs_root": str(Path(load_catalogue().render("run_receipt", lineage)).parent),
            **lineage,
            "lineage_tokens": {k: str(v) for k, v in lineage.items()},
        },
        "paths": _paths(inputs),
        "thresholds": thresholds(),
        "metrics": {
            "s1": s1m,
            "s3": s3m,
            "s4": {**s4m, "mass_epsilon": EPSILON},
        },
        "hard_gates": {
            band: {key: by_id[gid][flag] for key, gid in GATE_KEYS}
            for band, flag in (("B", "pass_b"), ("BPLUS", "pass_bplus"))
        },
        "gate_ids": dict(GATE_KEYS),
        "gates": gate_rows,
        "rails": rail_rows,
        "advisory": advisory,
        "policy_horizon_days": policy_days,
        "s3_diagnostics": s3_diag,
        "floor_diagnostic": _floor(inputs),
        "collapse_flags": collapse,
        "roster_posture": roster,
        "gamma_clipped_share": s3m["gamma_clipped_share"],
        "policy_fingerprints": dict(sorted(inputs.policy_digests.items())),
        "verdict": seed_verdict(ready, rail_rows, gate_rows),
    }
    return json_ready(card)


# --------------------------------------------------------------------------------------------
# loader (read-only)


def _err(code: str, message: str, dataset: str, path: Path) -> SegmentError:
    return SegmentError(f"{ERROR_PREFIX}-{code}", message, dataset=dataset, key=str(path))


def _read_json(path: Path) -> Any | None:
    """Parsed JSON, or ``None`` when the file is absent or unreadable (rails then fail)."""
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def _read_parquet(folder: Path, dataset: str, *, required: bool) -> pl.DataFrame | None:
    """All ``*.parquet`` of a partition folder (name-sorted), without schema coercion: R-SCH
    judges the schema, so a drifted table is reported rather than silently cast."""
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not files:
        if required:
            raise _err("001", "required certification input is missing", dataset, folder)
        return None
    return pl.concat([pl.read_parquet(f) for f in files], how="vertical")


_ROSTER_READ = ("merchant_id", "utc_day", "is_virtual", "channel", "mcc")
"""The roster columns certification reads (the metrics never look at ``utc_timestamp``)."""


def _read_roster(path: Path) -> pl.DataFrame | None:
    """The roster's :data:`_ROSTER_READ` columns, parsed from the file directly: neither the
    file's bytes nor its timestamps are held (at 40M arrivals they would be ~10 GB)."""
    if not path.is_file():
        return None
    with path.open("rb") as fh:
        head = fh.read(1 << 16)
    if not head.strip() and path.stat().st_size <= len(head):
        return pl.DataFrame(schema={k: _ROSTER_SCHEMA[k] for k in _ROSTER_READ})
    try:
        return pl.scan_ndjson(path, schema=_ROSTER_SCHEMA).select(_ROSTER_READ).collect()
    except (pl.exceptions.PolarsError, ValueError) as exc:
        raise _err(
            "020", f"roster is not readable NDJSON: {exc}", "s5_arrival_roster", path
        ) from exc


def load_seed_inputs(
    home: StorageHome,
    *,
    seed: int,
    manifest_fingerprint: str,
    parameter_hash: str,
    run_id: str,
) -> SeedInputs:
    """Load one seed's published inputs (§1) for :func:`score_seed`; never writes.

    The run receipt pins the lineage: it must exist and name the same seed, fingerprint and
    parameter hash (``2B-CERT-001`` / ``-002``). ``s1_site_weights``, ``s3_day_effects`` and
    ``s4_group_weights`` are required (``2B-CERT-001``). Everything else is optional and
    degrades honestly (a missing report fails its rail; see :class:`SeedInputs`).
    """
    plan = {"seed": str(seed), "manifest_fingerprint": manifest_fingerprint}
    run = {**plan, "parameter_hash": parameter_hash, "run_id": run_id}
    receipt_path = home.path("run_receipt", {"run_id": run_id})
    receipt = _read_json(receipt_path)
    if not isinstance(receipt, Mapping):
        raise _err("001", "run receipt missing or unreadable", "run_receipt", receipt_path)
    pinned = {
        "seed": seed,
        "manifest_fingerprint": manifest_fingerprint,
        "parameter_hash": parameter_hash,
        "run_id": run_id,
    }
    drift = {k: receipt.get(k) for k, v in pinned.items() if receipt.get(k) != v}
    if drift:
        raise _err("002", f"run receipt lineage differs: {drift}", "run_receipt", receipt_path)
    tables = {key: _read_parquet(home.path(ds, plan), ds, required=True) for key, ds in _TABLES}
    sealed = _read_json(home.path("sealed_inputs_2B", plan))
    digests = {
        str(row["asset_id"]): str(row["sha256_hex"])
        for row in (sealed if isinstance(sealed, list) else [])
        if isinstance(row, Mapping) and row.get("asset_id") in POLICY_IDS
    }
    flag_path = home.path(
        "validation_passed_flag_2B", {"manifest_fingerprint": manifest_fingerprint}
    )
    try:
        flag = flag_path.read_text(encoding="ascii") if flag_path.is_file() else None
    except (OSError, UnicodeDecodeError):
        flag = ""  # present but unreadable: R-S8 reports "no sha256_hex"

    def report(dataset_id: str) -> Mapping[str, Any] | None:
        doc = _read_json(home.path(dataset_id, plan))
        return doc if isinstance(doc, Mapping) else None

    return SeedInputs(
        seed=seed,
        manifest_fingerprint=manifest_fingerprint,
        parameter_hash=parameter_hash,
        run_id=run_id,
        s1=tables["s1"],  # type: ignore[arg-type]
        s3=tables["s3"],  # type: ignore[arg-type]
        s4=tables["s4"],  # type: ignore[arg-type]
        roster=_read_roster(home.path("s5_arrival_roster", run)),
        merchant_attributes=_read_parquet(
            home.path("merchant_attributes", plan), "merchant_attributes", required=False
        ),
        site_timezones=_read_parquet(
            home.path("site_timezones", plan), "site_timezones", required=False
        ),
        s2_run_report=report("s2_run_report"),
        s3_run_report=report("s3_run_report"),
        s7_audit_report=report("s7_audit_report"),
        s8_flag=flag,
        policy_digests=digests,
        generated_utc=str(receipt["created_utc"]) if receipt.get("created_utc") else None,
    )
