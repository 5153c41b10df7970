"""The 2A tz timetable cache payload (``tz_cache_v1.bin``): the world's zones' UTC-offset
transitions from the pinned tz database, as deterministic bytes.

Layout (all integers little-endian):

=================  =========================================================================
``magic``          8 bytes ``b"UWTZC1\\x00\\x00"``
``release``        u8 length + ASCII tz database release tag (e.g. ``2026f``)
``start_utc``      i64 — 00:00:00 UTC on 1 January of ``start_year`` (epoch seconds)
``end_utc``        i64 — 00:00:00 UTC on 1 January of ``end_year + 1`` (exclusive)
``zone_count``     u32
per zone, tzids sorted by their UTF-8 bytes:
``name``           u16 length + UTF-8 tzid
``count``          u32 — number of rows that follow (≥ 1)
``rows``           ``count`` × (i64 instant, i32 utc_offset_seconds): the first row is
                   (``start_utc``, offset in force then), each further row an instant in
                   ``(start_utc, end_utc)`` at which the UTC offset changes and the new offset
=================  =========================================================================

Only UTC-offset changes are recorded (an abbreviation or DST-flag change at constant offset is
not one). The bytes depend only on the zone list, the years and the pinned ``tzdata`` wheel.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Sequence

from segment2b.world.tzdb import canonical_tzid, release_tag, transitions

MAGIC = b"UWTZC1\x00\x00"


def tzdb_release_tag() -> str:
    """Release of the pinned tz database (``tzdata`` wheel), e.g. ``"2026f"``."""
    return release_tag()


def _epoch(year: int) -> int:
    return int(dt.datetime(year, 1, 1, tzinfo=dt.UTC).timestamp())


def encode_tz_cache(tzids: Sequence[str], start_year: int, end_year: int) -> bytes:
    """Deterministic transition table of ``tzids`` over ``[start_year, end_year]`` (layout in
    the module docstring). Duplicates are dropped; every tzid must exist in the pinned database.
    """
    if end_year < start_year:
        raise ValueError("end_year precedes start_year")
    zones = sorted(set(tzids), key=lambda z: z.encode("utf-8"))
    for zone in zones:
        canonical_tzid(zone)  # raises on a zone the pinned database lacks
    start, end = _epoch(start_year), _epoch(end_year + 1)
    tag = tzdb_release_tag().encode("ascii")
    out = bytearray(MAGIC)
    out += struct.pack("<B", len(tag)) + tag
    out += struct.pack("<qqI", start, end, len(zones))
    for zone in zones:
        name = zone.encode("utf-8")
        rows = transitions(zone, start, end)
        out += struct.pack("<H", len(name)) + name
        out += struct.pack("<I", len(rows))
        for instant, offset in rows:
            out += struct.pack("<qi", instant, offset)
    return bytes(out)


def decode_tz_cache(payload: bytes) -> dict[str, list[tuple[int, int]]]:
    """Inverse of :func:`encode_tz_cache` (for tests and audits): tzid → rows."""
    if payload[:8] != MAGIC:
        raise ValueError("not a tz_cache_v1 payload")
    pos = 8
    (tag_len,) = struct.unpack_from("<B", payload, pos)
    pos += 1 + tag_len
    _start, _end, count = struct.unpack_from("<qqI", payload, pos)
    pos += 20
    out: dict[str, list[tuple[int, int]]] = {}
    for _ in range(count):
        (n,) = struct.unpack_from("<H", payload, pos)
        pos += 2
        name = payload[pos : pos + n].decode("utf-8")
        pos += n
        (rows,) = struct.unpack_from("<I", payload, pos)
        pos += 4
        out[name] = [struct.unpack_from("<qi", payload, pos + 12 * i) for i in range(rows)]
        pos += 12 * rows
    if pos != len(payload):
        raise ValueError("trailing bytes in tz_cache_v1 payload")
    return out
