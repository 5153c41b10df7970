"""The pinned tz database as the world sees it: canonical zone names, aliases, the zones and
ISO-3166 codes of each country, and UTC offsets over a window.

Everything here is read from the installed ``tzdata`` wheel (``zoneinfo/tzdata.zi``,
``zone.tab``, ``iso3166.tab``), never from the host's ``/usr/share/zoneinfo``, so the answers are
pinned by ``requirements.lock``.

**Canonical** means: a ``Zone`` of ``tzdata.zi`` or a name ``zone.tab`` lists for a country.
The second half keeps the per-country names a polygon lookup returns (``Europe/Copenhagen``,
``Arctic/Longyearbyen``, ``America/Kralendijk``) even though the tz database now implements them
as links; the measured upstream world (upstream-world.md §3) groups by exactly those strings.
Every other link (``Asia/Calcutta``, ``US/Eastern``, ``Europe/Kiev`` …) is an alias and maps to
its target.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from functools import cache
from importlib import resources
from zoneinfo import ZoneInfo

import numpy as np

_UTC = dt.UTC


def _zoneinfo_text(name: str) -> str:
    return resources.files("tzdata").joinpath("zoneinfo", name).read_text(encoding="utf-8")


@cache
def release_tag() -> str:
    """tz database release of the pinned wheel, e.g. ``"2026f"`` (first line of tzdata.zi)."""
    first = _zoneinfo_text("tzdata.zi").splitlines()[0]
    if not first.startswith("# version "):
        raise ValueError(f"tzdata.zi has no version line: {first!r}")
    return first.removeprefix("# version ").strip()


@cache
def _zones_and_links() -> tuple[frozenset[str], dict[str, str]]:
    zones: set[str] = set()
    links: dict[str, str] = {}
    for line in _zoneinfo_text("tzdata.zi").splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "Z":
            zones.add(parts[1])
        elif parts[0] == "L":
            links[parts[2]] = parts[1]
    return frozenset(zones), links


@cache
def country_zones() -> dict[str, tuple[str, ...]]:
    """ISO2 → zones ``zone.tab`` lists for the country, in file order (principal zone first)."""
    out: dict[str, list[str]] = {}
    for line in _zoneinfo_text("zone.tab").splitlines():
        if not line or line.startswith("#"):
            continue
        iso, _coord, zone = line.split("\t")[:3]
        out.setdefault(iso, []).append(zone)
    return {iso: tuple(z) for iso, z in sorted(out.items())}


@cache
def iso_countries() -> dict[str, str]:
    """The ISO-3166 alpha-2 list shipped with the tz database: code → short name."""
    out: dict[str, str] = {}
    for line in _zoneinfo_text("iso3166.tab").splitlines():
        if line and not line.startswith("#"):
            code, name = line.split("\t")[:2]
            out[code] = name
    return dict(sorted(out.items()))


@cache
def canonical_zones() -> frozenset[str]:
    """Zone names treated as canonical (module docstring)."""
    zones, _ = _zones_and_links()
    tab = {z for zs in country_zones().values() for z in zs}
    return frozenset(zones | tab)


def canonical_tzid(name: str) -> str:
    """Map a zone name to its canonical form; raise on a name the pinned database lacks."""
    canon = canonical_zones()
    _, links = _zones_and_links()
    seen = 0
    while name not in canon:
        if name not in links or seen > 8:
            raise ValueError(f"unknown time zone {name!r} in tzdata {release_tag()}")
        name = links[name]
        seen += 1
    return name


def offsets_at(tzid: str, instants: np.ndarray) -> np.ndarray:
    """UTC offsets (seconds, int64) of ``tzid`` at the given UTC instants (epoch seconds)."""
    zone = ZoneInfo(tzid)
    out = np.empty(instants.shape[0], dtype=np.int64)
    for i, t in enumerate(instants.tolist()):
        off = dt.datetime.fromtimestamp(int(t), tz=_UTC).astimezone(zone).utcoffset()
        out[i] = int(off.total_seconds()) if off is not None else 0
    return out


def transitions(tzid: str, start: int, end: int, step: int = 12 * 3600) -> list[tuple[int, int]]:
    """UTC-offset history of ``tzid`` over ``[start, end)`` (epoch seconds).

    Returns ``[(start, offset), (t1, offset1), …]``: the offset in force at ``start`` followed by
    every instant at which the offset changes, exact to the second. Found by sampling every
    ``step`` seconds (no zone of the tz database changes offset twice within 12 h) and
    bisecting each change.
    """
    grid = np.arange(start, end, step, dtype=np.int64)
    offs = offsets_at(tzid, grid)
    out = [(int(start), int(offs[0]))]
    for i in np.flatnonzero(offs[1:] != offs[:-1]).tolist():
        lo, hi = int(grid[i]), int(grid[i + 1])  # offset changes in (lo, hi]
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if offsets_at(tzid, np.array([mid]))[0] == offs[i]:
                lo = mid
            else:
                hi = mid
        out.append((hi, int(offs[i + 1])))
    return out


def offset_table(
    tzids: Sequence[str], start: int, end: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flattened transition tables for vectorised offset lookups.

    Returns ``(zone_start, instants, offsets)``: zone ``i`` owns rows
    ``zone_start[i]:zone_start[i+1]`` of ``instants``/``offsets`` (ascending instants, the first
    equal to ``start``). Use :func:`lookup_offsets` to query.
    """
    starts = [0]
    inst: list[int] = []
    offs: list[int] = []
    for tz in tzids:
        rows = transitions(tz, start, end)
        inst.extend(r[0] for r in rows)
        offs.extend(r[1] for r in rows)
        starts.append(len(inst))
    return (
        np.asarray(starts, dtype=np.int64),
        np.asarray(inst, dtype=np.int64),
        np.asarray(offs, dtype=np.int64),
    )


def lookup_offsets(
    table: tuple[np.ndarray, np.ndarray, np.ndarray], zone_idx: np.ndarray, instants: np.ndarray
) -> np.ndarray:
    """Offset (seconds) in force for each (zone index, UTC instant) pair, vectorised."""
    zone_start, inst, offs = table
    # Shift each zone's instants into its own band so one searchsorted serves every zone.
    band = np.int64(1) << np.int64(40)
    zone_of_row = np.repeat(np.arange(zone_start.size - 1), np.diff(zone_start))
    keys = zone_of_row.astype(np.int64) * band + inst
    q = zone_idx.astype(np.int64) * band + instants.astype(np.int64)
    pos = np.searchsorted(keys, q, side="right") - 1
    pos = np.maximum(pos, zone_start[zone_idx])
    return offs[pos]
