"""What a state runner returns to its (thin) Dagster asset."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from segment2b.storage.canonical import canonical_json
from segment2b.storage.digests import sha256_bytes
from segment2b.storage.publish import PublishResult


@dataclass(frozen=True)
class StateOutcome:
    """Published outputs of one state run for one seed.

    ``frame`` is the main table (for asset checks); ``report`` the run-report as written;
    ``data_version`` (the asset's Dagster data version) the digest of every published output,
    or ``version`` when the state sets it: the input version its outputs were published
    under, for outputs too large to hash on every publish (S5's logs, DECISIONS 29).
    """

    frame: pl.DataFrame | None
    report: Mapping[str, Any]
    published: Sequence[PublishResult] = field(default_factory=tuple)
    extras: Mapping[str, Any] = field(default_factory=dict)
    version: str | None = None

    @property
    def data_version(self) -> str:
        if self.version is not None:
            return self.version
        return sha256_bytes(canonical_json([p.digest for p in self.published]))


def input_version(code_version: str, **parts: Any) -> str:
    """Digest of what an output was built from: code version + input digests (publish sidecar)."""
    return sha256_bytes(canonical_json({"code_version": code_version, **parts}))
