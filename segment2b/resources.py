"""Typed Dagster resources: where outputs live, which policy pack is active, which world."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from segment2b.partitions import REQUIRED_SEEDS
from segment2b.policy.store import PolicyPack, default_pack, load_pack
from segment2b.storage.home import StorageHome, default_home
from segment2b.world.config import WorldConfig


class SegmentStore(dg.ConfigurableResource):
    """The storage home and the active policy pack.

    Empty strings mean "use the environment": ``$SEGMENT2B_HOME`` (default ``.segment2b/``) and
    ``$SEGMENT2B_POLICIES`` (default ``policies/``). They are resolved when a run starts, never
    at import, so the asset graph is identical everywhere.
    """

    home: str = ""
    policies: str = ""

    def storage(self) -> StorageHome:
        root = Path(self.home).resolve() if self.home else default_home()
        return StorageHome(root=root, policy_root=self.policy_root())

    def policy_root(self) -> Path:
        return Path(self.policies).resolve() if self.policies else default_pack()

    def pack(self) -> PolicyPack:
        return load_pack(self.policy_root())


class WorldSettings(dg.ConfigurableResource):
    """Knobs of the embedded upstream world (upstream-world.md §5.1)."""

    profile: str = "realistic"
    n_merchants: int = 1238
    roster_arrivals: int = 400_000
    roster_mode: str = ""
    virtual_share: float = 0.10
    single_site_share: float = 0.0

    def config(self) -> WorldConfig:
        return WorldConfig.for_profile(
            self.profile,
            n_merchants=self.n_merchants,
            roster_arrivals=self.roster_arrivals,
            roster_mode=self.roster_mode or None,
            virtual_share=self.virtual_share,
            single_site_share=self.single_site_share,
        )

    def panel(self) -> tuple[int, ...]:
        return REQUIRED_SEEDS
