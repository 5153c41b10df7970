"""Contract packs load the same with libyaml's safe loader as with PyYAML's pure-Python one."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from segment2b.catalogue import dictionary
from segment2b.catalogue.dictionary import CONTRACTS_DIR, read_yaml


@pytest.mark.parametrize("path", sorted(CONTRACTS_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_contract_pack_parses_as_the_pure_python_safe_loader_does(path: Path) -> None:
    pure = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    assert read_yaml(path) == pure


def test_the_fast_loader_is_libyaml_when_pyyaml_has_it() -> None:
    want = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader
    assert dictionary._YAML_LOADER is want


def test_read_yaml_stays_safe(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("x: !!python/object/apply:os.system ['true']\n", encoding="utf-8")
    with pytest.raises(yaml.YAMLError):
        read_yaml(bad)
