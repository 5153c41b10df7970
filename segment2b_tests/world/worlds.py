"""Shared generated worlds for the world tests (generated once per test session)."""

from __future__ import annotations

from functools import cache

from segment2b.world.config import WorldConfig
from segment2b.world.generator import World, generate_world

SMALL = 150
SMALL_ARRIVALS = 30_000


def small_config(profile: str = "realistic", **knobs: object) -> WorldConfig:
    """A 150-merchant world with a 30,000-arrival roster (replica: smoke roster)."""
    base: dict[str, object] = {"n_merchants": SMALL, "roster_arrivals": SMALL_ARRIVALS}
    base.update(knobs)
    return WorldConfig.for_profile(profile, **base)


@cache
def small_world(profile: str = "realistic", seed: int = 42) -> World:
    return generate_world(small_config(profile), seed)


@cache
def default_world(profile: str = "realistic", seed: int = 42) -> World:
    return generate_world(WorldConfig.for_profile(profile), seed)
