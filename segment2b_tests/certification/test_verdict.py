"""Cross-seed certification: CV, collapse, fingerprints and the §7 aggregate decision table."""

from __future__ import annotations

import copy
import math
from functools import cache
from typing import Any

import pytest

from segment2b.certification.scorecard import (
    FAIL_REALISM,
    INVALID_FOR_GRADING,
    PASS_B,
    PASS_BPLUS,
    score_seed,
)
from segment2b.certification.verdict import (
    certify,
    coefficient_of_variation,
    freeze_status,
    run_set_suffix,
    seed_metrics_document,
)
from segment2b_tests.certification.test_scorecard import (
    PINNED,
    good_inputs,
    run_id_of,
    s4_frame,
    smoke_roster,
)

SEEDS = (42, 7, 101, 202)


@cache
def _card(seed: int, variant: str = "good") -> dict[str, Any]:
    overrides: dict[str, object] = {
        "good": {},
        "b_only": {"s4": s4_frame((0.8, 0.2))},
        "fail": {"s4": s4_frame((0.97, 0.03))},
        "smoke": {"roster": smoke_roster()},
        "no_s7": {"s7_audit_report": None},
    }[variant]
    return score_seed(good_inputs(seed, **overrides))


def cards(**variants: str) -> list[dict[str, Any]]:
    """Scorecards of the panel; ``variants`` maps ``s<seed>`` to a variant name."""
    return [copy.deepcopy(_card(s, variants.get(f"s{s}", "good"))) for s in SEEDS]


def run(scorecards: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    kw.setdefault("pinned_policy_digests", PINNED)
    kw.setdefault("required_seeds", SEEDS)
    return certify(scorecards, **kw)


def set_metric(scorecards: list[dict[str, Any]], block: str, key: str, values: list[float]) -> None:
    for card, value in zip(scorecards, values, strict=True):
        card["metrics"][block][key] = value


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], 0.0),
        ([0.5], 0.0),
        ([0.0, 0.0, 1e-13], 0.0),
        ([1e-13, -1e-13, 0.5, -0.5], math.inf),
        ([1.0, 2.0, 3.0], math.sqrt(2.0 / 3.0) / 2.0),
        ([2.0, 2.0, 2.0, 2.0], 0.0),
        ([1.0, None], math.inf),
        ([-1.0, -3.0], 0.5),
    ],
)
def test_coefficient_of_variation(values: list[float], expected: float) -> None:
    assert coefficient_of_variation(values) == pytest.approx(expected, rel=1e-12)


def test_all_seeds_bplus() -> None:
    cert = run(cards())
    assert cert["status"] == PASS_BPLUS
    assert cert["failing_gates"] == [] and cert["bplus_shortfall"] == []
    assert cert["missing_seeds"] == []
    assert cert["seed_verdicts"] == {str(s): PASS_BPLUS for s in SEEDS}
    assert cert["stability"]["checks"] == {"B": True, "BPLUS": True}
    assert set(cert["stability"]["cv_metrics"]) == {"s1_residual", "s4_max_p_group", "s4_entropy"}
    assert cert["stability"]["cv_metrics"]["s1_residual"] == 0.0  # same S1 on every seed
    assert cert["policy_fingerprints"]["match"] is True
    assert cert["run_set"] == "_".join(f"{s}-{run_id_of(s)[:8]}" for s in sorted(SEEDS))
    assert cert["diagnostics"]["seed_metrics_json"] == (
        f"segment2b_certification_seed_metrics_{cert['run_set']}.json"
    )
    assert cert["generated_utc"] == "2026-01-01T00:00:00.000000Z"
    assert freeze_status(cert["status"]) == "FROZEN_CERTIFIED_BPLUS"


def test_missing_required_seed_is_invalid() -> None:
    cert = run(cards()[:3])
    assert cert["status"] == INVALID_FOR_GRADING
    assert cert["missing_seeds"] == [202]
    assert "required_seed_coverage" in cert["failing_gates"]
    assert cert["preconditions"]["P-SEEDS"] is False


def test_smoke_roster_on_one_seed_is_invalid() -> None:
    cert = run(cards(s101="smoke"))
    assert cert["status"] == INVALID_FOR_GRADING
    assert cert["seed_verdicts"]["101"] == INVALID_FOR_GRADING
    assert {"P-HORIZON", "P-REPEAT", "P-COVERAGE"} <= set(cert["failing_gates"])
    assert freeze_status(cert["status"]) == "FROZEN_BEST_EFFORT_BELOW_B"


