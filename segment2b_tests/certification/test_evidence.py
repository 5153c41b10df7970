"""Evidence pack: deterministic plots and Markdown, runtime table, immutability, locks,
retention pointers and prune (certification.md §8, §9; spec README §2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segment2b.certification import evidence
from segment2b.certification.evidence import (
    PLOT_NAMES,
    advance_pointers,
    certification_markdown,
    certification_path,
    hms,
    prune,
    read_pointer,
    render_seed_plots,
    runtime_report,
    scorecard_markdown,
    write_certification_pack,
    write_lock,
)
from segment2b.certification.scorecard import (
    FAIL_REALISM,
    PASS_B,
    PASS_BPLUS,
    SeedInputs,
    score_seed,
)
from segment2b.certification.verdict import certify
from segment2b.errors import SegmentError
from segment2b.storage.digests import folder_digest
from segment2b.storage.home import StorageHome
from segment2b_tests.certification.test_scorecard import (
    MF,
    PH,
    PINNED,
    good_inputs,
    run_id_of,
    s4_frame,
)

REQ = (42, 7)


@pytest.fixture
def home(tmp_path: Path) -> StorageHome:
    return StorageHome(root=tmp_path / "home", policy_root=tmp_path / "policies")


@pytest.fixture
def stub_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plots are covered by their own tests; elsewhere a stub keeps the suite fast."""
    monkeypatch.setattr(evidence, "render_seed_plots", lambda inputs: {"stub.png": b"png"})


def panel(**s4_by_seed: tuple[float, float]) -> list:
    return [
        good_inputs(
            seed, **({"s4": s4_frame(s4_by_seed[f"s{seed}"])} if f"s{seed}" in s4_by_seed else {})
        )
        for seed in REQ
    ]


# --------------------------------------------------------------------------------------------
# rendering


def test_plots_are_byte_identical_across_renders() -> None:
    first = render_seed_plots(good_inputs(42))
    second = render_seed_plots(good_inputs(42))
    assert list(first) == [f"{name}.png" for name in PLOT_NAMES]
    assert first == second
    for data in first.values():
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert b"Software" not in data and b"matplotlib" not in data.lower()
    empty = render_seed_plots(good_inputs(42, roster=None))  # "no data" panels still render
    assert empty["roster_arrivals_per_day.png"] != first["roster_arrivals_per_day.png"]


def test_scorecard_markdown_fixed_decimals() -> None:
    md = scorecard_markdown(score_seed(good_inputs()))
    assert md.startswith("# Segment 2B realism scorecard — seed 42\n")
    assert f"- run_id: `{run_id_of(42)}`" in md
    assert "| Axis | Value | B | B+ |" in md
    assert "| T-S1-03 s1_merchant_hhi_iqr | 0.160000 | PASS (>= 0.06) | PASS (>= 0.1) |" in md
    assert (
        "| T-S4-05 s4_mass_conservation (1 − mass_abs_error_max) | 1.000000000000 "
        "| PASS (<= 1e-12) | PASS (<= 1e-12) |"
    ) in md
    assert "| R-S8 | PASS | - |" in md
    assert "- horizon_span_days: 28\n" in md
    assert md.rstrip().endswith("**verdict**: PASS_BPLUS")


def test_certification_markdown_sections() -> None:
    cards = [score_seed(i) for i in panel(s7=(0.8, 0.2))]
    cert = certify(cards, pinned_policy_digests=PINNED, required_seeds=REQ)
    md = certification_markdown(cert, cards)
    assert "- status: **PASS_B**" in md
    assert "| Test | seed 42 | seed 7 |" in md
    assert "| T-S4-01 | PASS / PASS | PASS / FAIL |" in md
    assert "| R-S7 | PASS | PASS |" in md and "| P-COVERAGE | PASS | PASS |" in md
    assert "## Cross-seed stability" in md and "| s4_entropy |" in md
    assert f"| group_mix_regularizer_v1 | `{'3' * 64}` |" in md
    assert "- B+ shortfall: T-S4-01" in md
    assert "- freeze status if frozen: FROZEN_CERTIFIED_B" in md


