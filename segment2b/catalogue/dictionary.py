"""Dataset dictionary: dataset id -> path template, partitioning, format and schema_ref.

Nothing in segment2b hard-codes a dataset path; every path is rendered here from
``contracts/dataset_dictionary.layer1.2B.yaml``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from segment2b.errors import SegmentError

CONTRACTS_DIR = Path(__file__).resolve().parents[2] / "contracts"
# libyaml's safe loader when PyYAML has it (the wheels do): the same documents, parsed about
# six times faster (the contract packs cost ~0.1 s per process in pure Python).
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
DICTIONARY_FILE = "dataset_dictionary.layer1.2B.yaml"
REGISTRY_FILE = "artefact_registry_2B.yaml"
_TOKEN = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class DatasetEntry:
    """One dictionary row."""

    dataset_id: str
    path: str
    partitioning: tuple[str, ...]
    format: str
    schema_ref: str
    version: str
    ordering: tuple[str, ...]
    retention_days: int

    @property
    def is_folder(self) -> bool:
        return self.path.endswith("/")


@dataclass(frozen=True)
class Catalogue:
    """The loaded dictionary and registry (immutable)."""

    dictionary_version: str
    registry_version: str
    entries: Mapping[str, DatasetEntry]
    registry: Mapping[str, Mapping[str, Any]]

    def entry(self, dataset_id: str, *, code: str = "2B-S0-020") -> DatasetEntry:
        try:
            return self.entries[dataset_id]
        except KeyError:
            raise SegmentError(
                code, "dataset id is not in the dictionary", dataset=dataset_id
            ) from None

    def render(
        self, dataset_id: str, tokens: Mapping[str, object], *, code: str = "2B-S0-050"
    ) -> str:
        """Render the path template by literal token replacement (contracts §3)."""
        template = self.entry(dataset_id).path
        missing = [t for t in _TOKEN.findall(template) if t not in tokens]
        if missing:
            raise SegmentError(
                code,
                f"missing partition token(s) {missing} for path template",
                dataset=dataset_id,
                context={"missing": missing},
            )
        return _TOKEN.sub(lambda m: str(tokens[m.group(1)]), template)

    def partition(self, dataset_id: str, tokens: Mapping[str, object]) -> dict[str, str]:
        """``{key: token}`` for each partition key of the dataset (policies: ``{}``)."""
        entry = self.entry(dataset_id)
        missing = [k for k in entry.partitioning if k not in tokens]
        if missing:
            raise SegmentError(
                "2B-S0-050",
                f"missing partition token(s) {missing}",
                dataset=dataset_id,
                context={"expected_partition": list(entry.partitioning)},
            )
        return {k: str(tokens[k]) for k in entry.partitioning}

    def version_tag(self, dataset_id: str, tokens: Mapping[str, object]) -> str:
        """Render the dictionary ``version`` template; unresolved tokens are left in place."""
        template = self.entry(dataset_id).version
        return _TOKEN.sub(
            lambda m: str(tokens[m.group(1)]) if m.group(1) in tokens else m.group(0), template
        )


def read_yaml(path: Path) -> Any:
    """A YAML contract file, safe-loaded (plain data only)."""
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)


@cache
def load_catalogue(contracts_dir: Path = CONTRACTS_DIR) -> Catalogue:
    """Load (once per process) the dictionary and registry from ``contracts/``."""
    raw = read_yaml(contracts_dir / DICTIONARY_FILE)
    reg = read_yaml(contracts_dir / REGISTRY_FILE)
    entries = {
        ds_id: DatasetEntry(
            dataset_id=ds_id,
            path=spec["path"],
            partitioning=tuple(spec.get("partitioning") or ()),
            format=spec["format"],
            schema_ref=spec.get("schema_ref", ""),
            version=str(spec.get("version", "")),
            ordering=tuple(spec.get("ordering") or ()),
            retention_days=int(spec.get("retention_days", 365)),
        )
        for ds_id, spec in raw["datasets"].items()
    }
    return Catalogue(
        dictionary_version=str(raw.get("version", "unknown")),
        registry_version=str(reg.get("version", "unknown")),
        entries=entries,
        registry=reg.get("artefacts", {}),
    )
