"""The frozen gazetteer snapshot and country table (built once by ``build_gazetteer.py``).

Grain: ``places`` — one row per populated place ≥ 15,000 inhabitants (place_id, iso2, lat, lon,
population, tzid), sorted by place_id; ``countries`` — one row per ISO-3166 code (iso2, name,
population, continent, income_tier, econ, urban_pop), sorted by iso2. ``urban_pop`` is derived
here as the summed population of the country's gazetteer places (0 when it has none): the urban
population proxy of the country-weight law.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources

import polars as pl

_PACKAGE = "segment2b.world"
GAZETTEER_FILE = "gazetteer.parquet"
COUNTRIES_FILE = "countries.csv"


def _data_bytes(name: str) -> bytes:
    return resources.files(_PACKAGE).joinpath("data", name).read_bytes()


@cache
def gazetteer_digest() -> str:
    """SHA-256 (hex) of the raw bytes of the shipped ``gazetteer.parquet``."""
    return hashlib.sha256(_data_bytes(GAZETTEER_FILE)).hexdigest()


@cache
def load_places() -> pl.DataFrame:
    """All gazetteer places, sorted by place_id (cached; treat as read-only)."""
    import io

    return pl.read_parquet(io.BytesIO(_data_bytes(GAZETTEER_FILE))).sort("place_id")


@cache
def load_countries() -> pl.DataFrame:
    """Country table plus ``urban_pop`` from the gazetteer, sorted by iso2 (cached)."""
    import io

    # polars reads only empty fields as null, so "NA" (Namibia; North America) stays a string.
    table = pl.read_csv(
        io.BytesIO(_data_bytes(COUNTRIES_FILE)),
        schema_overrides={"population": pl.Int64, "econ": pl.Float64},
    )
    urban = load_places().group_by("iso2").agg(pl.col("population").sum().alias("urban_pop"))
    return (
        table.join(urban, on="iso2", how="left")
        .with_columns(pl.col("urban_pop").fill_null(0).cast(pl.Int64))
        .sort("iso2")
    )
