"""S8 validation bundle: seed panel, WAITING, bundle-local layout, hash law, write-once."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from segment2b.bundle_verify import FLAG_NAME, INDEX_NAME, check_bundle, verify_bundle
from segment2b.errors import SegmentError
from segment2b.identity import run_id as derive_run_id
from segment2b.policy.store import DEFAULT_PACK, load_pack, parameter_hash
from segment2b.states.s0_gate import run_s0
from segment2b.states.s1_site_weights import run_s1
from segment2b.states.s2_alias_tables import run_s2
from segment2b.states.s3_day_effects import run_s3
from segment2b.states.s4_group_weights import run_s4
from segment2b.states.s7_audit import run_s7
from segment2b.states.s8_validation_bundle import (
    S8Result,
    discover_seeds,
    index_bytes,
    run_s8,
    seed_order,
    verify_s8_published,
)
from segment2b.storage.digests import folder_files
from segment2b.storage.home import StorageHome
from segment2b.world.outputs import (
    manifest_fingerprint,
    roster_jsonl,
    run_created_utc,
    world_created_utc,
    write_gate_bundle,
    write_roster,
    write_run_receipt,
    write_seed_world,
)
from segment2b_tests.fixtures import ROSTER_SETTINGS, START, tiny_frames

PANEL = (42, 7)


@dataclass(frozen=True)
class Panel:
    home: StorageHome
    manifest_fingerprint: str
    seeds: tuple[int, ...]

    def tokens(self, seed: int) -> dict[str, str]:
        return {"seed": str(seed), "manifest_fingerprint": self.manifest_fingerprint}

    @property
    def bundle(self) -> Path:
        return self.home.path(
            "validation_bundle_2B", {"manifest_fingerprint": self.manifest_fingerprint}
        )

    def s8(self, seeds: tuple[int, ...] | None = None) -> S8Result:
        return run_s8(
            self.home,
            manifest_fingerprint=self.manifest_fingerprint,
            required_seeds=list(seeds or self.seeds),
        )


def build_panel(root: Path, seeds: tuple[int, ...] = PANEL) -> Panel:
    """The tiny world for several seeds under one manifest, run through S0..S4 and S7."""
    policy_root = root / "policies"
    shutil.copytree(DEFAULT_PACK, policy_root, ignore=shutil.ignore_patterns("baseline"))
    home = StorageHome(root=root / "home", policy_root=policy_root)
    knobs = {"generator_version": "tiny-test", "profile": "tiny"}
    mf = manifest_fingerprint(knobs, list(seeds), "0" * 64)
    loc, tz, merchants, arrivals = tiny_frames()
    ph = parameter_hash(load_pack(policy_root).digests(), ROSTER_SETTINGS)
    for seed in seeds:
        write_seed_world(
            home,
            seed=seed,
            manifest_fingerprint=mf,
            created_utc=world_created_utc(START),
            site_locations=loc,
            site_timezones=tz,
            merchants=merchants,
            arrivals=arrivals,
            report={"profile": "tiny"},
        )
    write_gate_bundle(
        home,
        manifest_fingerprint=mf,
        seeds=list(seeds),
        knobs=knobs,
        site_counts={s: loc.height for s in seeds},
        tz_cache=None,
    )
    for seed in seeds:
        rid = derive_run_id(mf, seed, ph)
        write_run_receipt(
            home,
            run_id=rid,
            seed=seed,
            parameter_hash=ph,
            manifest_fingerprint=mf,
            created_utc=run_created_utc(START),
        )
        tokens = {
            "seed": str(seed),
            "manifest_fingerprint": mf,
            "parameter_hash": ph,
            "run_id": rid,
        }
        write_roster(home, tokens, roster_jsonl(arrivals))
        run_s0(home, rid)
        for state in (run_s1, run_s2, run_s3, run_s4, run_s7):
            state(home, seed=seed, manifest_fingerprint=mf)
    return Panel(home, mf, tuple(seeds))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("panel")
    build_panel(root)
    return root


@pytest.fixture
def panel(template: Path, tmp_path: Path) -> Panel:
    shutil.copytree(template, tmp_path / "p")
    home = StorageHome(root=tmp_path / "p" / "home", policy_root=tmp_path / "p" / "policies")
    knobs = {"generator_version": "tiny-test", "profile": "tiny"}
    return Panel(home, manifest_fingerprint(knobs, list(PANEL), "0" * 64), PANEL)


def _code(fn: Callable[[], object]) -> str:
    with pytest.raises(SegmentError) as info:
        fn()
    return info.value.code


# --- seeds ------------------------------------------------------------------------------------


def test_seed_order_is_ascii_of_decimal_strings() -> None:
    assert seed_order([7, 42, 100, 42]) == [100, 42, 7]


def test_discovery_is_the_intersection(panel: Panel) -> None:
    disc = discover_seeds(panel.home, panel.manifest_fingerprint)
    assert disc.discovered == (42, 7) and disc.partial == ()
    for part in panel.home.path("s3_day_effects", panel.tokens(7)).glob("*.parquet"):
        part.unlink()
    disc = discover_seeds(panel.home, panel.manifest_fingerprint)
    assert disc.discovered == (42,) and disc.partial == (7,)


@pytest.mark.parametrize("token", ["007", "", "-1", "18446744073709551616", "x"])
def test_non_canonical_seed_token_is_030(panel: Panel, token: str) -> None:
    rel = panel.home.rel(
        "s2_alias_index", {"seed": token, "manifest_fingerprint": panel.manifest_fingerprint}
    )
    path = panel.home.root / rel
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    assert _code(panel.s8) == "2B-S8-030"


def test_empty_panel_is_030(panel: Panel) -> None:
    assert _code(
        lambda: run_s8(
            panel.home, manifest_fingerprint=panel.manifest_fingerprint, required_seeds=[]
        )
    ) == ("2B-S8-030")


# --- publish ----------------------------------------------------------------------------------


def test_publish_bundle_local_layout(panel: Panel) -> None:
    result = panel.s8()
    assert result.status == "PUBLISHED" and result.waiting_for == ()
    assert result.outcome is not None
    root = panel.bundle
    members = [
        "evidence/s0/seed=42/s0_gate_receipt_2B.json",
        "evidence/s0/seed=42/sealed_inputs_2B.json",
        "evidence/s0/seed=7/s0_gate_receipt_2B.json",
        "evidence/s0/seed=7/sealed_inputs_2B.json",
        "reports/seed=42/s7_audit_report.json",
        "reports/seed=7/s7_audit_report.json",
    ]
    assert folder_files(root) == sorted([*members, INDEX_NAME, FLAG_NAME])
    # Byte copies of the sources.
    for seed in PANEL:
        t = panel.tokens(seed)
        for dataset, rel in (
            ("s0_gate_receipt_2B", f"evidence/s0/seed={seed}/s0_gate_receipt_2B.json"),
            ("sealed_inputs_2B", f"evidence/s0/seed={seed}/sealed_inputs_2B.json"),
            ("s7_audit_report", f"reports/seed={seed}/s7_audit_report.json"),
        ):
            assert (root / rel).read_bytes() == panel.home.path(dataset, t).read_bytes()
    # index.json: canonical H6, rows sorted bytewise, flag/index excluded.
    idx = (root / INDEX_NAME).read_bytes()
    rows = json.loads(idx)
    assert [r["path"] for r in rows] == members
    assert idx == index_bytes(rows) and not idx.endswith(b"\n")
    for r in rows:
        assert hashlib.sha256((root / r["path"]).read_bytes()).hexdigest() == r["sha256_hex"]
    # _passed.flag: H3 over the members in path order.
    digest = hashlib.sha256(b"".join((root / p).read_bytes() for p in members)).hexdigest()
    assert (root / FLAG_NAME).read_bytes() == f"sha256_hex = {digest}\n".encode()
    assert (
        verify_bundle(root) == []
        and verify_s8_published(panel.home, manifest_fingerprint=panel.manifest_fingerprint) == []
    )
    report = result.outcome.report
    assert report["component"] == "2B.S8"
    assert report["seed_coverage"]["seeds_discovered"] == ["42", "7"]
    assert report["bundle"]["bundle_digest"] == digest
    assert report["bundle"]["publish_path"].endswith(
        f"manifest_fingerprint={panel.manifest_fingerprint}/"
    )
    assert report["summary"] == {"overall_status": "PASS", "warn_count": 0, "fail_count": 0}
    assert [v["id"] for v in report["validators"]] == [f"V-{i:02d}" for i in range(1, 13)]
    assert not any(p.name.startswith("s8_") for p in panel.home.tmp.iterdir())  # staging removed


def test_rerun_is_an_idempotent_noop(panel: Panel) -> None:
    first = panel.s8()
    before = {p: (panel.bundle / p).read_bytes() for p in folder_files(panel.bundle)}
    again = panel.s8()
    assert again.status == "IDEMPOTENT"
    assert {p: (panel.bundle / p).read_bytes() for p in folder_files(panel.bundle)} == before
    assert first.outcome is not None and again.outcome is not None
    assert again.outcome.extras["bundle_digest"] == first.outcome.extras["bundle_digest"]
    assert again.outcome.data_version == first.outcome.data_version


def test_panel_subset_bundles_only_the_panel(
    panel: Panel, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        result = panel.s8((42,))
    assert result.status == "PUBLISHED"
    assert "outside the panel" in caplog.text
    assert not any("seed=7" in p for p in folder_files(panel.bundle))


# --- not ready / failing seeds ----------------------------------------------------------------


def test_missing_s7_report_waits_and_names_the_seed(panel: Panel) -> None:
    panel.home.path("s7_audit_report", panel.tokens(7)).unlink()
    result = panel.s8()
    assert result.status == "WAITING" and result.waiting_for == (7,)
    assert result.outcome is None
    assert "7" in result.message and "s7_audit_report" in result.reasons[7]
    assert not panel.bundle.exists()


def test_undiscovered_seed_waits(panel: Panel) -> None:
    for part in panel.home.path("s4_group_weights", panel.tokens(42)).glob("*.parquet"):
        part.unlink()
    result = panel.s8((42, 7, 101))
    assert result.status == "WAITING" and result.waiting_for == (101, 42)
    assert "s4_group_weights" in result.reasons[42]
    assert not panel.bundle.exists()


def test_fail_report_is_031_even_when_other_seeds_wait(panel: Panel) -> None:
    t = panel.tokens(7)
    blob = panel.home.path("s2_alias_blob", t)
    data = bytearray(blob.read_bytes())
    data[20] ^= 0x01
    blob.write_bytes(bytes(data))
    with pytest.raises(SegmentError):
        run_s7(panel.home, seed=7, manifest_fingerprint=panel.manifest_fingerprint)
    assert (
        json.loads(panel.home.path("s7_audit_report", t).read_bytes())["summary"]["overall_status"]
        == "FAIL"
    )
    assert _code(lambda: panel.s8((42, 7, 101))) == "2B-S8-031"
    assert not panel.bundle.exists()


def test_invalid_report_is_031(panel: Panel) -> None:
    path = panel.home.path("s7_audit_report", panel.tokens(42))
    doc = json.loads(path.read_bytes())
    doc["extra"] = 1
    path.write_text(json.dumps(doc))
    assert _code(panel.s8) == "2B-S8-031"


def test_stale_report_after_reseal_is_061(panel: Panel) -> None:
    path = panel.home.path("s0_gate_receipt_2B", panel.tokens(7))
    doc = json.loads(path.read_bytes())
    doc["verified_at_utc"] = "2026-02-01T00:00:00.000000Z"
    path.write_text(json.dumps(doc))
    assert _code(panel.s8) == "2B-S8-061"


def test_policy_changed_after_seal_is_033(panel: Panel) -> None:
    policy = panel.home.path("route_rng_policy_v1")
    policy.write_bytes(policy.read_bytes() + b" ")
    assert _code(panel.s8) == "2B-S8-033"
    assert not panel.bundle.exists()


def test_missing_s0_receipt_is_001(panel: Panel) -> None:
    panel.home.path("s0_gate_receipt_2B", panel.tokens(42)).unlink()
    assert _code(panel.s8) == "2B-S8-001"


# --- after publishing -------------------------------------------------------------------------


def test_flipped_member_byte_fails_verification_and_rerun(panel: Panel) -> None:
    panel.s8()
    member = panel.bundle / "reports/seed=7/s7_audit_report.json"
    data = bytearray(member.read_bytes())
    data[10] ^= 0x01
    member.write_bytes(bytes(data))
    messages = verify_s8_published(panel.home, manifest_fingerprint=panel.manifest_fingerprint)
    assert [m[:11] for m in messages] == ["[2B-S8-050]", "[2B-S8-051]"]
    assert "reports/seed=7/s7_audit_report.json" in messages[0]
    assert not check_bundle(panel.bundle).ok
    assert _code(panel.s8) == "2B-S8-080"  # never overwritten
    assert member.read_bytes() == bytes(data)


def test_renamed_member_is_detected_by_path_digest_pairs(panel: Panel) -> None:
    panel.s8()
    a = panel.bundle / "evidence/s0/seed=7/sealed_inputs_2B.json"
    a.rename(a.with_name("sealed_inputs_2B.json.bak"))
    assert _code(panel.s8) == "2B-S8-080"


def test_adding_a_seed_later_conflicts(panel: Panel) -> None:
    panel.s8((42,))
    assert _code(panel.s8) == "2B-S8-080"
