"""The Dagster shell over a small world: definitions, jobs, checks, S8 waiting, certification,
the rerun matrix, and the certification cycle's stage logic.

One module-scoped run (4 seeds × 40 merchants) is shared by the tests that read it.
"""

import json
import shutil
from pathlib import Path

import dagster as dg
import pytest

from segment2b.bundle_verify import verify_bundle
from segment2b.certification.runner import read_current_pack
from segment2b.definitions import defs
from segment2b.partitions import REQUIRED_SEEDS
from segment2b.policy.store import DEFAULT_PACK, policy_self_digest
from segment2b.resources import SegmentStore, WorldSettings
from segment2b.run_plan import world_fingerprint
from segment2b.scheduling import next_stage, stage_requests
from segment2b.staleness import stale_report

SPEC_KEYS = {
    "s0_gate_receipt_2B",
    "sealed_inputs_2B",
    "s1_site_weights",
    "s2_alias_index",
    "s2_alias_blob",
    "s3_day_effects",
    "s4_group_weights",
    "rng_event_alias_pick_group",
    "rng_event_alias_pick_site",
    "rng_event_cdn_edge_pick",
    "rng_trace_log",
    "rng_audit_log",
    "s5_selection_log",
    "s6_edge_log",
    "s7_audit_report",
    "validation_bundle_2B",
}
WORLD = {"n_merchants": 40, "roster_arrivals": 6000}


def _config(home: Path, pack: Path) -> dict:
    return {
        "resources": {
            "store": {"config": {"home": str(home), "policies": str(pack)}},
            "world": {"config": WORLD},
        }
    }


def _run(instance: dg.DagsterInstance, job: str, rc: dict, partition: str | None = None):
    result = defs.resolve_job_def(job).execute_in_process(
        run_config=rc, instance=instance, partition_key=partition
    )
    assert result.success
    return result


