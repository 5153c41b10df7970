"""Country weights and per-merchant capacity of the realistic profile (upstream-world.md §5.3.2).

Grain: one row per ISO country of the country table that has at least one gazetteer place,
sorted by iso2, with ``weight`` (sums to 1), ``capacity`` (most sites one merchant may hold there)
and ``continent`` (the footprint model's region).
"""

from __future__ import annotations

import numpy as np
import polars as pl

URBAN_EXPONENT = 0.6
"""``w_c ∝ urban_pop_c^0.6 × econ_c``: sub-linear in city population (markets saturate)."""

MICRO_POPULATION = 1_000_000
MICRO_TOTAL = 0.01
"""Micro-jurisdictions (< 1 M inhabitants) together hold at most 1 % of the weight (so each holds
well under 1 % of sites; fixes artefact 4, where BM alone held 5.7 %). The sub-linear urban law
would otherwise give ~60 territories with about 15 M inhabitants in all some 4 % of the weight,
ten times their share of the world's urban population."""

MIN_MARKET_WEIGHT = 0.0014
"""Countries below 0.14 % of the weight are not served: a multi-site merchant of the acquirer
operates only in markets expected to hold a few dozen of its ~30,000 sites. This is what keeps
the world at ~100 countries (band 80–120) instead of a long tail of one-site territories."""

REGIONS: tuple[str, ...] = ("AF", "AS", "EU", "NA", "OC", "SA")
REGION_FLOOR = 0.06
"""Every inhabited continent keeps at least 6 % of the weight, so none is empty or token
(fixes artefact 4's near-empty Africa and South America and thin southern hemisphere; binds for
Africa and Oceania, whose card markets the income tiers alone would leave at 3–5 %)."""

URBAN_PER_SITE = 20_000
"""One merchant holds at most one site per 5,000 urban inhabitants of a country. The densest real
chains sit near one outlet per 6,000 (7-Eleven Japan) and typical national chains at one per
20,000 (Tesco UK, Starbucks US), so this only stops implausible cases such as a 100-site chain in
a 30,000-person territory."""


def country_table(countries: pl.DataFrame) -> pl.DataFrame:
    """Realistic country weights and capacities from the gazetteer country table."""
    table = countries.filter(pl.col("urban_pop") > 0).sort("iso2")
    urban = table["urban_pop"].to_numpy().astype(np.float64)
    w = urban**URBAN_EXPONENT * table["econ"].to_numpy()
    w = w / w.sum()
    micro = table["population"].to_numpy() < MICRO_POPULATION
    micro_share = float(w[micro].sum())
    if micro_share > MICRO_TOTAL:
        w = np.where(
            micro, w * MICRO_TOTAL / micro_share, w * (1 - MICRO_TOTAL) / (1 - micro_share)
        )
    w = np.where(w >= MIN_MARKET_WEIGHT, w, 0.0)
    w = w / w.sum()
    region = table["continent"].to_numpy()
    # Raise regions under the floor to it and shrink the others in proportion; repeat because
    # shrinking can push another region under its floor.
    for _ in range(len(REGIONS)):
        low = [r for r in REGIONS if 0.0 < float(w[region == r].sum()) < REGION_FLOOR - 1e-12]
        if not low:
            break
        lifted = np.isin(region, low)
        for r in low:
            mask = region == r
            w = np.where(mask, w * REGION_FLOOR / float(w[mask].sum()), w)
        rest = ~lifted
        w = np.where(rest, w * (1.0 - float(w[lifted].sum())) / float(w[rest].sum()), w)
    capacity = np.maximum(np.floor(urban / URBAN_PER_SITE), 1).astype(np.int64)
    return table.select("iso2", "continent", "population", "urban_pop").with_columns(
        weight=pl.Series(w, dtype=pl.Float64),
        capacity=pl.Series(capacity, dtype=pl.Int64),
    )
