"""The one place ``Definitions`` are built: assets, checks, jobs, resources, listed explicitly."""

from __future__ import annotations

import dagster as dg

from segment2b.assets.gate import s0_gate
from segment2b.assets.plan import (
    s1_site_weights,
    s2_alias_tables,
    s3_day_effects,
    s4_group_weights,
)
from segment2b.assets.policies import POLICY_ASSETS
from segment2b.assets.world import s5_arrival_roster, upstream_world, validation_bundle_1B
from segment2b.jobs import ALL_JOBS
from segment2b.resources import SegmentStore, WorldSettings

defs = dg.Definitions(
    assets=[*POLICY_ASSETS, upstream_world, validation_bundle_1B, s5_arrival_roster, s0_gate,
            s1_site_weights, s2_alias_tables, s3_day_effects, s4_group_weights],
    jobs=ALL_JOBS,
    resources={"store": SegmentStore(), "world": WorldSettings()},
)
