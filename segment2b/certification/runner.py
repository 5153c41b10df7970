"""Certify the seed panel of one storage home: prune, load, score, publish pack, lock.

Read-only over state outputs (it writes only under ``reports/layer1/2B/certification/``).
Used by the ``certification_2B`` asset, ``segment2b run`` and the replica reproduction.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segment2b.certification.evidence import (
    CertificationRun,
    LockRef,
    PruneReport,
    prune,
    read_pointer,
    runtime_report,
    write_certification_pack,
    write_lock,
    write_runtime_evidence,
)
from segment2b.certification.scorecard import SeedInputs, load_seed_inputs
from segment2b.errors import SegmentError
from segment2b.policy.store import DEFAULT_PACK, PolicyPack, load_pack
from segment2b.run_plan import RunPlan, plan_run
from segment2b.storage.home import StorageHome
from segment2b.world.config import WorldConfig

# The remediation set whose digests a certified candidate pins (certification.md §5).
PINNED_POLICIES: tuple[str, ...] = (
    "alias_layout_policy_v1",
    "day_effect_policy_v1",
    "group_mix_regularizer_v1",
)
Windows = Mapping[str, tuple[float | None, float | None]]


PINNED_PACK_ENV = "SEGMENT2B_PINNED_POLICIES"


def pinned_digests() -> dict[str, str]:
    """Digests of the pinned remediation set: the repository's ``policies/`` pack (or
    ``$SEGMENT2B_PINNED_POLICIES``). A run sealed with any other bytes — the baseline pack, an
    experiment — is graded INVALID_FOR_GRADING by P-FINGERPRINT (README decision 11), never
    passed on a policy set nobody pinned."""
    folder = Path(os.environ.get(PINNED_PACK_ENV) or DEFAULT_PACK)
    digests = load_pack(folder).digests()
    return {k: digests[k] for k in PINNED_POLICIES}


@dataclass(frozen=True)
class PanelCertification:
    run: CertificationRun
    lock: LockRef
    pruned: PruneReport
    missing: tuple[int, ...]
    plans: Mapping[int, RunPlan]


def load_panel(
    home: StorageHome, config: WorldConfig, panel: Sequence[int], pack: PolicyPack
) -> tuple[list[SeedInputs], dict[int, RunPlan], list[int]]:
    """Inputs of every panel seed that has published S1/S3/S4; the others are reported missing
    (the verdict then is INVALID_FOR_GRADING, never a silent pass)."""
    inputs: list[SeedInputs] = []
    plans: dict[int, RunPlan] = {}
    missing: list[int] = []
    for seed in panel:
        plan = plan_run(config, panel, pack, seed)
        plans[seed] = plan
        try:
            inputs.append(
                load_seed_inputs(
                    home,
                    seed=seed,
                    manifest_fingerprint=plan.manifest_fingerprint,
                    parameter_hash=plan.parameter_hash,
                    run_id=plan.run_id,
                )
            )
        except SegmentError as err:
            if not err.code.endswith("-001"):
                raise
            missing.append(seed)
    return inputs, plans, missing


def certify_panel(
    home: StorageHome,
    config: WorldConfig,
    panel: Sequence[int],
    pack: PolicyPack,
    *,
    windows: Mapping[int, Windows] | None = None,
    data_versions: Mapping[str, Any] | None = None,
    lane: str = "certification",
) -> PanelCertification:
    """Prune superseded evidence, then score, certify, publish the pack and lock it.

    ``windows``: per seed, per state (``S0``…``S8``) wall-clock (start, end) on one clock; they
    go to the runtime sidecar, never into the (content-addressed) pack.
    """
    plans = {seed: plan_run(config, panel, pack, seed) for seed in panel}
    pruned = prune(home, dry_run=False, current_run_ids=[p.run_id for p in plans.values()])
    inputs, plans, missing = load_panel(home, config, panel, pack)
    run = write_certification_pack(
        home,
        inputs,
        pinned_policy_digests=pinned_digests(),
        required_seeds=panel,
        lane=lane,
    )
    if windows:
        runtime = {
            seed: runtime_report(w, run={**plans[seed].tokens(), "seed": seed})
            for seed, w in windows.items()
            if seed in plans
        }
        write_runtime_evidence(home, run.pack.run_set, runtime, lane=lane)
    lock = write_lock(home, run, data_versions=dict(data_versions or {}))
    return PanelCertification(run, lock, pruned, tuple(missing), plans)


def read_current_pack(home: StorageHome) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    """(certification, scorecards, pack rel path) of the pack the ``current`` pointer names."""
    pointer = read_pointer(home, "current")
    if pointer is None:
        raise SegmentError("2B-CERT-001", "no certification pack yet", dataset="certification_2B")
    folder = home.root / pointer["pack"]
    cert = json.loads(next(folder.glob("segment2b_*_certification_*.json")).read_text())
    cards = [json.loads(p.read_text()) for p in sorted(folder.glob("seeds/*/*_scorecard_*.json"))]
    return cert, cards, str(pointer["pack"])


def panel_table(
    certification: Mapping[str, Any], scorecards: Sequence[Mapping[str, Any]], pack_rel: str
) -> str:
    """Plain-text seed × gate table (value, B, B+) and the verdict, for terminals and logs."""
    cards = sorted(scorecards, key=lambda c: int(c["seed"]))
    seeds = [int(c["seed"]) for c in cards]
    head = f"{'gate':<10}" + "".join(f"{'seed ' + str(s):>26}" for s in seeds)
    lines = [head, "-" * len(head)]
    if cards:
        for i, gate in enumerate(cards[0]["gates"]):
            cells = []
            for card in cards:
                row = card["gates"][i]
                value = row["value"]
                shown = "n/a" if value is None else f"{value:.4f}"
                b = "B" if row["pass_b"] else "-"
                bp = "B+" if row["pass_bplus"] else "--"
                cells.append(f"{shown:>14} {b:>3} {bp:>3}    ")
            lines.append(f"{gate['id']:<10}" + "".join(f"{c:>26}" for c in cells))
        lines.append(f"{'verdict':<10}" + "".join(f"{c['verdict']:>26}" for c in cards))
    cert = certification
    lines += [
        "",
        f"aggregate verdict: {cert['status']}"
        + (f"  (missing seeds: {cert['missing_seeds']})" if cert["missing_seeds"] else ""),
        f"evidence pack: {pack_rel}",
    ]
    return "\n".join(lines)
