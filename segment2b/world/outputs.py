"""Writes the generated upstream world where 2B reads it: 1B/2A partitions, the 1B PASS gate,
the tz cache, the run receipt and the arrival roster. Every write goes through the dictionary
and the atomic publish protocol; upstream evidence is immutable.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from segment2b.errors import SegmentError
from segment2b.storage.canonical import canonical_json, pretty_json
from segment2b.storage.digests import bundle_digest, flag_bytes, folder_digest, sha256_bytes
from segment2b.storage.home import StorageHome
from segment2b.storage.publish import (
    HashingWriter,
    PublishResult,
    publish_file,
    publish_folder,
    publish_stream,
)
from segment2b.storage.tables import PART_NAME, conform, write_parquet_part

PREFIX = "UW"  # upstream-world writer codes: UW-080 / UW-082 mirror the state publish codes
BUNDLE_MEMBERS: tuple[tuple[str, str, str], ...] = (
    ("MANIFEST", "summary", "MANIFEST.json"),
    ("egress_checksums", "table", "egress_checksums.json"),
    ("index", "table", "index.json"),
    ("manifest_fingerprint_resolved", "summary", "manifest_fingerprint_resolved.json"),
    ("parameter_hash_resolved", "summary", "parameter_hash_resolved.json"),
    ("rng_accounting", "summary", "rng_accounting.json"),
    ("s9_summary", "summary", "s9_summary.json"),
)


def world_created_utc(start_day: dt.date) -> str:
    """Fixed creation time of the world: day_range.start_day − 1 day, midnight UTC."""
    return f"{(start_day - dt.timedelta(days=1)).isoformat()}T00:00:00.000000Z"


def run_created_utc(start_day: dt.date) -> str:
    """Deterministic run receipt time: the first day of the grid, midnight UTC (time law §14)."""
    return f"{start_day.isoformat()}T00:00:00.000000Z"


def manifest_fingerprint(
    knobs: Mapping[str, Any], seeds: Sequence[int], gazetteer_digest: str
) -> str:
    """SHA-256 of canonical JSON {generator knobs, seed panel, gazetteer digest}.

    The panel is part of the manifest because the 1B gate bundle (fingerprint-scoped) lists the
    egress of every panel seed; adding a seed is a new manifest, never an overwrite.
    """
    return sha256_bytes(
        canonical_json(
            {"knobs": dict(knobs), "seeds": sorted(seeds), "gazetteer_digest": gazetteer_digest}
        )
    )


@dataclass(frozen=True)
class SeedWorldDigests:
    """H2 digests of one seed's written world partitions."""

    site_locations: str
    site_timezones: str
    merchant_attributes: str
    world_arrivals: str

    def data_version(self) -> str:
        return sha256_bytes(
            canonical_json(
                [
                    self.site_locations,
                    self.site_timezones,
                    self.merchant_attributes,
                    self.world_arrivals,
                ]
            )
        )


def _publish_table(
    home: StorageHome, dataset_id: str, tokens: Mapping[str, str], frame: pl.DataFrame, state: str
) -> PublishResult:
    entry = home.catalogue.entry(dataset_id)
    table = conform(frame, entry.schema_ref)
    if entry.ordering:
        table = table.sort(list(entry.ordering))
    return publish_folder(
        home,
        home.path(dataset_id, tokens),
        lambda stage: write_parquet_part(table, stage),
        prefix=PREFIX,
        state=state,
        dataset_id=dataset_id,
        input_version=tokens["manifest_fingerprint"],
        immutable=True,
    )


def write_seed_world(
    home: StorageHome,
    *,
    seed: int,
    manifest_fingerprint: str,
    created_utc: str,
    site_locations: pl.DataFrame,
    site_timezones: pl.DataFrame,
    merchants: pl.DataFrame,
    arrivals: pl.DataFrame,
    report: Mapping[str, Any],
) -> SeedWorldDigests:
    """Publish site_locations, site_timezones (+ seed/mf/created_utc columns), merchant
    attributes, the arrival stream (arrival order kept) and the world report for one seed."""
    tokens = {"seed": str(seed), "manifest_fingerprint": manifest_fingerprint}
    tz = site_timezones.with_columns(
        pl.lit(seed, dtype=pl.UInt64).alias("seed"),
        pl.lit(manifest_fingerprint).alias("manifest_fingerprint"),
        pl.lit(created_utc).alias("created_utc"),
    )
    loc = _publish_table(home, "site_locations", tokens, site_locations, "world_site_locations")
    tzr = _publish_table(home, "site_timezones", tokens, tz, "world_site_timezones")
    mer = _publish_table(home, "merchant_attributes", tokens, merchants, "world_merchants")
    arr = _publish_table(home, "world_arrivals", tokens, arrivals, "world_arrivals")
    publish_file(
        home,
        home.path("world_report", tokens),
        pretty_json(dict(report)),
        prefix=PREFIX,
        dataset_id="world_report",
        input_version=manifest_fingerprint,
    )
    return SeedWorldDigests(loc.digest, tzr.digest, mer.digest, arr.digest)


