"""Run identity of one seed: manifest_fingerprint, parameter_hash, run_id, created_utc.

Derived, never stored as configuration: the fingerprint from the world knobs, the seed panel
and the gazetteer digest; parameter_hash from the five policy digests and the roster settings;
run_id deterministically from both (spec README §2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from segment2b.identity import run_id as derive_run_id
from segment2b.policy.store import PolicyPack, parameter_hash
from segment2b.world.config import WorldConfig
from segment2b.world.gazetteer import gazetteer_digest
from segment2b.world.outputs import manifest_fingerprint, run_created_utc, world_created_utc


@dataclass(frozen=True)
class RunPlan:
    """The tokens of one seed's run."""

    seed: int
    manifest_fingerprint: str
    parameter_hash: str
    run_id: str
    created_utc: str
    world_created_utc: str

    def plan_tokens(self) -> dict[str, str]:
        """Tokens of ``[seed, manifest_fingerprint]`` datasets."""
        return {"seed": str(self.seed), "manifest_fingerprint": self.manifest_fingerprint}

    def tokens(self) -> dict[str, str]:
        """All four run tokens."""
        return {**self.plan_tokens(), "parameter_hash": self.parameter_hash, "run_id": self.run_id}


def world_fingerprint(config: WorldConfig, panel: Sequence[int]) -> str:
    return manifest_fingerprint(config.knobs(), panel, gazetteer_digest())


def plan_run(config: WorldConfig, panel: Sequence[int], pack: PolicyPack, seed: int) -> RunPlan:
    mf = world_fingerprint(config, panel)
    ph = parameter_hash(pack.digests(), config.roster_settings())
    return RunPlan(
        seed=seed,
        manifest_fingerprint=mf,
        parameter_hash=ph,
        run_id=derive_run_id(mf, seed, ph),
        created_utc=run_created_utc(config.start_day),
        world_created_utc=world_created_utc(config.start_day),
    )
