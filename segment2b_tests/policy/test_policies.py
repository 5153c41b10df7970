"""Policy packs: both packs validate; bad policies fail naming file, field and rule."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from segment2b.errors import SegmentError
from segment2b.policy.models import POLICY_IDS
from segment2b.policy.store import (
    DEFAULT_PACK,
    load_pack,
    load_policy,
    parameter_hash,
    policy_self_digest,
)


def test_remediation_pack_loads_with_blocks_on() -> None:
    pack = load_pack(DEFAULT_PACK)
    assert sorted(pack.policies) == list(POLICY_IDS)
    alias = pack["alias_layout_policy_v1"].model
    assert alias.weight_source["mode"] == "profile_mixture_v2"
    assert alias.profile_mixture_v2 is not None
    day = pack["day_effect_policy_v1"].model
    assert day.sigma_gamma_policy_v2 is not None and day.sigma_gamma_policy_v2.enabled
    assert pack["group_mix_regularizer_v1"].model.enabled


def test_baseline_pack_is_grade_c_posture() -> None:
    pack = load_pack(DEFAULT_PACK / "baseline")
    assert pack["alias_layout_policy_v1"].model.weight_source["mode"] == "uniform"
    assert pack["day_effect_policy_v1"].model.sigma_gamma_policy_v2 is None
    assert not pack["group_mix_regularizer_v1"].model.enabled


def test_edge_catalogue_is_worldwide() -> None:
    edges = load_pack(DEFAULT_PACK)["virtual_edge_policy_v1"].model.edges
    assert edges is not None and len(edges) >= 36
    assert len({e.ip_country for e in edges}) >= 30
    assert any(e.edge_lat < 0 for e in edges)  # southern hemisphere present
    total = 0.0
    for e in edges:
        total += e.weight or 0.0
    assert abs(total - 1.0) <= 1e-9


def test_embedded_self_digests_satisfy_h5() -> None:
    for pack in (DEFAULT_PACK, DEFAULT_PACK / "baseline"):
        for pid in ("day_effect_policy_v1", "group_mix_regularizer_v1"):
            doc = json.loads((pack / f"{pid}.json").read_bytes())
            assert doc["sha256_hex"] == policy_self_digest(doc)


def _mutated(tmp_path: Path, pid: str, mutate: object) -> Path:
    doc = json.loads((DEFAULT_PACK / f"{pid}.json").read_bytes())
    mutate(doc)  # type: ignore[operator]
    if "sha256_hex" in doc:
        doc["sha256_hex"] = policy_self_digest(doc)
    path = tmp_path / f"{pid}.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    ("pid", "mutate", "field"),
    [
        ("route_rng_policy_v1", lambda d: d.update(surprise=1), "surprise"),
        (
            "day_effect_policy_v1",
            lambda d: d["day_range"].update(start_day="2026-04-01"),
            "day_range",
        ),
        (
            "day_effect_policy_v1",
            lambda d: d["sigma_gamma_policy_v2"].update(sigma_min=0.2, sigma_max=0.1),
            "sigma_gamma_policy_v2",
        ),
        (
            "group_mix_regularizer_v1",
            lambda d: d.update(regularization_strength=1.5),
            "regularization_strength",
        ),
        (
            "alias_layout_policy_v1",
            lambda d: d["profile_mixture_v2"]["merchant_size_buckets"]["mid"].update(min_sites=5),
            "profile_mixture_v2",
        ),
        (
            "virtual_edge_policy_v1",
            lambda d: d["edges"][0].update(edge_lat=95.0),
            "edges.0.edge_lat",
        ),
    ],
)
def test_bad_policy_names_file_field_rule(
    tmp_path: Path, pid: str, mutate: object, field: str
) -> None:
    path = _mutated(tmp_path, pid, mutate)
    with pytest.raises(SegmentError) as exc:
        load_policy(path, pid)
    msg = str(exc.value)
    assert exc.value.code == "2B-S0-020"
    assert path.name in msg and field in msg


def test_stale_embedded_digest_is_rejected(tmp_path: Path) -> None:
    doc = json.loads((DEFAULT_PACK / "group_mix_regularizer_v1.json").read_bytes())
    doc["entropy_floor"] = 0.31  # edit without refreshing the H5 self-digest
    path = tmp_path / "group_mix_regularizer_v1.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(SegmentError) as exc:
        load_policy(path, "group_mix_regularizer_v1")
    assert exc.value.code == "2B-S0-042"


def test_parameter_hash_tracks_each_governed_file(tmp_path: Path) -> None:
    pack = load_pack(DEFAULT_PACK)
    roster = {"mode": "realistic", "arrivals": 400000}
    base = parameter_hash(pack.digests(), roster)
    assert base == parameter_hash(pack.digests(), dict(roster))
    assert base != parameter_hash(pack.digests(), {**roster, "arrivals": 1})
    shutil.copytree(DEFAULT_PACK, tmp_path / "p", ignore=shutil.ignore_patterns("baseline"))
    edited = tmp_path / "p" / "route_rng_policy_v1.json"
    edited.write_bytes(edited.read_bytes() + b" ")
    assert parameter_hash(load_pack(tmp_path / "p").digests(), roster) != base
