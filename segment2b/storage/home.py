"""The storage home: one root holding every seed, laid out by the dictionary's templates."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from segment2b.catalogue.dictionary import Catalogue, load_catalogue

DEFAULT_HOME = ".segment2b"
HOME_ENV = "SEGMENT2B_HOME"


def default_home() -> Path:
    """``$SEGMENT2B_HOME`` if set, else ``.segment2b/`` in the working folder."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).resolve()


@dataclass(frozen=True)
class StorageHome:
    """Resolves dataset ids to absolute paths under ``root`` (config/ ids under the policy pack)."""

    root: Path
    policy_root: Path
    catalogue: Catalogue = field(default_factory=load_catalogue)

    def rel(self, dataset_id: str, tokens: Mapping[str, object]) -> str:
        """The rendered, root-relative template (what artefacts record as ``path``)."""
        return self.catalogue.render(dataset_id, tokens)

    def path(self, dataset_id: str, tokens: Mapping[str, object] | None = None) -> Path:
        rel = self.rel(dataset_id, tokens or {})
        if rel.startswith("config/"):
            # Policies: the dictionary template names the file; the active pack supplies it.
            return self.policy_root / Path(rel).name
        return self.root / rel

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def versions(self) -> Path:
        """Sidecar records of the input data version each working output was built from."""
        return self.root / "_versions"