# --------------------------------------------------------------------------------------------
# runtime (§9)


def test_runtime_report() -> None:
    windows = {
        "S0": (0.0, 1.0),
        "S1": (1.0, 4.0),
        "S2": (None, 5.0),  # missing start marker -> null row
        "S3": (4.0, 24.0),
        "S4": (24.0, 44.5),
        "S5": (44.5, 50.0),
        "S6": (50.0, 49.0),  # negative -> null row
    }
    rep = runtime_report(windows, run={"seed": 42}, counters={"S4": {"rows_written": 10}})
    table = {row["state"]: row for row in rep["timing"]["state_table"]}
    assert table["S2"]["elapsed_s"] is None and table["S6"]["elapsed_s"] is None
    assert table["S7"]["elapsed_s"] is None  # never logged
    assert rep["timing"]["segment_elapsed_s"] == 50.0
    assert rep["timing"]["segment_elapsed_hms"] == "00:00:50"
    assert table["S3"]["segment_share"] == pytest.approx(0.4)
    assert rep["timing"]["log_window"]["segment_window_elapsed_s"] == 50.0
    status = {s: b["status"] for s, b in rep["budgets"].items()}
    assert status["S0"] == "GREEN" and status["S3"] == "AMBER" and status["S2"] == "MISSING"
    assert [(h["rank"], h["state"]) for h in rep["hotspots"]] == [
        ("primary", "S4"),
        ("secondary", "S3"),
        ("closure", "S5"),
    ]
    assert rep["hotspots"][0]["evidence"] == {"rows_written": 10}
    assert rep["progression_gate"]["decision"] == "GO"
    assert rep["progression_gate"]["next_state"] == "S4"
    green = runtime_report({"S3": (0.0, 3.0)}, run={})
    assert green["progression_gate"]["decision"] == "HOLD"
    assert runtime_report({}, run={})["progression_gate"]["reason"] == "no state timings"
    assert hms(3725.4) == "01:02:05" and hms(0.5) == "00:00:01" and hms(None) is None


# --------------------------------------------------------------------------------------------
# the pack: layout, determinism, immutability, pointers


