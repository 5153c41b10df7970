"""The one place ``Definitions`` are built: assets, checks, jobs, schedule, sensor, resources."""

import dagster as dg

from segment2b.assets.audit import bundle_hash_law, s7_audit_report, s8_validation_bundle
from segment2b.assets.certification import certification_2B
from segment2b.assets.gate import s0_gate
from segment2b.assets.plan import (
    s1_site_weights,
    s2_alias_tables,
    s3_day_effects,
    s4_group_weights,
)
from segment2b.assets.policies import POLICY_ASSETS
from segment2b.assets.routing import s5_s6_router
from segment2b.assets.world import s5_arrival_roster, upstream_world, validation_bundle_1B
from segment2b.jobs import ALL_JOBS
from segment2b.resources import SegmentStore, WorldSettings
from segment2b.scheduling import certification_cycle, nightly_certification
from segment2b.startup import settle_heap

defs = dg.Definitions(
    assets=[
        *POLICY_ASSETS,
        upstream_world,
        validation_bundle_1B,
        s5_arrival_roster,
        s0_gate,
        s1_site_weights,
        s2_alias_tables,
        s3_day_effects,
        s4_group_weights,
        s5_s6_router,
        s7_audit_report,
        s8_validation_bundle,
        certification_2B,
    ],
    asset_checks=[bundle_hash_law],
    jobs=ALL_JOBS,
    schedules=[nightly_certification],
    sensors=[certification_cycle],
    resources={"store": SegmentStore(), "world": WorldSettings()},
    # In-process: every step here is a numpy/polars call of a few seconds at most, so a process
    # start per step (the multiprocess default, ~1 s each) would dominate. Parallelism comes from
    # running seeds side by side (one run per seed), not from steps within a seed.
    executor=dg.in_process_executor,
)

# Whatever process loads this code location (``segment2b``, ``dagster asset materialize``, the
# UI's code server) keeps the asset graph and its imports for its whole life: freeze them out of
# the garbage collector's scans (see segment2b.startup).
settle_heap()
