"""Deterministic parquet writing and schema-checked reading of partition folders."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from segment2b.catalogue.schemas import table_errors, table_schema
from segment2b.errors import SegmentError

PART_NAME = "part-00000.parquet"


def write_parquet_part(frame: pl.DataFrame, folder: Path, name: str = PART_NAME) -> Path:
    """Write one part file (default ``part-00000.parquet``): zstd, fixed row groups.

    Byte-identical for identical frames under the pinned polars version. Multi-part writers pass
    each part's own ``name`` so no part ever overwrites another.
    """
    path = folder / name
    frame.write_parquet(path, compression="zstd", compression_level=3, row_group_size=100_000)
    return path


def read_partition(folder: Path, *, dataset_id: str, schema_ref: str, code: str) -> pl.DataFrame:
    """Read every ``*.parquet`` of a partition folder (name-sorted) and check it columns-strict."""
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise SegmentError(
            code, "partition has no parquet files", dataset=dataset_id, key=str(folder)
        )
    frame = pl.concat([pl.read_parquet(f) for f in files], how="vertical")
    errors = table_errors(schema_ref, frame)
    if errors:
        raise SegmentError(
            code,
            f"table fails its schema: {errors[0]}",
            dataset=dataset_id,
            key=str(folder),
            context={"schema_errors": errors},
        )
    return frame


def conform(frame: pl.DataFrame, schema_ref: str) -> pl.DataFrame:
    """Select and cast columns into the declared order and dtypes (writers only)."""
    schema = table_schema(schema_ref)
    return frame.select([pl.col(n).cast(t) for n, t in schema.items()])
