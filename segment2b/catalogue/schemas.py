"""Schema packs: anchor resolution, JSON-schema validation and parquet table-schema checks.

External ``$ref``s into ``schemas.layer1.yaml`` are inlined before Draft 2020-12 validation
(contracts §16: otherwise unresolvable refs masquerade as shape failures).
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import polars as pl

from segment2b.catalogue.dictionary import CONTRACTS_DIR, read_yaml

_DTYPES: dict[str, pl.DataType] = {
    "UInt64": pl.UInt64(),
    "Int64": pl.Int64(),
    "Int32": pl.Int32(),
    "Float64": pl.Float64(),
    "String": pl.String(),
    "Boolean": pl.Boolean(),
    "Date": pl.Date(),
}


@cache
def _pack(name: str) -> dict[str, Any]:
    return read_yaml(CONTRACTS_DIR / name)


def anchor_exists(schema_ref: str) -> bool:
    """True when ``pack#/a/b`` names an existing pack and node (S0 V-03)."""
    try:
        resolve_anchor(schema_ref)
    except (KeyError, FileNotFoundError, ValueError):
        return False
    return True


def resolve_anchor(schema_ref: str) -> Any:
    """Walk ``schemas.X.yaml#/a/b/c`` to its node."""
    pack, _, pointer = schema_ref.partition("#")
    if not pack or not pointer.startswith("/"):
        raise ValueError(f"malformed schema_ref {schema_ref!r}")
    if not (CONTRACTS_DIR / pack).is_file():
        raise FileNotFoundError(pack)
    node: Any = _pack(pack)
    for part in pointer.strip("/").split("/"):
        node = node[part]
    return node


def _inline(node: Any, pack: str) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            target = ref if not ref.startswith("#") else f"{pack}{ref}"
            resolved = _inline(copy.deepcopy(resolve_anchor(target)), target.partition("#")[0])
            rest = {k: _inline(v, pack) for k, v in node.items() if k != "$ref"}
            return {**resolved, **rest} if rest else resolved
        return {k: _inline(v, pack) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, pack) for v in node]
    return node


@cache
def _validator(schema_ref: str) -> jsonschema.protocols.Validator:
    schema = _inline(copy.deepcopy(resolve_anchor(schema_ref)), schema_ref.partition("#")[0])
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema)


def json_errors(schema_ref: str, document: Any, *, limit: int = 20) -> list[str]:
    """Schema violations of ``document`` (empty list = valid), as ``path: message`` strings."""
    node = resolve_anchor(schema_ref)
    if isinstance(node, Mapping) and "x-model" in node:
        return model_errors(str(node["x-model"]), document)
    errors = sorted(_validator(schema_ref).iter_errors(document), key=lambda e: list(e.path))
    return [
        f"{'/'.join(str(p) for p in err.absolute_path) or '<root>'}: {err.message}"
        for err in errors[:limit]
    ]


def model_errors(model_path: str, document: Any) -> list[str]:
    """Validate with the pydantic model named by ``x-model`` (policies)."""
    import pydantic

    module_name, _, cls_name = model_path.rpartition(".")
    model = getattr(importlib.import_module(module_name), cls_name)
    try:
        model.model_validate(document)
    except pydantic.ValidationError as exc:
        return [
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        ]
    return []


def table_schema(schema_ref: str) -> pl.Schema:
    """The polars schema (column order, dtypes) declared by a table anchor."""
    node = resolve_anchor(schema_ref)
    return pl.Schema({c["name"]: _DTYPES[c["dtype"]] for c in node["columns"]})


def table_errors(schema_ref: str, frame: pl.DataFrame) -> list[str]:
    """Columns-strict check of a frame against its table anchor: names, order, dtypes, nulls."""
    node = resolve_anchor(schema_ref)
    expected = table_schema(schema_ref)
    errors: list[str] = []
    if list(frame.columns) != list(expected.names()):
        errors.append(f"columns {frame.columns} != declared {list(expected.names())}")
        return errors
    for name, dtype in expected.items():
        if frame.schema[name] != dtype:
            errors.append(f"column {name}: dtype {frame.schema[name]} != {dtype}")
    non_nullable = [c["name"] for c in node["columns"] if not c.get("nullable", False)]
    if non_nullable and frame.height:
        nulls = frame.select(pl.col(non_nullable).null_count()).row(0)
        errors.extend(
            f"column {n}: {k} null(s) in a non-nullable column"
            for n, k in zip(non_nullable, nulls, strict=True)
            if k
        )
    return errors


def contracts_dir() -> Path:
    return CONTRACTS_DIR