def _egress_checksums(home: StorageHome, mf: str, seeds: Sequence[int]) -> dict[str, Any]:
    files = []
    for seed in sorted(seeds):
        tokens = {"seed": str(seed), "manifest_fingerprint": mf}
        folder = home.path("site_locations", tokens)
        part = folder / PART_NAME
        if not part.is_file():
            raise SegmentError(
                "UW-010",
                "site_locations of a panel seed is missing; generate the world first",
                dataset="site_locations",
                key=f"seed={seed}",
            )
        data = part.read_bytes()
        files.append(
            {
                "path": home.rel("site_locations", tokens) + PART_NAME,
                "sha256_hex": sha256_bytes(data),
                "size_bytes": len(data),
            }
        )
    composite = sha256_bytes("".join(f["sha256_hex"] for f in files).encode("ascii"))
    return {"composite_sha256_hex": composite, "files": files}


def write_gate_bundle(
    home: StorageHome,
    *,
    manifest_fingerprint: str,
    seeds: Sequence[int],
    knobs: Mapping[str, Any],
    site_counts: Mapping[int, int],
    tz_cache: tuple[bytes, Mapping[str, Any]] | None,
) -> str:
    """Publish the 1B validation bundle (7 members, index, flag) and the 2A tz cache.

    Returns the bundle digest (the flag value). The bundle is immutable evidence.
    """
    mf = manifest_fingerprint
    tokens = {"manifest_fingerprint": mf}
    members: dict[str, bytes] = {
        "MANIFEST.json": canonical_json(
            {
                "version": "1B.validation.v1",
                "manifest_fingerprint": mf,
                "seeds": sorted(seeds),
                "generator": dict(knobs),
            }
        ),
        "egress_checksums.json": canonical_json(_egress_checksums(home, mf, seeds)),
        "manifest_fingerprint_resolved.json": canonical_json({"manifest_fingerprint": mf}),
        "parameter_hash_resolved.json": canonical_json(
            {"parameter_hash": sha256_bytes(canonical_json(dict(knobs)))}
        ),
        "rng_accounting.json": canonical_json(
            {"rng": "keyed SHA-256 streams (uw:{seed}:{stream}:...)", "library_samplers": False}
        ),
        "s9_summary.json": canonical_json(
            {
                "status": "PASS",
                "sites_by_seed": {str(s): int(site_counts[s]) for s in sorted(seeds)},
            }
        ),
    }
    index = [
        {"artifact_id": aid, "kind": kind, "mime": "application/json", "notes": None, "path": path}
        for aid, kind, path in BUNDLE_MEMBERS
    ]
    members["index.json"] = canonical_json(index)

    digest_box: dict[str, str] = {}

    def write(stage: Any) -> None:
        for name, data in members.items():
            (stage / name).write_bytes(data)
        digest = bundle_digest(stage, [row["path"] for row in index])
        (stage / "_passed.flag").write_bytes(flag_bytes(digest))
        digest_box["digest"] = digest

    publish_folder(
        home,
        home.path("validation_bundle_1B", tokens),
        write,
        prefix=PREFIX,
        state="world_gate_bundle",
        dataset_id="validation_bundle_1B",
        immutable=True,
    )
    if tz_cache is not None:
        payload, manifest = tz_cache

        def write_cache(stage: Any) -> None:
            (stage / "tz_cache_v1.bin").write_bytes(payload)
            (stage / "tz_timetable_cache.json").write_bytes(canonical_json(dict(manifest)))

        publish_folder(
            home,
            home.path("tz_timetable_cache", tokens),
            write_cache,
            prefix=PREFIX,
            state="world_tz_cache",
            dataset_id="tz_timetable_cache",
            immutable=True,
        )
    return digest_box.get("digest") or folder_digest(home.path("validation_bundle_1B", tokens))


