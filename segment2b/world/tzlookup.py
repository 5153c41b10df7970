"""Polygon time-zone lookup of points (the 2A stand-in), batched and canonicalised.

Backed by timezonefinder's batch API (``timezone_ids_at``); its polygons come from
timezone-boundary-builder, pinned through ``timezonefinder-data`` in ``requirements.lock``.
Points the polygons leave to the ocean zones (``Etc/GMT±N``) count as "no zone" here: a merchant
site never sits at sea.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from segment2b.world.tzdb import canonical_tzid

NO_ZONE = ""


@cache
def _finder() -> tuple[object, np.ndarray]:
    from timezonefinder import TimezoneFinder

    tf = TimezoneFinder()
    names = []
    for name in tf.timezone_names:
        names.append(NO_ZONE if name.startswith("Etc/") else canonical_tzid(name))
    return tf, np.array(names, dtype=object)


def lookup_tzids(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Canonical tzid of each point (object array of str); ``""`` where no land zone covers it."""
    tf, names = _finder()
    lon = np.ascontiguousarray(lon, dtype=np.float64)
    lat = np.ascontiguousarray(lat, dtype=np.float64)
    if lon.size == 0:
        return np.empty(0, dtype=object)
    ids = tf.timezone_ids_at(lngs=lon, lats=lat, on_invalid="skip")  # type: ignore[attr-defined]
    out = np.full(lon.size, NO_ZONE, dtype=object)
    ok = ids >= 0
    out[ok] = names[ids[ok].astype(np.int64)]
    return out
