"""S0 gate: happy path, idempotence, and one test per error code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segment2b.catalogue.schemas import json_errors
from segment2b.errors import SegmentError
from segment2b.states.evidence import load_evidence
from segment2b.states.s0_gate import run_s0
from segment2b_tests.fixtures import TinyRun, build_tiny_run


@pytest.fixture
def run(tmp_path: Path) -> TinyRun:
    return build_tiny_run(tmp_path)


def _bundle(run: TinyRun) -> Path:
    return run.home.path("validation_bundle_1B", run.tokens())


def _code(run: TinyRun) -> str:
    with pytest.raises(SegmentError) as exc:
        run_s0(run.home, run.run_id)
    return exc.value.code


def test_s0_seals_everything_and_publishes(run: TinyRun) -> None:
    out = run_s0(run.home, run.run_id)
    ids = [r["asset_id"] for r in out.inventory]
    assert ids == [
        "alias_layout_policy_v1",
        "day_effect_policy_v1",
        "group_mix_regularizer_v1",
        "route_rng_policy_v1",
        "s5_arrival_roster",
        "site_locations",
        "site_timezones",
        "validation_bundle_1B",
        "validation_passed_flag_1B",
        "virtual_edge_policy_v1",
    ]
    assert [i["id"] for i in out.receipt["sealed_inputs"]][:2] == [
        "validation_bundle_1B",
        "validation_passed_flag_1B",
    ]
    assert out.receipt["sealed_inputs"][-1]["id"] == "s5_arrival_roster"
    assert json_errors("schemas.2B.yaml#/validation/s0_gate_receipt_v1", out.receipt) == []
    rec_path = run.home.path("s0_gate_receipt_2B", run.tokens())
    raw = rec_path.read_bytes()
    assert not raw.endswith(b"\n") and json.loads(raw) == out.receipt
    assert f"seed={run.seed}/manifest_fingerprint={run.manifest_fingerprint}" in str(rec_path)
    assert out.report["summary"]["overall_status"] == "PASS"
    statuses = {v["id"]: v["status"] for v in out.report["validators"]}
    assert statuses["V-05"] == "WARN"  # no tz cache in the tiny world
    assert out.receipt["verified_at_utc"] == "2026-01-01T00:00:00.000000Z"
    assert out.receipt["determinism_receipt"]["policy_ids"] == sorted(
        out.receipt["determinism_receipt"]["policy_ids"]
    )


def test_s0_rerun_is_byte_identical(run: TinyRun) -> None:
    run_s0(run.home, run.run_id)
    paths = [run.home.path(i, run.tokens()) for i in ("s0_gate_receipt_2B", "sealed_inputs_2B")]
    before = [p.read_bytes() for p in paths]
    again = run_s0(run.home, run.run_id)
    assert [p.read_bytes() for p in paths] == before
    assert {r.outcome for r in again.published} == {"idempotent"}


def test_missing_flag_is_010(run: TinyRun) -> None:
    (_bundle(run) / "_passed.flag").unlink()
    assert _code(run) == "2B-S0-010"
    report = json.loads(run.home.path("s0_run_report", run.tokens()).read_bytes())
    assert report["summary"]["overall_status"] == "FAIL"
    assert report["failure"]["code"] == "2B-S0-010"
    assert not run.home.path("s0_gate_receipt_2B", run.tokens()).exists()


def test_missing_site_timezones_is_010(run: TinyRun) -> None:
    import shutil

    shutil.rmtree(run.home.path("site_timezones", run.tokens()))
    with pytest.raises(SegmentError) as exc:
        run_s0(run.home, run.run_id)
    assert exc.value.code == "2B-S0-010" and exc.value.dataset == "site_timezones"


def test_tampered_member_is_011(run: TinyRun) -> None:
    manifest = _bundle(run) / "MANIFEST.json"
    data = bytearray(manifest.read_bytes())
    data[5] ^= 0x01
    manifest.write_bytes(bytes(data))
    with pytest.raises(SegmentError) as exc:
        run_s0(run.home, run.run_id)
    assert exc.value.code == "2B-S0-011"
    assert exc.value.context["expected_sha256"] != exc.value.context["actual_sha256"]


@pytest.mark.parametrize("bad_path", ["../escape.json", "/abs.json", "a\\b.json"])
def test_unsafe_index_path_is_012(run: TinyRun, bad_path: str) -> None:
    index_path = _bundle(run) / "index.json"
    index = json.loads(index_path.read_bytes())
    index[0]["path"] = bad_path
    index_path.write_text(json.dumps(index))
    with pytest.raises(SegmentError) as exc:
        run_s0(run.home, run.run_id)
    assert exc.value.code == "2B-S0-012" and exc.value.key == bad_path


def test_indexed_file_missing_is_012(run: TinyRun) -> None:
    (_bundle(run) / "s9_summary.json").unlink()
    assert _code(run) == "2B-S0-012"


def test_unparsable_flag_is_013(run: TinyRun) -> None:
    (_bundle(run) / "_passed.flag").write_text("PASSED\n")
    assert _code(run) == "2B-S0-013"


def test_policy_failing_schema_is_020_naming_file(run: TinyRun) -> None:
    path = run.home.policy_root / "route_rng_policy_v1.json"
    doc = json.loads(path.read_bytes())
    doc["rng_engine"] = "mt19937"
    path.write_text(json.dumps(doc))
    with pytest.raises(SegmentError) as exc:
        run_s0(run.home, run.run_id)
    assert exc.value.code == "2B-S0-020"
    assert "route_rng_policy_v1.json" in str(exc.value) and "rng_engine" in str(exc.value)


def test_missing_policy_is_010(run: TinyRun) -> None:
    (run.home.policy_root / "virtual_edge_policy_v1.json").unlink()
    assert _code(run) == "2B-S0-010"


def test_cache_present_is_sealed(tmp_path: Path) -> None:
    run = build_tiny_run(tmp_path)
    cache = run.home.path("tz_timetable_cache", run.tokens())
    cache.mkdir(parents=True)
    (cache / "tz_cache_v1.bin").write_bytes(b"\x00\x01")
    (cache / "tz_timetable_cache.json").write_text(
        json.dumps(
            {
                "manifest_fingerprint": run.manifest_fingerprint,
                "tzdb_release_tag": "2026a",
                "tzdb_archive_sha256": "0" * 64,
                "tz_index_digest": "1" * 64,
                "rle_cache_bytes": 2,
                "created_utc": "2025-12-31T00:00:00.000000Z",
            }
        )
    )
    out = run_s0(run.home, run.run_id)
    assert "tz_timetable_cache" in {r["asset_id"] for r in out.inventory}
    assert {v["id"]: v["status"] for v in out.report["validators"]}["V-05"] == "PASS"


def test_changed_input_under_same_run_is_080(run: TinyRun) -> None:
    run_s0(run.home, run.run_id)
    rec = run.home.path("s0_gate_receipt_2B", run.tokens())
    doc = json.loads(rec.read_bytes())
    doc["determinism_receipt"]["platform"] = "other-host"
    rec.write_text(json.dumps(doc, sort_keys=True, separators=(",", ":")))
    # A receipt written on another host differs from this host's bytes for identical inputs.
    assert _code(run) == "2B-S0-080"


def test_downstream_reads_only_sealed_inputs(run: TinyRun) -> None:
    run_s0(run.home, run.run_id)
    ev = load_evidence(
        run.home, seed=run.seed, manifest_fingerprint=run.manifest_fingerprint, prefix="2B-S1"
    )
    assert ev.policy("alias_layout_policy_v1").policy_id == "alias_layout_policy_v1"
    with pytest.raises(SegmentError) as exc:
        ev.row("tz_timetable_cache")
    assert exc.value.code == "2B-S1-022"
    # Tamper with a sealed policy after S0: the sealed digest no longer matches.
    path = run.home.policy_root / "alias_layout_policy_v1.json"
    path.write_bytes(path.read_bytes() + b"\n")
    with pytest.raises(SegmentError) as exc:
        ev.policy("alias_layout_policy_v1")
    assert exc.value.code == "2B-S1-070" and "alias_layout_policy_v1.json" in str(exc.value)


def test_missing_receipt_for_downstream_is_001(run: TinyRun) -> None:
    with pytest.raises(SegmentError) as exc:
        load_evidence(
            run.home, seed=run.seed, manifest_fingerprint=run.manifest_fingerprint, prefix="2B-S3"
        )
    assert exc.value.code == "2B-S3-001"