def tz_cache_for(
    tzids: Sequence[str],
    manifest_fingerprint: str,
    created_utc: str,
    start_year: int,
    end_year: int,
) -> tuple[bytes, dict[str, Any]]:
    """Payload and manifest of the 2A tz cache for the world's zones (pinned tzdata package).

    ``tzdb_archive_sha256`` is the SHA-256 over the TZif sources of those zones as shipped by
    the pinned ``tzdata`` wheel (name, NUL, bytes per zone, sorted): the archive we actually use.
    """
    from importlib import resources

    from segment2b.world.tzcache import encode_tz_cache, tzdb_release_tag

    zones = sorted(set(tzids))
    payload = encode_tz_cache(zones, start_year, end_year)
    archive = hashlib.sha256()
    root = resources.files("tzdata").joinpath("zoneinfo")
    for zone in zones:
        archive.update(zone.encode("utf-8") + b"\x00")
        archive.update(root.joinpath(*zone.split("/")).read_bytes())
    manifest = {
        "manifest_fingerprint": manifest_fingerprint,
        "tzdb_release_tag": tzdb_release_tag(),
        "tzdb_archive_sha256": archive.hexdigest(),
        "tz_index_digest": sha256_bytes(payload),
        "rle_cache_bytes": len(payload),
        "created_utc": created_utc,
    }
    return payload, manifest


ROSTER_CHUNK_ROWS = 250_000
"""Rows serialised per chunk (~43 MB of JSONL): the roster is never held as one string."""

_ROSTER_KEYS = ("channel", "is_virtual", "mcc", "merchant_id", "utc_day", "utc_timestamp")


def _roster_line(columns: Sequence[str]) -> pl.Expr:
    """One ``json.dumps(row, sort_keys=True)`` line (with its newline) per row, as an expression.

    Keys in sorted order; merchant_id a bare integer (never float); booleans lowercase.
    """
    cols = [c for c in _ROSTER_KEYS if c in columns]
    pieces: list[pl.Expr] = []
    for i, c in enumerate(cols):
        sep = "" if i == 0 else ", "
        quoted = c in ("channel", "utc_day", "utc_timestamp")
        val = pl.col(c).cast(pl.String)
        pieces.append(pl.lit(f'{sep}"{c}": ' + ('"' if quoted else "")))
        pieces.append(val)
        if quoted:
            pieces.append(pl.lit('"'))
    return pl.concat_str([pl.lit("{"), *pieces, pl.lit("}\n")]).alias("l")


def roster_chunk_bytes(chunk: pl.DataFrame) -> bytes:
    """The JSONL bytes of ``chunk``'s rows (vectorised; one string per chunk, no row list)."""
    if chunk.height == 0:
        return b""
    lines = chunk.select(_roster_line(chunk.columns))["l"]
    if lines.null_count():
        raise ValueError("roster row with a null value cannot be serialised")
    return str(lines.str.join("").item()).encode("utf-8")


def roster_jsonl_chunks(
    roster: pl.DataFrame, chunk_rows: int = ROSTER_CHUNK_ROWS
) -> Iterator[bytes]:
    """:func:`roster_jsonl` in consecutive chunks of ``chunk_rows`` rows (concatenation equal)."""
    for offset in range(0, roster.height, chunk_rows):
        yield roster_chunk_bytes(roster.slice(offset, chunk_rows))


def roster_jsonl(roster: pl.DataFrame) -> bytes:
    """Serialise roster rows as ``json.dumps(row, sort_keys=True)`` lines, vectorised.

    Keys in sorted order; merchant_id a bare integer (never float); booleans lowercase. Holds
    the whole roster in memory: large rosters go through :func:`write_roster_chunks`.
    """
    return b"".join(roster_jsonl_chunks(roster))


def write_roster_chunks(
    home: StorageHome, tokens: Mapping[str, str], chunks: Iterable[bytes]
) -> PublishResult:
    """Publish the arrival roster from its JSONL bytes in chunks (streamed to the stage, hashed
    as written); its input version is its content digest."""

    def write(sink: HashingWriter) -> None:
        for chunk in chunks:
            sink.write(chunk)

    return publish_stream(
        home,
        home.path("s5_arrival_roster", tokens),
        write,
        prefix=PREFIX,
        dataset_id="s5_arrival_roster",
        input_version=lambda digest: digest,
    )


def write_roster(home: StorageHome, tokens: Mapping[str, str], data: bytes) -> PublishResult:
    """Publish the arrival roster at its run-scoped path (written once, before S0)."""
    return write_roster_chunks(home, tokens, (data,))


def write_run_receipt(
    home: StorageHome,
    *,
    run_id: str,
    seed: int,
    parameter_hash: str,
    manifest_fingerprint: str,
    created_utc: str,
) -> PublishResult:
    """Publish ``runs/{run_id}/run_receipt.json`` (folder name = embedded run_id)."""
    doc = {
        "run_id": run_id,
        "seed": seed,
        "parameter_hash": parameter_hash,
        "manifest_fingerprint": manifest_fingerprint,
        "created_utc": created_utc,
        "contracts": {
            "dictionary_version": home.catalogue.dictionary_version,
            "registry_version": home.catalogue.registry_version,
        },
    }
    return publish_file(
        home,
        home.path("run_receipt", {"run_id": run_id}),
        canonical_json(doc),
        prefix=PREFIX,
        dataset_id="run_receipt",
    )
