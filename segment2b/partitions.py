"""The seed partitions, defined once and imported by every asset, job and schedule."""

from __future__ import annotations

import dagster as dg

# Required certification panel (spec README §1). Add seeds here; every partitioned asset,
# job and the certification schedule pick them up.
REQUIRED_SEEDS: tuple[int, ...] = (42, 7, 101, 202)
SEED_PARTITIONS = dg.StaticPartitionsDefinition([str(s) for s in REQUIRED_SEEDS])