def test_invalid_wins_over_rail_failure() -> None:
    cert = run(cards(s7="smoke", s42="no_s7"))
    assert cert["status"] == INVALID_FOR_GRADING  # row 1 before row 2
    assert "R-S7" in cert["failing_gates"]


@pytest.mark.parametrize(
    "pinned",
    [
        {**PINNED, "group_mix_regularizer_v1": "9" * 64},
        {**PINNED, "route_rng_policy_v1": "8" * 64},  # pinned but never sealed
        {},
    ],
)
def test_fingerprint_mismatch_is_invalid(pinned: dict[str, str]) -> None:
    cert = run(cards(), pinned_policy_digests=pinned)
    assert cert["status"] == INVALID_FOR_GRADING
    assert cert["policy_fingerprints"]["match"] is False
    assert "P-FINGERPRINT" in cert["failing_gates"]


def test_rail_failure_is_fail_realism() -> None:
    cert = run(cards(s202="no_s7"))
    assert cert["status"] == FAIL_REALISM
    assert {"R-S7", "seed_202_hard_gates"} <= set(cert["failing_gates"])


def test_seed_failing_a_gate_fails_certification() -> None:
    cert = run(cards(s7="fail"))
    assert cert["status"] == FAIL_REALISM
    assert cert["seed_verdicts"]["7"] == FAIL_REALISM
    assert {"seed_7_hard_gates", "T-S4-01", "T-S4-02"} <= set(cert["failing_gates"])
    assert cert["collapse_flags"]["7"]["s4_monolithic"] is True


def test_collapse_flag_alone_fails() -> None:
    scorecards = cards()
    scorecards[1]["collapse_flags"]["s1_near_uniform"] = True
    assert run(scorecards)["status"] == FAIL_REALISM


def test_one_seed_at_b_gives_pass_b() -> None:
    cert = run(cards(s101="b_only"))
    assert cert["status"] == PASS_B
    assert cert["failing_gates"] == []
    assert cert["bplus_shortfall"] == ["T-S4-01"]
    assert freeze_status(cert["status"]) == "FROZEN_CERTIFIED_B"


def test_cv_between_bands_gives_pass_b() -> None:
    scorecards = cards()
    set_metric(scorecards, "s4", "entropy_p50", [0.8, 0.8, 0.8, 0.5])  # CV ≈ 0.179
    cert = run(scorecards)
    assert cert["stability"]["cv_metrics"]["s4_entropy"] == round(math.sqrt(0.016875) / 0.725, 8)
    assert cert["stability"]["checks"] == {"B": True, "BPLUS": False}
    assert cert["status"] == PASS_B
    assert cert["failing_gates"] == ["stability_cv_bplus"]


def test_cv_above_b_fails() -> None:
    scorecards = cards()
    set_metric(scorecards, "s1", "residual_abs_uniform_median", [1.0, 1.0, 1.0, 0.46])
    cert = run(scorecards)
    assert cert["status"] == FAIL_REALISM
    assert {"stability_cv_b", "stability_cv_bplus"} <= set(cert["failing_gates"])


def test_undefined_metric_makes_cv_infinite() -> None:
    scorecards = cards()
    scorecards[0]["metrics"]["s4"]["max_p_group_median"] = None
    cert = run(scorecards)
    assert cert["stability"]["cv_metrics"]["s4_max_p_group"] == "+inf"
    assert cert["status"] == FAIL_REALISM


def test_extra_seed_reported_not_graded() -> None:
    extra = copy.deepcopy(_card(5, "fail"))
    cert = run([*cards(), extra])
    assert cert["status"] == PASS_BPLUS
    assert cert["extra_seeds"] == [5]
    assert cert["seed_verdicts"]["5"] == FAIL_REALISM


def test_duplicate_seed_rejected() -> None:
    with pytest.raises(ValueError, match="more than once"):
        run([*cards(), copy.deepcopy(_card(42))])


def test_seed_metrics_document_and_suffix() -> None:
    doc = seed_metrics_document(cards()[:2], required_seeds=SEEDS)
    assert doc["missing_seeds"] == [101, 202]
    assert [c["seed"] for c in doc["seed_results"]] == [42, 7]
    assert doc["selected_seed_run_map"] == {"7": run_id_of(7), "42": run_id_of(42)}
    assert run_set_suffix({42: "abcdef0123", 7: "0123456789"}) == "7-01234567_42-abcdef01"
    assert run_set_suffix({}) == "empty"


def test_certify_is_deterministic() -> None:
    assert run(cards()) == run(list(reversed(cards())))
