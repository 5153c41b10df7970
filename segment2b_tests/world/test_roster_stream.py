"""The arrival roster published in chunks: the same bytes as one-shot serialisation.

Grain: one roster file per (seed, parameter_hash, run_id); one JSONL line per arrival.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import pytest

from segment2b import pipeline
from segment2b.policy.store import load_pack
from segment2b.storage.home import StorageHome
from segment2b.world.outputs import roster_jsonl
from segment2b_tests.world.worlds import small_config

SEED = 42


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[StorageHome, pipeline.RosterStep]:
    """A small world and its gate, roster published with chunks that do not divide it."""
    root = tmp_path_factory.mktemp("roster_stream")
    pack = load_pack()
    home = StorageHome(root=root / "home", policy_root=pack.root)
    config = small_config()
    pipeline.publish_world(home, config, [SEED], SEED)
    pipeline.publish_gate(home, config, [SEED])
    mp = pytest.MonkeyPatch()
    mp.setattr(pipeline, "ROSTER_CHUNK_ROWS", 7_001)  # 30,000 rows → 4 full chunks + 1 short
    try:
        step = pipeline.publish_roster(home, config, [SEED], pack, SEED)
    finally:
        mp.undo()
    return home, step


def _arrivals(home: StorageHome, step: pipeline.RosterStep) -> pl.DataFrame:
    return pl.read_parquet(home.path("world_arrivals", step.plan.plan_tokens()))


def test_chunked_roster_equals_one_shot_serialisation(published) -> None:
    home, step = published
    arrivals = _arrivals(home, step)
    assert arrivals.height > 4 * 7_001  # the boundaries were really crossed
    data = Path(step.metadata["path"]).read_bytes()
    assert data == roster_jsonl(arrivals)
    assert data.count(b"\n") == arrivals.height
    assert step.data_version == hashlib.sha256(data).hexdigest()
    assert step.metadata["bytes"] == len(data)


def test_chunk_tallies_equal_whole_table_figures(published) -> None:
    home, step = published
    arrivals = _arrivals(home, step)
    assert step.metadata["arrivals"] == arrivals.height
    assert step.metadata["virtual_arrivals"] == int(arrivals["is_virtual"].sum())
    assert step.metadata["first_day"] == arrivals["utc_day"].min()
    assert step.metadata["last_day"] == arrivals["utc_day"].max()


def test_republish_with_other_chunking_is_idempotent(published, monkeypatch) -> None:
    home, step = published
    path = Path(step.metadata["path"])
    before = path.stat().st_mtime_ns, path.read_bytes()
    monkeypatch.setattr(pipeline, "ROSTER_CHUNK_ROWS", 1_000_000)  # one chunk this time
    again = pipeline.publish_roster(home, small_config(), [SEED], load_pack(), SEED)
    assert again.data_version == step.data_version
    assert (path.stat().st_mtime_ns, path.read_bytes()) == before  # not rewritten
    assert not [p for p in path.parent.iterdir() if p.name.startswith("_tmp.")]
