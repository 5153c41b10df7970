"""Cross-seed certification (``certification.md`` §6, §7 aggregate table, §8 aggregate shape).

Pure functions over per-seed scorecards (:func:`segment2b.certification.scorecard.score_seed`):
the CV of the three primary medians (population std / |mean|, README decision 12), collapse
flags, the preconditions of README decision 11 that span seeds (every required seed scored, the
sealed policy digests equal the pinned remediation set) and the aggregate verdict, first
matching row wins:

1. a required seed missing, a seed INVALID_FOR_GRADING, or a fingerprint mismatch ⇒
   INVALID_FOR_GRADING
2. a rail fails on any seed ⇒ FAIL_REALISM
3. a seed FAIL_REALISM or a collapse flag ⇒ FAIL_REALISM
4. a CV > 0.25 ⇒ FAIL_REALISM
5. every seed PASS_BPLUS and every CV ≤ 0.15 ⇒ PASS_BPLUS
6. otherwise PASS_B
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from segment2b.certification.scorecard import (
    FAIL_REALISM,
    INVALID_FOR_GRADING,
    PASS_B,
    PASS_BPLUS,
    PHASE,
    SEGMENT,
    artifact_name,
    json_ready,
    thresholds,
)
from segment2b.partitions import REQUIRED_SEEDS

__all__ = [
    "CV_BPLUS_MAX",
    "CV_B_MAX",
    "CV_SERIES",
    "FREEZE_STATUSES",
    "certify",
    "coefficient_of_variation",
    "freeze_status",
    "policy_fingerprint_check",
    "run_set_suffix",
    "seed_metrics_document",
    "stability",
]

CV_B_MAX = 0.25
CV_BPLUS_MAX = 0.15
CV_ROUND = 8
MEAN_ZERO = 1e-12

CV_SERIES: tuple[tuple[str, str, str], ...] = (
    ("s1_residual", "s1", "residual_abs_uniform_median"),
    ("s4_max_p_group", "s4", "max_p_group_median"),
    ("s4_entropy", "s4", "entropy_p50"),
)
"""§6 primary medians: (cv_metrics key, metrics block, metric)."""

FREEZE_STATUSES = {
    PASS_BPLUS: "FROZEN_CERTIFIED_BPLUS",
    PASS_B: "FROZEN_CERTIFIED_B",
}
FROZEN_BELOW_B = "FROZEN_BEST_EFFORT_BELOW_B"


def freeze_status(status: str) -> str:
    """Freeze status after certification (§7): anything below PASS_B is best-effort."""
    return FREEZE_STATUSES.get(status, FROZEN_BELOW_B)


def coefficient_of_variation(values: Sequence[float | None]) -> float:
    """CV = pstdev(x) / |mean(x)| with population std (ddof = 0), §6 / decision 12.

    Empty or fewer than two values → 0. ``|mean| ≤ 1e-12`` → 0 if every ``|x| ≤ 1e-12`` else
    +inf. A missing (``None``/NaN) or infinite value → +inf (cannot be shown stable).
    """
    if len(values) < 2:
        return 0.0
    x = [math.nan if v is None else float(v) for v in values]
    if any(not math.isfinite(v) for v in x):
        return math.inf
    mean = statistics.fmean(x)
    if abs(mean) <= MEAN_ZERO:
        return 0.0 if all(abs(v) <= MEAN_ZERO for v in x) else math.inf
    return statistics.pstdev(x) / abs(mean)


def stability(cards: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """§6 stability block over the given (required, present) seeds, in the given order.

    ``cv_metrics`` rounded to 8 dp (§8); checks use the unrounded values.
    """
    raw: dict[str, float] = {}
    series: dict[str, list[Any]] = {}
    for key, block, metric in CV_SERIES:
        values = [card["metrics"][block].get(metric) for card in cards]
        series[key] = values
        raw[key] = coefficient_of_variation(values)
    return {
        "cv_metrics": {k: round(v, CV_ROUND) if math.isfinite(v) else v for k, v in raw.items()},
        "cv_unrounded": raw,
        "series": series,
        "thresholds": {"B": CV_B_MAX, "BPLUS": CV_BPLUS_MAX},
        "checks": {
            "B": all(v <= CV_B_MAX for v in raw.values()),
            "BPLUS": all(v <= CV_BPLUS_MAX for v in raw.values()),
        },
    }


def policy_fingerprint_check(
    cards: Sequence[Mapping[str, Any]], pinned: Mapping[str, str]
) -> dict[str, Any]:
    """P-FINGERPRINT: every pinned policy's digest sealed by S0 equals the pinned digest on
    every scored seed. An empty pinned set cannot certify anything and counts as a mismatch."""
    mismatches: list[dict[str, Any]] = []
    if not pinned:
        mismatches.append({"seed": None, "policy": None, "reason": "no pinned policy set"})
    for card in cards:
        sealed = card.get("policy_fingerprints") or {}
        for policy_id, digest in sorted(pinned.items()):
            got = sealed.get(policy_id)
            if got != digest:
                mismatches.append(
                    {"seed": card["seed"], "policy": policy_id, "pinned": digest, "sealed": got}
                )
    return {
        "pinned": dict(sorted(pinned.items())),
        "by_seed": {str(c["seed"]): dict(c.get("policy_fingerprints") or {}) for c in cards},
        "match": not mismatches,
        "mismatches": mismatches,
    }


def run_set_suffix(selected_seed_run_map: Mapping[int, str]) -> str:
    """§8 run-set suffix: ``<seed>-<first 8 chars of run_id>`` joined by ``_``, ascending seed."""
    parts = [f"{s}-{selected_seed_run_map[s][:8]}" for s in sorted(selected_seed_run_map)]
    return "_".join(parts) or "empty"


def _index(scorecards: Iterable[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]]:
    by_seed: dict[int, Mapping[str, Any]] = {}
    for card in scorecards:
        seed = int(card["seed"])
        if seed in by_seed:
            raise ValueError(f"seed {seed} was scored more than once")
        by_seed[seed] = card
    return by_seed


def _panel(
    by_seed: Mapping[int, Mapping[str, Any]], required_seeds: Sequence[int]
) -> tuple[list[int], list[int], list[int]]:
    required = list(dict.fromkeys(int(s) for s in required_seeds))
    present = [s for s in required if s in by_seed]
    missing = [s for s in required if s not in by_seed]
    extra = sorted(s for s in by_seed if s not in required)
    return present, missing, extra


def seed_metrics_document(
    scorecards: Iterable[Mapping[str, Any]], *, required_seeds: Sequence[int] = REQUIRED_SEEDS
) -> dict[str, Any]:
    """§8 seed-metrics JSON: ``required_seeds, selected_seed_run_map, missing_seeds,
    seed_results[]`` (required seeds in panel order, then any extra seeds ascending)."""
    by_seed = _index(scorecards)
    present, missing, extra = _panel(by_seed, required_seeds)
    order = [*present, *extra]
    return json_ready(
        {
            "required_seeds": list(required_seeds),
            "selected_seed_run_map": {s: by_seed[s]["run_id"] for s in sorted(order)},
            "missing_seeds": missing,
            "extra_seeds": extra,
            "seed_results": [by_seed[s] for s in order],
        }
    )


def _failed_at_b(card: Mapping[str, Any]) -> list[str]:
    gates = [g["id"] for g in card["gates"] if not g["pass_b"]]
    rails = [rid for rid, r in card["rails"].items() if not r["pass"]]
    return [*gates, *rails]


def _failed_preconditions(card: Mapping[str, Any]) -> list[str]:
    pre = card["roster_posture"]["preconditions"]
    out = []
    if not pre["horizon_ge_28_days"]:
        out.append("P-HORIZON")
    if not pre["repeated_arrivals_present"]:
        out.append("P-REPEAT")
    if not pre["class_channel_retained"]:
        out.append("P-COVERAGE")
    return out


def certify(
    scorecards: Iterable[Mapping[str, Any]],
    *,
    pinned_policy_digests: Mapping[str, str],
    required_seeds: Sequence[int] = REQUIRED_SEEDS,
    phase: str = PHASE,
) -> dict[str, Any]:
    """The aggregate certification record (§8 certification JSON), JSON-ready.

    Parameters
    ----------
    scorecards : iterable of dict
        Per-seed scorecards; a seed may appear once. Seeds outside ``required_seeds`` are
        reported (``extra_seeds``, ``seed_verdicts``) but do not enter the verdict.
    pinned_policy_digests : Mapping[str, str]
        The pinned remediation set (``policy_id → sha256``), e.g. ``alias_layout_policy_v1``,
        ``day_effect_policy_v1``, ``group_mix_regularizer_v1`` (§5 P-FINGERPRINT).
    required_seeds : sequence of int
        The panel (default ``REQUIRED_SEEDS``); a missing one ⇒ INVALID_FOR_GRADING.

    Returns
    -------
    dict
        ``generated_utc, phase, segment, status, run_set, required_seeds,
        selected_seed_run_map, missing_seeds, extra_seeds, thresholds{B, BPLUS},
        stability{cv_metrics, checks{B, BPLUS}, …}, seed_verdicts, collapse_flags,
        preconditions, failing_gates, bplus_shortfall, policy_fingerprints, diagnostics``.
    """
    by_seed = _index(scorecards)
    present, missing, extra = _panel(by_seed, required_seeds)
    cards = [by_seed[s] for s in present]
    stab = stability(cards)
    cv_raw = list(stab["cv_unrounded"].values())
    fingerprints = policy_fingerprint_check(cards, pinned_policy_digests)
    verdicts = {s: by_seed[s]["verdict"] for s in sorted(by_seed)}
    rail_fail = any(not r["pass"] for c in cards for r in c["rails"].values())
    collapse = any(any(c["collapse_flags"].values()) for c in cards)

    if (
        missing
        or not fingerprints["match"]
        or any(c["verdict"] == INVALID_FOR_GRADING for c in cards)
    ):
        status = INVALID_FOR_GRADING
    elif (
        rail_fail  # row 2: structural failure overrides realism
        or collapse  # row 3
        or any(c["verdict"] == FAIL_REALISM for c in cards)  # row 3
        or not stab["checks"]["B"]  # row 4
    ):
        status = FAIL_REALISM
    elif all(c["verdict"] == PASS_BPLUS for c in cards) and stab["checks"]["BPLUS"]:
        status = PASS_BPLUS
    else:
        status = PASS_B

    failing: set[str] = set()
    shortfall: set[str] = set()
    if missing:
        failing.add("required_seed_coverage")
    if not fingerprints["match"]:
        failing.add("P-FINGERPRINT")
    if any(v > CV_B_MAX for v in cv_raw):
        failing.add("stability_cv_b")
    if any(v > CV_BPLUS_MAX for v in cv_raw) and status != PASS_BPLUS:
        failing.add("stability_cv_bplus")
    for seed in present:
        card = by_seed[seed]
        failing.update(_failed_preconditions(card))
        failed = _failed_at_b(card)
        if failed:
            failing.add(f"seed_{seed}_hard_gates")
            failing.update(failed)
        shortfall.update(g["id"] for g in card["gates"] if g["pass_b"] and not g["pass_bplus"])
    if "stability_cv_bplus" in failing:
        shortfall.add("stability_cv_bplus")

    run_map = {s: by_seed[s]["run_id"] for s in sorted(by_seed)}
    run_set = run_set_suffix(run_map)
    generated = sorted(str(c["generated_utc"]) for c in cards if c.get("generated_utc"))
    return json_ready(
        {
            "generated_utc": generated[-1] if generated else None,
            "phase": phase,
            "segment": SEGMENT,
            "status": status,
            "run_set": run_set,
            "required_seeds": [int(s) for s in dict.fromkeys(required_seeds)],
            "selected_seed_run_map": run_map,
            "missing_seeds": missing,
            "extra_seeds": extra,
            "thresholds": thresholds(),
            "stability": stab,
            "seed_verdicts": verdicts,
            "collapse_flags": {s: by_seed[s]["collapse_flags"] for s in present},
            "preconditions": {
                "P-SEEDS": not missing,
                "P-FINGERPRINT": fingerprints["match"],
                "by_seed": {s: by_seed[s]["roster_posture"]["preconditions"] for s in present},
            },
            "failing_gates": sorted(failing),
            "bplus_shortfall": sorted(shortfall) if status != PASS_BPLUS else [],
            "policy_fingerprints": fingerprints,
            "diagnostics": {
                "seed_metrics_json": artifact_name("seed_metrics", run_set, "json", phase=phase)
            },
        }
    )