@pytest.fixture(scope="module")
def panel(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("dagster_panel")
    home, pack = root / "home", root / "pack"
    shutil.copytree(DEFAULT_PACK, pack, ignore=shutil.ignore_patterns("baseline"))
    instance = dg.DagsterInstance.ephemeral()
    rc = _config(home, pack)
    _run(instance, "observe_policies", rc)
    for seed in REQUIRED_SEEDS:
        _run(instance, "world_job", rc, str(seed))
    _run(instance, "gate_job", rc)
    first = _run(instance, "seed_job", rc, str(REQUIRED_SEEDS[0]))
    waiting = _run(instance, "certify_job", rc)
    for seed in REQUIRED_SEEDS[1:]:
        _run(instance, "seed_job", rc, str(seed))
    final = _run(instance, "certify_job", rc)
    return {
        "home": home,
        "pack": pack,
        "instance": instance,
        "rc": rc,
        "first": first,
        "waiting": waiting,
        "final": final,
    }


def test_asset_keys_are_the_dictionary_ids_and_jobs_resolve() -> None:
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys >= SPEC_KEYS | {"certification_2B", "upstream_world", "validation_bundle_1B"}
    for job in ("seed_job", "certify_job", "world_job", "gate_job", "observe_policies"):
        defs.resolve_job_def(job)
    assert defs.resolve_schedule_def("nightly_certification").cron_schedule == "0 2 * * *"
    defs.resolve_sensor_def("certification_cycle")


def test_seed_run_passes_every_structural_check(panel) -> None:
    evaluations = panel["first"].get_asset_check_evaluations()
    names = {e.check_name for e in evaluations}
    assert {"s5_two_draws_per_arrival", "s5_site_in_group", "s5_counters_increasing"} <= names
    assert {"s6_one_draw_per_virtual_arrival", "s2_blob_decodes_to_s1", "T_S4_05"} <= names
    structural = [e for e in evaluations if e.severity == dg.AssetCheckSeverity.ERROR]
    failed = {
        e.check_name
        for e in structural
        if not e.passed and not e.check_name.startswith(("T_S1", "T_S3", "T_S4_0"))
    }
    assert failed == set()


def test_single_seed_certify_waits_then_publishes_with_all_seeds(panel) -> None:
    waiting = panel["waiting"]
    assert not waiting.asset_materializations_for_node("s8_validation_bundle")
    home = SegmentStore(home=str(panel["home"]), policies=str(panel["pack"])).storage()
    mf = world_fingerprint(WorldSettings(**WORLD).config(), REQUIRED_SEEDS)
    bundle = home.path("validation_bundle_2B", {"manifest_fingerprint": mf})
    assert (bundle / "_passed.flag").is_file()
    assert verify_bundle(bundle) == []
    checks = {e.check_name: e.passed for e in panel["final"].get_asset_check_evaluations()}
    assert checks.get("bundle_hash_law") is True
    cert, cards, _pack = read_current_pack(home)
    assert sorted(int(c["seed"]) for c in cards) == sorted(REQUIRED_SEEDS)
    assert cert["missing_seeds"] == []
    assert cert["status"] in {"PASS_BPLUS", "PASS_B", "FAIL_REALISM", "INVALID_FOR_GRADING"}


def test_certifying_unchanged_inputs_twice_gives_the_same_pack(panel) -> None:
    home = SegmentStore(home=str(panel["home"]), policies=str(panel["pack"])).storage()
    before = read_current_pack(home)
    _run(panel["instance"], "certify_job", panel["rc"])
    after = read_current_pack(home)
    assert before[2] == after[2]  # the pack folder is named by its content digest
    assert json.dumps(before[0], sort_keys=True) == json.dumps(after[0], sort_keys=True)


def test_day_effect_edit_stales_s3_down_but_not_s1_s2(panel) -> None:
    policy = panel["pack"] / "day_effect_policy_v1.json"
    original = policy.read_bytes()
    doc = json.loads(original)
    doc["sigma_gamma_policy_v2"]["sigma_jitter_by_merchant"]["amplitude"] += 0.01
    doc["sha256_hex"] = policy_self_digest(doc)
    policy.write_text(json.dumps(doc, indent=2) + "\n")
    try:
        _run(panel["instance"], "observe_policies", panel["rc"])
        rows = {r.key: r for r in stale_report(defs, panel["instance"], "42")}
    finally:
        policy.write_bytes(original)
        _run(panel["instance"], "observe_policies", panel["rc"])
    assert rows["s1_site_weights"].label == "FRESH"
    assert rows["s2_alias_index"].label == "FRESH"
    assert rows["s0_gate_receipt_2B"].label == "STALE (seal)"
    assert rows["s3_day_effects"].label == "STALE"
    assert any("day_effect_policy_v1" in c for c in rows["s3_day_effects"].causes)
    for key in ("s4_group_weights", "rng_event_alias_pick_site", "s7_audit_report"):
        assert rows[key].label.startswith("STALE"), key
    assert rows["certification_2B"].label.startswith("STALE")


def test_cycle_walks_world_gate_states_certify() -> None:
    ok = dg.DagsterRunStatus.SUCCESS
    seeds = REQUIRED_SEEDS
    assert next_stage({}, seeds) == "world"
    assert next_stage({"world": [ok] * 3}, seeds) is None  # still running / not all started
    assert next_stage({"world": [ok] * 4}, seeds) == "gate"
    assert next_stage({"world": [ok] * 4, "gate": [dg.DagsterRunStatus.FAILURE]}, seeds) is None
    done = {"world": [ok] * 4, "gate": [ok], "states": [ok] * 4}
    assert next_stage(done, seeds) == "certify"
    assert next_stage({**done, "certify": [ok]}, seeds) is None
    requests = stage_requests("2026-11-27T0200", "states", seeds)
    assert [r.partition_key for r in requests] == [str(s) for s in seeds]
    assert len({r.run_key for r in requests}) == len(seeds)


def test_site_in_group_check_names_a_site_routed_to_another_group() -> None:
    import polars as pl

    from segment2b.assets.routing import site_in_group_violations
    from segment2b.core.routing_rng import site_id

    site_timezones = pl.DataFrame(
        {
            "merchant_id": pl.Series([7, 7], dtype=pl.UInt64),
            "legal_country_iso": ["US", "US"],
            "site_order": [1, 2],
            "tzid": ["America/New_York", "America/Chicago"],
        }
    )
    s1, s2 = site_id(7, "US", 1), site_id(7, "US", 2)
    routed = pl.DataFrame(
        {
            "arrival": [0, 1, 2],
            "merchant_id": pl.Series([7, 7, 7], dtype=pl.UInt64),
            "site_id": pl.Series([s1, s2, s1], dtype=pl.UInt64),
            "tz_group_id": ["America/New_York", "America/Chicago", "America/Chicago"],
        }
    )
    assert site_in_group_violations(routed.head(2), site_timezones) == []
    assert site_in_group_violations(routed, site_timezones) == [
        f"arrival 2: merchant 7 site {s1} not in America/Chicago"
    ]