def test_pack_published_once_then_idempotent_and_immutable(
    home: StorageHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Real plots, rendered once per seed (render determinism has its own test above).
    rendered: dict[int, dict[str, bytes]] = {}

    def plots_once(inputs: SeedInputs) -> dict[str, bytes]:
        if inputs.seed not in rendered:
            rendered[inputs.seed] = render_seed_plots(inputs)
        return rendered[inputs.seed]

    monkeypatch.setattr(evidence, "render_seed_plots", plots_once)
    timings = {42: {"S3": (0.0, 30.0)}, 7: {"S3": (0.0, 3.0)}}
    kw = {"pinned_policy_digests": PINNED, "required_seeds": REQ, "timings": timings}
    first = write_certification_pack(home, panel(), **kw)
    pack = first.pack
    assert first.certification["status"] == PASS_BPLUS and pack.status == PASS_BPLUS
    assert pack.outcome == "published"
    run_set = f"7-{run_id_of(7)[:8]}_42-{run_id_of(42)[:8]}"
    assert pack.rel == (
        "reports/layer1/2B/certification/packs/phase=certification/"
        f"run_set={run_set}/pack={pack.digest[:16]}"
    )
    assert folder_digest(pack.path) == pack.digest
    names = {p.relative_to(pack.path).as_posix() for p in pack.path.rglob("*") if p.is_file()}
    for kind in ("certification", "seed_metrics", "policy_fingerprints", "runtime"):
        for ext in ("json", "md"):
            assert f"segment2b_certification_{kind}_{run_set}.{ext}" in names
    for seed in REQ:
        rid = run_id_of(seed)
        assert f"seeds/seed={seed}/segment2b_certification_scorecard_{rid}.json" in names
        assert f"seeds/seed={seed}/segment2b_certification_runtime_{rid}.md" in names
        for plot in PLOT_NAMES:
            assert f"seeds/seed={seed}/plots/{plot}.png" in names
    assert "pack_index.json" in names
    cert_json = pack.path / f"segment2b_certification_certification_{run_set}.json"
    text = cert_json.read_text()
    assert json.loads(text)["status"] == PASS_BPLUS
    assert text.startswith('{\n  "bplus_shortfall"')  # indent 2, sorted keys
    lane = json.loads((pack.path / f"segment2b_certification_runtime_{run_set}.json").read_text())
    assert lane["lane"]["elapsed_s"] == 33.0 and lane["lane"]["within_budget"] is True
    assert first.pointers == ("baseline", "current", "last_good")
    assert read_pointer(home, "current")["pack"] == pack.rel
    assert read_pointer(home, "certified") is None

    again = write_certification_pack(home, panel(), **kw)
    assert again.pack.outcome == "idempotent"
    assert again.pack.digest == pack.digest and again.pack.path == pack.path

    cert_json.write_bytes(b"{}\n")  # tampered evidence is never silently replaced
    with pytest.raises(SegmentError) as exc:
        write_certification_pack(home, panel(), **kw)
    assert exc.value.code == "2B-CERT-080"


def test_pointers_advance_by_status(home: StorageHome, stub_plots: None) -> None:
    kw = {"pinned_policy_digests": PINNED, "required_seeds": REQ}
    good = write_certification_pack(home, panel(), **kw)
    failing = write_certification_pack(home, panel(s7=(0.97, 0.03)), **kw)
    assert failing.certification["status"] == FAIL_REALISM
    assert failing.pointers == ("current",)
    assert read_pointer(home, "current")["pack"] == failing.pack.rel
    assert read_pointer(home, "last_good")["pack"] == good.pack.rel
    assert read_pointer(home, "baseline")["pack"] == good.pack.rel
    with pytest.raises(ValueError, match="unknown retention pointer"):
        evidence.write_pointer(home, "latest", {})
    assert advance_pointers(home, good.pack) == ("current", "last_good")


# --------------------------------------------------------------------------------------------
# locks


def test_lock_records_deltas_and_never_overwrites(home: StorageHome, stub_plots: None) -> None:
    kw = {"pinned_policy_digests": PINNED, "required_seeds": REQ}
    versions = {"42": {"S1": "v1", "S4": "v1"}, "7": {"S1": "v1", "S4": "v1"}}
    run1 = write_certification_pack(home, panel(), **kw)
    lock1 = write_lock(home, run1, data_versions=versions)
    doc1 = json.loads(lock1.path.read_bytes())
    assert lock1.rel == (
        f"reports/layer1/2B/certification/locks/run_set={run1.pack.run_set}/"
        f"pack={run1.pack.digest[:16]}/lock.json"
    )
    assert doc1["freeze_status"] == "FROZEN_CERTIFIED_BPLUS" == lock1.freeze_status
    assert doc1["pack"] == {"path": run1.pack.rel, "digest": run1.pack.digest}
    assert doc1["policy_digests"]["pinned"] == PINNED
    assert doc1["data_versions"] == versions
    assert doc1["previous_lock"] is None and doc1["metric_deltas"] is None
    assert doc1["metrics"]["seeds"]["7"]["T-S4-01"] == pytest.approx(0.6)
    assert read_pointer(home, "certified")["lock"] == lock1.rel

    run2 = write_certification_pack(home, panel(s7=(0.8, 0.2)), **kw)
    assert run2.certification["status"] == PASS_B
    lock2 = write_lock(home, run2, data_versions={**versions, "7": {"S1": "v1", "S4": "v2"}})
    doc2 = json.loads(lock2.path.read_bytes())
    assert doc2["freeze_status"] == "FROZEN_CERTIFIED_B"
    assert doc2["previous_lock"]["path"] == lock1.rel
    assert doc2["previous_lock"]["freeze_status"] == "FROZEN_CERTIFIED_BPLUS"
    assert doc2["metric_deltas"]["seeds"]["7"]["T-S4-01"] == pytest.approx(0.2)
    assert doc2["metric_deltas"]["seeds"]["42"]["T-S4-01"] == 0.0
    assert doc2["metric_deltas"]["seeds"]["7"]["floor"]["share_n_groups_eq_1"] == 0.0
    assert doc2["floor_movement"]["7"]["material"] is False
    assert read_pointer(home, "certified")["lock"] == lock2.rel

    # Re-locking is idempotent, even after `certified` moved on; changing content is refused.
    assert write_lock(home, run1, data_versions=versions).outcome == "idempotent"
    assert write_lock(home, run2, data_versions=doc2["data_versions"]).outcome == "idempotent"
    with pytest.raises(SegmentError) as exc:
        write_lock(home, run1, data_versions={"42": {"S1": "other"}})
    assert exc.value.code == "2B-CERT-080"


# --------------------------------------------------------------------------------------------
# prune


def _put(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _log(home: StorageHome, run_id: str) -> Path:
    return (
        home.root
        / f"logs/layer1/2B/rng/audit/seed=42/parameter_hash={PH}/run_id={run_id}"
        / "rng_audit_log.jsonl"
    )


def test_prune_dry_run_then_real(home: StorageHome, stub_plots: None) -> None:
    kw = {"pinned_policy_digests": PINNED, "required_seeds": REQ}
    first = write_certification_pack(home, panel(), **kw)  # baseline, last_good
    middle = write_certification_pack(home, panel(s7=(0.97, 0.03)), **kw)  # superseded below
    last = write_certification_pack(home, panel(s42=(0.97, 0.03)), **kw)  # current
    assert len({first.pack.rel, middle.pack.rel, last.pack.rel}) == 3

    live, orphan, receipted = run_id_of(42), "d" * 32, "e" * 32
    for rid in (live, orphan, receipted):
        _put(_log(home, rid), b"x" * 100)
    _put(
        home.root / f"runs/{receipted}/run_receipt.json", json.dumps({"run_id": receipted}).encode()
    )
    _put(home.tmp / "s3_0123" / "part.parquet", b"y" * 10)
    _put(home.root / f"data/layer1/2B/s1_site_weights/_tmp.{'1' * 32}" / "f", b"z" * 7)
    _put(certification_path(home, "pointers") / f".current.json.{'a' * 32}.tmp", b"w" * 3)

    expected = [
        ("run_log", _log(home, orphan).parent),
        ("staging", home.root / f"data/layer1/2B/s1_site_weights/_tmp.{'1' * 32}"),
        ("pack", middle.pack.path),
        ("staging", certification_path(home, "pointers") / f".current.json.{'a' * 32}.tmp"),
        ("staging", home.tmp / "s3_0123"),
    ]
    want = sorted((k, p.relative_to(home.root).as_posix()) for k, p in expected)

    dry = prune(home)
    assert dry.dry_run is True
    assert sorted((i.kind, i.path) for i in dry.items) == want
    pack_bytes = sum(p.stat().st_size for p in middle.pack.path.rglob("*") if p.is_file())
    assert dry.bytes_freed == 100 + 7 + pack_bytes + 3 + 10
    assert all((home.root / i.path).exists() for i in dry.items)  # nothing deleted
    assert live in dry.live_run_ids and receipted in dry.live_run_ids

    real = prune(home, dry_run=False)
    assert [(i.kind, i.path) for i in real.items] == [(i.kind, i.path) for i in dry.items]
    assert not any((home.root / i.path).exists() for i in real.items)
    for kept in (first.pack.path, last.pack.path, _log(home, live), _log(home, receipted)):
        assert kept.exists()
    assert home.tmp.is_dir()  # the staging root itself stays
    assert prune(home).items == ()

    # With the current runs named explicitly, a receipted but superseded run's logs go too.
    narrowed = prune(home, dry_run=False, current_run_ids=[])
    assert [(i.kind, i.path) for i in narrowed.items] == [
        ("run_log", _log(home, receipted).parent.relative_to(home.root).as_posix())
    ]
    assert _log(home, live).exists()  # still named by the pointers' run maps
    assert MF  # the fixture's fingerprint (kept in scope for path readers)
