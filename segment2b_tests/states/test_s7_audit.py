"""S7 audit: validators V-01..V-18, the FAIL-report posture, byte-stable reports, router logs.

Two harnesses: ``pure`` builds S7 inputs in memory (S1 → ``build_s2`` blob/index, synthetic
S3/S4) for ``build_s7``; ``through_s4`` runs S0..S4 on the tiny run for ``run_s7``, optionally
with synthetic, schema-conformant S5/S6 logs written here (the S5/S6 modules are not used).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from segment2b.catalogue.schemas import json_errors
from segment2b.core.routing_rng import site_id
from segment2b.errors import SegmentError
from segment2b.policy.models import AliasLayoutPolicyV1
from segment2b.policy.store import DEFAULT_PACK, load_pack
from segment2b.states.s0_gate import run_s0
from segment2b.states.s1_site_weights import run_s1
from segment2b.states.s2_alias_tables import build_s2, run_s2
from segment2b.states.s3_day_effects import run_s3
from segment2b.states.s4_group_weights import run_s4
from segment2b.states.s7_audit import (
    FAMILIES,
    NOTE_BOTH_ABSENT,
    NOTE_ROUTER_ABSENT,
    NOTE_S5_ABSENT,
    NOTE_S6_ABSENT,
    VALIDATOR_CODES,
    AuditError,
    AuditLedger,
    S7Build,
    S7Inputs,
    assemble_report,
    build_s7,
    row_rules,
    run_s7,
    zero_metrics,
)
from segment2b.storage.canonical import pretty_json
from segment2b_tests.fixtures import TinyRun, build_tiny_run, tiny_frames

CREATED = "2026-01-01T00:00:00.000000Z"
MF = "ab" * 32
ALL_IDS = [f"V-{i:02d}" for i in range(1, 19)]


def codes_of(build_or_report: S7Build | dict[str, Any]) -> dict[str, tuple[str, list[str]]]:
    report = build_or_report.report if isinstance(build_or_report, S7Build) else build_or_report
    return {c["id"]: (c["status"], c["codes"]) for c in report["checks"]}


def failing(report: dict[str, Any] | Any) -> tuple[str, list[str]]:
    report = report.report if isinstance(report, S7Build) else report
    fails = [c for c in report["checks"] if c["status"] == "FAIL"]
    assert len(fails) == 1 and report["summary"]["overall_status"] == "FAIL"
    return fails[0]["id"], fails[0]["codes"]


# --- pure harness -----------------------------------------------------------------------------

N_PURE = 40  # > 32 so that V-06 can see rows outside the decoded sample


def _pack() -> Any:
    return load_pack(DEFAULT_PACK)


def pure_inputs(n: int = N_PURE) -> S7Inputs:
    """In-memory S1/S2/S3/S4 for ``n`` merchants × 2 days × 2 groups (tz A, B)."""
    pack = _pack()
    alias = pack["alias_layout_policy_v1"]
    model = alias.model
    assert isinstance(model, AliasLayoutPolicyV1)
    mids = np.arange(1, n + 1, dtype=np.uint64) * np.uint64(1000) + np.uint64(2**63)
    rows = []
    for m in mids.tolist():
        w = [0.5, 0.3, 0.2] if m % 2 else [0.6, 0.4]
        rows += [(m, "FR", k + 1, p) for k, p in enumerate(w)]
    s1 = pl.DataFrame(
        rows, schema=["merchant_id", "legal_country_iso", "site_order", "p_weight"], orient="row"
    ).with_columns(
        pl.col("merchant_id").cast(pl.UInt64),
        pl.col("site_order").cast(pl.Int32),
        quantised_bits=pl.lit(model.quantised_bits, dtype=pl.Int32),
    )
    s2 = build_s2(s1, model, created_utc=CREATED, policy_digest=alias.sha256_hex)
    days = [dt.date(2026, 1, 1), dt.date(2026, 1, 2)]
    grid = [(m, d, g) for m in mids.tolist() for d in days for g in ("Europe/A", "Europe/B")]
    s4 = pl.DataFrame(
        {
            "merchant_id": pl.Series([r[0] for r in grid], dtype=pl.UInt64),
            "utc_day": [r[1] for r in grid],
            "tz_group_id": [r[2] for r in grid],
            "p_group": [0.25 if r[2].endswith("A") else 0.75 for r in grid],
            "base_share": [0.5] * len(grid),
            "gamma": [1.0 + 0.001 * (i % 7) for i in range(len(grid))],
        }
    )
    s3 = s4.select("merchant_id", "utc_day", "tz_group_id", "gamma")
    return S7Inputs(
        seed=42,
        manifest_fingerprint=MF,
        created_utc=CREATED,
        catalogue_resolution={"dictionary_version": "v1.1.0", "registry_version": "v1.0.0"},
        alias_policy=model,
        alias_policy_digest=alias.sha256_hex,
        route_policy=pack["route_rng_policy_v1"].document,
        edge_policy=pack["virtual_edge_policy_v1"].document,
        index_bytes=s2.index_bytes,
        blob=s2.blob,
        blob_sha256=hashlib.sha256(s2.blob).hexdigest(),
        s1=s1.lazy(),
        s3=s3.lazy(),
        s4=s4.lazy(),
        inputs_digest={},
        report_rel=f"data/layer1/2B/s7_audit_report/seed=42/manifest_fingerprint={MF}/x.json",
    )


@pytest.fixture(scope="module")
def pure() -> S7Inputs:
    return pure_inputs()


def with_index(inputs: S7Inputs, edit: Callable[[dict[str, Any]], None]) -> S7Inputs:
    doc = json.loads(inputs.index_bytes)
    edit(doc)
    return dataclasses.replace(inputs, index_bytes=json.dumps(doc).encode())


def with_frame(
    inputs: S7Inputs, name: str, edit: Callable[[pl.DataFrame], pl.DataFrame]
) -> S7Inputs:
    frame = getattr(inputs, name).collect()
    return dataclasses.replace(inputs, **{name: edit(frame).lazy()})


def test_pure_pass(pure: S7Inputs) -> None:
    build = build_s7(pure)
    assert build.passed and build.report["summary"] == {
        "overall_status": "PASS",
        "warn_count": 0,
        "fail_count": 0,
    }
    assert [c["id"] for c in build.report["checks"]] == ALL_IDS
    m = build.metrics
    assert (m["merchants_total"], m["groups_total"], m["days_total"]) == (N_PURE, 2, 2)
    assert 0 < m["alias_decode_max_abs_delta"] <= 1.2e-07
    assert m["max_abs_mass_error_s4"] == 0.0
    assert len(build.samples["alias_decode"]) == 32
    assert build.samples["alias_decode"][0]["merchant_id"] == 2**63 + 1000
    assert len(build.samples["group_norm"]) == 32
    assert json_errors("schemas.2B.yaml#/validation/s7_audit_report_v1", build.report) == []


def test_pure_report_bytes_follow_74(pure: S7Inputs) -> None:
    build = build_s7(pure)
    assert build.report_bytes == pretty_json(dict(build.report))
    assert build.report_bytes.endswith(b"}\n") and build.report_bytes.isascii()
    assert build_s7(pure).report_bytes == build.report_bytes


# V-04..V-07 -----------------------------------------------------------------------------------


def _row(doc: dict[str, Any], k: int) -> dict[str, Any]:
    return sorted(doc["merchants"], key=lambda r: r["merchant_id"])[k]


@pytest.mark.parametrize(
    ("edit", "vid", "code"),
    [
        (lambda d: d.__setitem__("merchants_count", 3), "V-04", "200"),
        (lambda d: d["merchants"].append(dict(d["merchants"][0])), "V-04", "200"),
        (lambda d: d.pop("policy_id"), "V-04", "200"),
        (lambda d: _row(d, 35).__setitem__("merchant_id", 0), "V-04", "200"),
        (lambda d: _row(d, 35).__setitem__("offset", -8), "V-04", "200"),
        (lambda d: d.__setitem__("blob_size_bytes", 8), "V-04", "201"),
        (lambda d: _row(d, 35).__setitem__("length", 8), "V-04", "201"),
        (lambda d: _row(d, 0).__setitem__("checksum", "0" * 64), "V-04", "201"),
        (lambda d: _row(d, 0).__setitem__("sites", 7), "V-04", "201"),
        (lambda d: d.__setitem__("blob_sha256", "0" * 64), "V-05", "202"),
        (lambda d: d.__setitem__("policy_digest", "0" * 64), "V-05", "202"),
        (lambda d: d.__setitem__("alignment_bytes", 16), "V-05", "205"),
        (lambda d: d.__setitem__("layout_version", "x"), "V-05", "205"),
        (lambda d: _row(d, 35).__setitem__("quantised_bits", 32), "V-05", "205"),
        # Rows outside the 32 decoded merchants: only V-06 sees them. Shifting a packed
        # slice by 4 both misaligns it and makes it overlap its successor.
        (lambda d: _row(d, 35).__setitem__("offset", _row(d, 35)["offset"] + 4), "V-06", "203,204"),
        (lambda d: _row(d, 35).__setitem__("offset", _row(d, 34)["offset"]), "V-06", "203"),
        (lambda d: _row(d, 39).__setitem__("offset", d["blob_size_bytes"]), "V-06", "203"),
    ],
)
def test_s2_index_faults(
    pure: S7Inputs, edit: Callable[[dict[str, Any]], None], vid: str, code: str
) -> None:
    build = build_s7(with_index(pure, edit))
    expected = [f"2B-S7-{c}" for c in code.split(",")]
    assert failing(build) == (vid, expected)
    assert build.failure is not None and build.failure.codes[0] == expected[0]
    ids = [c["id"] for c in build.report["checks"]]
    assert ids == ALL_IDS[: ALL_IDS.index(vid) + 1]  # nothing unevaluated is listed


def _patched_slice(inputs: S7Inputs, k: int, patch: Callable[[bytearray, int], None]) -> S7Inputs:
    """Rewrite merchant k's slice bytes and re-seal its checksum and the blob digest."""
    doc = json.loads(inputs.index_bytes)
    row = _row(doc, k)
    blob = bytearray(inputs.blob)
    patch(blob, row["offset"])
    payload = bytes(blob[row["offset"] : row["offset"] + 16 + 8 * row["sites"]])
    row["checksum"] = hashlib.sha256(payload).hexdigest()
    doc["blob_sha256"] = hashlib.sha256(bytes(blob)).hexdigest()
    return dataclasses.replace(
        inputs,
        index_bytes=json.dumps(doc).encode(),
        blob=bytes(blob),
        blob_sha256=doc["blob_sha256"],
    )


def _set_u32(blob: bytearray, at: int, value: int) -> None:
    blob[at : at + 4] = int(value).to_bytes(4, "little")


@pytest.mark.parametrize(
    ("patch", "vid", "code"),
    [
        (lambda b, o: _set_u32(b, o + 4, 24), "V-05", "205"),  # header prob_qbits != 32
        (lambda b, o: _set_u32(b, o + 8, 1), "V-04", "201"),  # reserved word
        (lambda b, o: _set_u32(b, o + 24, 1), "V-07", "206"),  # prob_q of slot 1 (aliased)
        (lambda b, o: _set_u32(b, o + 20, 9), "V-07", "206"),  # alias index ≥ n
    ],
)
def test_slice_content_faults(
    pure: S7Inputs, patch: Callable[[bytearray, int], None], vid: str, code: str
) -> None:
    build = build_s7(_patched_slice(pure, 3, patch))
    assert failing(build) == (vid, [f"2B-S7-{code}"])


def test_blob_digest_covers_unsampled_slices(pure: S7Inputs) -> None:
    doc = json.loads(pure.index_bytes)
    row = _row(doc, 38)
    blob = bytearray(pure.blob)
    blob[row["offset"] + 17] ^= 0xFF
    build = build_s7(dataclasses.replace(pure, blob=bytes(blob), blob_sha256="1" * 64))
    assert failing(build) == ("V-05", ["2B-S7-202"])


def test_decode_against_s1_catches_reordered_weights(pure: S7Inputs) -> None:
    def swap(frame: pl.DataFrame) -> pl.DataFrame:
        first = int(frame["merchant_id"][0])
        return frame.with_columns(
            pl.when(pl.col("merchant_id") == first)
            .then(pl.col("p_weight").reverse().over("merchant_id"))
            .otherwise(pl.col("p_weight"))
            .alias("p_weight")
        )

    build = build_s7(with_frame(pure, "s1", swap))
    assert failing(build) == ("V-07", ["2B-S7-206"])
    assert build.metrics["alias_decode_max_abs_delta"] > 0.2


def test_decode_row_count_must_match_slots(pure: S7Inputs) -> None:
    build = build_s7(with_frame(pure, "s1", lambda f: f.slice(1)))
    assert failing(build) == ("V-07", ["2B-S7-206"])


# V-08..V-11 -----------------------------------------------------------------------------------


def _bump(col: str, by: float, *, row: int = 5) -> Callable[[pl.DataFrame], pl.DataFrame]:
    def edit(frame: pl.DataFrame) -> pl.DataFrame:
        idx = pl.int_range(pl.len()) == row
        return frame.with_columns(pl.when(idx).then(pl.col(col) + by).otherwise(pl.col(col)))

    return edit


@pytest.mark.parametrize(
    ("name", "edit", "vid", "codes"),
    [
        ("s3", lambda f: f.slice(1), "V-08", ["300"]),
        ("s4", lambda f: f.filter(pl.col("utc_day") != dt.date(2026, 1, 2)), "V-08", ["300"]),
        (
            "s3",
            lambda f: f.with_columns(
                pl.when(pl.int_range(pl.len()) == 0)
                .then(pl.lit("Europe/C"))
                .otherwise(pl.col("tz_group_id"))
                .alias("tz_group_id")
            ),
            "V-08",
            ["300"],
        ),
        ("s3", _bump("gamma", 5e-16), "V-09", ["301"]),
        ("s4", _bump("p_group", 1e-11), "V-10", ["302"]),
        ("s4", lambda f: pl.concat([f, f.slice(0, 1)]), "V-10", ["302"]),
        ("s3", lambda f: pl.concat([f, f.slice(0, 1)]), "V-11", ["303"]),
        ("s4", _bump("base_share", 1e-11), "V-11", ["304"]),
    ],
)
def test_s3_s4_faults(
    pure: S7Inputs,
    name: str,
    edit: Callable[[pl.DataFrame], pl.DataFrame],
    vid: str,
    codes: list[str],
) -> None:
    build = build_s7(with_frame(pure, name, edit))
    assert failing(build) == (vid, [f"2B-S7-{c}" for c in codes])
    context = next(c for c in build.report["checks"] if c["id"] == vid)["context"]
    assert context["reason"]


def test_s3_s4_rows_out_of_pk_order_take_the_general_path_with_the_same_result(
    pure: S7Inputs,
) -> None:
    from segment2b.states import s7_audit

    s3, s4 = pure.s3.collect(), pure.s4.collect()
    assert s7_audit._pk_aligned(s3, s4)
    assert not s7_audit._pk_aligned(s3.reverse(), s4.reverse())  # keys equal, order not PK
    assert not s7_audit._pk_aligned(s3.slice(1), s4.slice(1).reverse())
    doubled = pl.concat([s4.head(1), s4])  # equal keys row for row, but a key repeats
    assert not s7_audit._pk_aligned(pl.concat([s3.head(1), s3]), doubled)
    in_place = build_s7(pure)
    general = build_s7(
        with_frame(with_frame(pure, "s3", lambda f: f.reverse()), "s4", lambda f: f.reverse())
    )
    assert in_place.passed and general.passed
    assert in_place.metrics == general.metrics


def test_mass_tolerance_is_1e12(pure: S7Inputs) -> None:
    assert build_s7(with_frame(pure, "s4", _bump("p_group", 5e-13))).passed


def test_fail_report_keeps_metrics_computed_so_far(pure: S7Inputs) -> None:
    build = build_s7(with_frame(pure, "s4", _bump("p_group", 1e-6)))
    assert build.metrics["alias_decode_max_abs_delta"] > 0
    assert build.metrics["max_abs_mass_error_s4"] == pytest.approx(1e-6)
    assert build.metrics["merchants_total"] == 0  # computed after V-11


# V-17 -----------------------------------------------------------------------------------------


def test_v17_created_utc_must_equal_s0() -> None:
    ledger = AuditLedger()
    for vid in ALL_IDS[:16]:
        ledger.passed(vid)
    report, _ = assemble_report(
        seed=42,
        manifest_fingerprint=MF,
        created_utc=CREATED,
        s0_created_utc="2026-01-02T00:00:00.000000Z",
        catalogue_resolution={"dictionary_version": "a", "registry_version": "b"},
        inputs_digest={},
        metrics=zero_metrics(),
        ledger=ledger,
        report_rel=f"data/x/seed=42/manifest_fingerprint={MF}/r.json",
    )
    assert failing(report) == ("V-17", ["2B-S7-503"])
    assert "V-18" not in codes_of(report)


def test_v17_path_tokens() -> None:
    ledger = AuditLedger()
    ledger.passed("V-01")
    report, _ = assemble_report(
        seed=42,
        manifest_fingerprint=MF,
        created_utc=CREATED,
        s0_created_utc=CREATED,
        catalogue_resolution={"dictionary_version": "a", "registry_version": "b"},
        inputs_digest={},
        metrics=zero_metrics(),
        ledger=ledger,
        report_rel=f"data/x/seed=7/manifest_fingerprint={MF}/r.json",
    )
    assert failing(report) == ("V-17", ["2B-S7-503"])


# --- runner on the tiny run -------------------------------------------------------------------


@pytest.fixture
def through_s4(tmp_path: Path) -> TinyRun:
    run = build_tiny_run(tmp_path)
    run_s0(run.home, run.run_id)
    for state in (run_s1, run_s2, run_s3, run_s4):
        state(run.home, seed=run.seed, manifest_fingerprint=run.manifest_fingerprint)
    return run


def _kw(run: TinyRun) -> dict[str, Any]:
    return {"seed": run.seed, "manifest_fingerprint": run.manifest_fingerprint}


def _tokens(run: TinyRun) -> dict[str, str]:
    return {"seed": str(run.seed), "manifest_fingerprint": run.manifest_fingerprint}


def _published(run: TinyRun) -> dict[str, Any]:
    return json.loads(run.home.path("s7_audit_report", _tokens(run)).read_bytes())


def _abort(run: TinyRun) -> SegmentError:
    with pytest.raises(SegmentError) as info:
        run_s7(run.home, **_kw(run))
    return info.value


def test_run_s7_pass_without_logs(through_s4: TinyRun) -> None:
    run = through_s4
    out = run_s7(run.home, **_kw(run))
    path = run.home.path("s7_audit_report", _tokens(run))
    data = path.read_bytes()
    report = json.loads(data)
    assert data == pretty_json(report) == out.extras["report_bytes"]
    assert json_errors("schemas.2B.yaml#/validation/s7_audit_report_v1", report) == []
    receipt = json.loads(run.home.path("s0_gate_receipt_2B", _tokens(run)).read_bytes())
    assert report["created_utc"] == receipt["verified_at_utc"]
    assert report["seed"] == 42 and report["component"] == "2B.S7"
    checks = {c["id"]: c for c in report["checks"]}
    assert list(checks) == ALL_IDS
    for vid, item in checks.items():
        assert item["status"] == "PASS"
        assert item["codes"] == [f"2B-S7-{c}" for c in VALIDATOR_CODES[vid]]
    assert checks["V-12"]["context"] == {"note": NOTE_BOTH_ABSENT}
    assert checks["V-13"]["context"] == {"note": NOTE_S5_ABSENT}
    assert checks["V-14"]["context"] == {"note": NOTE_S6_ABSENT}
    assert checks["V-15"]["context"] == checks["V-16"]["context"] == {"note": NOTE_ROUTER_ABSENT}
    assert "context" not in checks["V-07"]
    metrics = report["metrics"]
    assert sorted(metrics) == sorted(zero_metrics())
    assert (metrics["merchants_total"], metrics["days_total"]) == (3, 90)
    assert metrics["groups_total"] == 5
    assert metrics["selections_checked"] == metrics["draws_expected"] == 0
    digest = report["inputs_digest"]
    inventory = json.loads(run.home.path("sealed_inputs_2B", _tokens(run)).read_bytes())
    sealed = {r["asset_id"]: r for r in inventory}
    for pid in ("alias_layout_policy_v1", "route_rng_policy_v1", "virtual_edge_policy_v1"):
        assert digest[pid] == sealed[pid]
    blob = run.home.path("s2_alias_blob", _tokens(run))
    assert digest["s2_alias_blob"] == {
        "path": blob.relative_to(run.home.root).as_posix(),
        "partition": _tokens(run),
        "sha256_hex": hashlib.sha256(blob.read_bytes()).hexdigest(),
    }
    s4_dir = run.home.path("s4_group_weights", _tokens(run))
    s4_bytes = b"".join(p.read_bytes() for p in sorted(s4_dir.glob("*.parquet")))
    assert digest["s4_group_weights"]["sha256_hex"] == hashlib.sha256(s4_bytes).hexdigest()
    assert sorted(digest) == sorted(
        [
            *(sealed.keys() & set(digest)),
            "s2_alias_index",
            "s2_alias_blob",
            "s3_day_effects",
            "s4_group_weights",
        ]
    )
    run_report = json.loads(run.home.path("s7_run_report", _tokens(run)).read_bytes())
    assert set(run_report) == {
        "component",
        "seed",
        "manifest_fingerprint",
        "created_utc",
        "catalogue_resolution",
        "inputs_digest",
        "metrics",
        "checks",
        "summary",
        "samples",
        "target",
    }
    assert run_report["target"] == {"audit_report_path": path.relative_to(run.home.root).as_posix()}
    assert "logs" not in run_report["samples"]


def test_rerun_is_byte_identical_noop(through_s4: TinyRun) -> None:
    run = through_s4
    first = run_s7(run.home, **_kw(run))
    before = run.home.path("s7_audit_report", _tokens(run)).read_bytes()
    again = run_s7(run.home, **_kw(run))
    assert again.published[0].outcome == "idempotent"
    assert run.home.path("s7_audit_report", _tokens(run)).read_bytes() == before
    assert again.data_version == first.data_version


def test_policy_tamper_after_s0_fails_070_and_writes_fail_report(through_s4: TinyRun) -> None:
    run = through_s4
    policy = run.home.path("alias_layout_policy_v1")
    policy.write_bytes(policy.read_bytes() + b"\n")
    err = _abort(run)
    assert err.code == "2B-S7-070" and err.validator == "V-03"
    report = _published(run)
    assert codes_of(report) == {
        "V-01": ("PASS", ["2B-S7-001"]),
        "V-02": ("PASS", ["2B-S7-020", "2B-S7-021", "2B-S7-023"]),
        "V-03": ("FAIL", ["2B-S7-070"]),
    }
    assert report["summary"] == {"overall_status": "FAIL", "warn_count": 0, "fail_count": 1}
    assert report["metrics"] == zero_metrics()
    ctx = report["checks"][2]["context"]
    assert ctx["actual_sha256"] != ctx["sealed_sha256"]
    run_report = json.loads(run.home.path("s7_run_report", _tokens(run)).read_bytes())
    assert run_report["summary"]["overall_status"] == "FAIL"
    # Restoring the bytes changes the data version: the PASS report replaces the FAIL one.
    policy.write_bytes(policy.read_bytes()[:-1])
    out = run_s7(run.home, **_kw(run))
    assert out.published[0].outcome == "replaced"
    assert _published(run)["summary"]["overall_status"] == "PASS"


def test_blob_byte_flip_fails_201_and_writes_fail_report(through_s4: TinyRun) -> None:
    run = through_s4
    blob = run.home.path("s2_alias_blob", _tokens(run))
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    err = _abort(run)
    assert err.code == "2B-S7-201" and err.validator == "V-04"
    assert "merchant_id=" in (err.key or "")
    report = _published(run)
    assert failing(report) == ("V-04", ["2B-S7-201"])
    assert [c["id"] for c in report["checks"]] == ALL_IDS[:4]


def test_missing_s0_is_001_without_report(through_s4: TinyRun) -> None:
    run = through_s4
    run.home.path("s0_gate_receipt_2B", _tokens(run)).unlink()
    assert _abort(run).code == "2B-S7-001"
    assert not run.home.path("s7_audit_report", _tokens(run)).exists()
    run_report = json.loads(run.home.path("s7_run_report", _tokens(run)).read_bytes())
    assert run_report["checks"][0]["status"] == "FAIL"


def test_missing_s4_partition_is_020(through_s4: TinyRun) -> None:
    run = through_s4
    for part in run.home.path("s4_group_weights", _tokens(run)).glob("*.parquet"):
        part.unlink()
    err = _abort(run)
    assert err.code == "2B-S7-020" and err.dataset == "s4_group_weights"
    assert failing(_published(run)) == ("V-02", ["2B-S7-020"])


def test_existing_report_with_other_bytes_is_501(through_s4: TinyRun) -> None:
    run = through_s4
    run_s7(run.home, **_kw(run))
    path = run.home.path("s7_audit_report", _tokens(run))
    path.write_bytes(path.read_bytes().replace(b'"PASS"', b'"PASS" ', 1))
    tampered = path.read_bytes()
    err = _abort(run)
    assert err.code == "2B-S7-501" and err.validator == "V-18"
    assert path.read_bytes() == tampered  # never overwritten


# --- synthetic router logs --------------------------------------------------------------------

Logs = dict[str, list[dict[str, Any]]]


def _ts(k: int) -> str:
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=k)
    return base.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def router_logs(run: TinyRun) -> Logs:
    """Schema-conformant S5/S6 evidence for the tiny roster (first group, first site in it)."""
    tokens = _tokens(run)
    s4 = pl.read_parquet(run.home.path("s4_group_weights", tokens)).sort(
        "merchant_id", "utc_day", "tz_group_id"
    )
    tz = pl.read_parquet(run.home.path("site_timezones", tokens)).sort(
        "merchant_id", "legal_country_iso", "site_order"
    )
    edge = _pack()["virtual_edge_policy_v1"].document["edges"][0]
    env = {
        "run_id": run.run_id,
        "seed": run.seed,
        "parameter_hash": run.parameter_hash,
        "manifest_fingerprint": run.manifest_fingerprint,
        "draws": "1",
        "blocks": 1,
    }
    logs: Logs = {k: [] for k in ("selection", "edge", *FAMILIES, "trace", "audit")}
    arrivals = tiny_frames()[3].to_dicts()
    virtual = 0
    for i, a in enumerate(arrivals):
        m, day = a["merchant_id"], a["utc_day"]
        group = s4.filter(
            (pl.col("merchant_id") == m) & (pl.col("utc_day") == dt.date.fromisoformat(day))
        ).row(0, named=True)
        g = group["tz_group_id"]
        site = tz.filter((pl.col("merchant_id") == m) & (pl.col("tzid") == g)).row(0, named=True)
        sid = site_id(m, site["legal_country_iso"], site["site_order"])
        for j, (fam, extra) in enumerate(
            (
                ("alias_pick_group", {"p_group": group["p_group"]}),
                ("alias_pick_site", {"site_id": sid}),
            )
        ):
            ctr = 2 * i + j
            counters = {
                "rng_counter_before_hi": 0,
                "rng_counter_before_lo": ctr,
                "rng_counter_after_hi": 0,
                "rng_counter_after_lo": ctr + 1,
            }
            logs[fam].append(
                {
                    **env,
                    **counters,
                    "ts_utc": _ts(2 * ctr),
                    "module": "2B.S5.router",
                    "substream_label": fam,
                    "merchant_id": m,
                    "utc_day": day,
                    "tz_group_id": g,
                    **extra,
                }
            )
            logs["trace"].append(
                {
                    "ts_utc": _ts(2 * ctr + 1),
                    "run_id": run.run_id,
                    "seed": run.seed,
                    "module": "2B.S5.router",
                    "substream_label": fam,
                    **counters,
                    "draws_total": i + 1,
                    "blocks_total": i + 1,
                    "events_total": i + 1,
                }
            )
        lineage = {"manifest_fingerprint": run.manifest_fingerprint, "created_utc": CREATED}
        logs["selection"].append(
            {
                "merchant_id": m,
                "utc_timestamp": a["utc_timestamp"],
                "utc_day": day,
                "tz_group_id": g,
                "site_id": sid,
                "rng_stream_id": "2B.routing",
                "ctr_group_hi": 0,
                "ctr_group_lo": 2 * i,
                "ctr_site_hi": 0,
                "ctr_site_lo": 2 * i + 1,
                **lineage,
            }
        )
        if a["is_virtual"]:
            counters = {
                "rng_counter_before_hi": 0,
                "rng_counter_before_lo": virtual,
                "rng_counter_after_hi": 0,
                "rng_counter_after_lo": virtual + 1,
            }
            logs["cdn_edge_pick"].append(
                {
                    **env,
                    **counters,
                    "ts_utc": _ts(2 * virtual),
                    "module": "2B.virtual_edge",
                    "substream_label": "cdn_edge_pick",
                    "merchant_id": m,
                }
            )
            logs["trace"].append(
                {
                    "ts_utc": _ts(2 * virtual + 1),
                    "run_id": run.run_id,
                    "seed": run.seed,
                    "module": "2B.virtual_edge",
                    "substream_label": "cdn_edge_pick",
                    **counters,
                    "draws_total": virtual + 1,
                    "blocks_total": virtual + 1,
                    "events_total": virtual + 1,
                }
            )
            logs["edge"].append(
                {
                    "merchant_id": m,
                    "is_virtual": True,
                    "utc_timestamp": a["utc_timestamp"],
                    "utc_day": day,
                    "tz_group_id": g,
                    "site_id": sid,
                    "edge_id": edge["edge_id"],
                    "ip_country": edge["ip_country"],
                    "edge_lat": edge["edge_lat"],
                    "edge_lon": edge["edge_lon"],
                    "rng_stream_id": "2B.routing_edge",
                    "ctr_edge_hi": 0,
                    "ctr_edge_lo": virtual,
                    **lineage,
                }
            )
            virtual += 1
    # S6 rows come after all S5 rows in the shared trace (S6 appends).
    logs["trace"].sort(key=lambda r: r["module"] == "2B.virtual_edge")
    logs["audit"].append(
        {
            "ts_utc": "2026-03-01T10:00:00.123456Z",
            "run_id": run.run_id,
            "seed": run.seed,
            "manifest_fingerprint": run.manifest_fingerprint,
            "parameter_hash": run.parameter_hash,
            "algorithm": "philox2x64-10",
            "build_commit": "0" * 64,
            "code_digest": None,
            "hostname": "test",
            "platform": None,
            "notes": None,
        }
    )
    return logs


def _line(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=True, sort_keys=True) + "\n"


def write_logs(
    run: TinyRun,
    logs: Logs,
    *,
    raw: Callable[[str, str], str] | None = None,
    skip: tuple[str, ...] = (),
) -> None:
    """Write ``logs`` at their dictionary paths (``raw(kind, text)`` may rewrite file text)."""
    run_tokens = run.tokens()

    def put(kind: str, path: Path, rows: list[dict[str, Any]]) -> None:
        if kind in skip:
            return
        text = "".join(_line(r) for r in rows)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(raw(kind, text) if raw else text, encoding="ascii")

    for kind, dataset in (("selection", "s5_selection_log"), ("edge", "s6_edge_log")):
        days = sorted({r["utc_day"] for r in logs[kind]})
        for day in days:
            rows = [r for r in logs[kind] if r["utc_day"] == day]
            put(kind, run.home.path(dataset, {**run_tokens, "utc_day": day}), rows)
    for fam, spec in FAMILIES.items():
        put(fam, run.home.path(spec.dataset_id, run_tokens), logs[fam])
    put("trace", run.home.path("rng_trace_log", run_tokens), logs["trace"])
    put("audit", run.home.path("rng_audit_log", run_tokens), logs["audit"])


def test_synthetic_rows_follow_their_schemas(through_s4: TinyRun) -> None:
    logs = router_logs(through_s4)
    refs = {
        "selection": "schemas.2B.yaml#/trace/s5_selection_log_row",
        "edge": "schemas.2B.yaml#/trace/s6_edge_log_row",
        "alias_pick_group": FAMILIES["alias_pick_group"].schema_ref,
        "alias_pick_site": FAMILIES["alias_pick_site"].schema_ref,
        "trace": "schemas.layer1.yaml#/rng/core/rng_trace_log",
        "audit": "schemas.layer1.yaml#/rng/core/rng_audit_log",
    }
    for kind, ref in refs.items():
        assert logs[kind] and all(json_errors(ref, r) == [] for r in logs[kind]), kind
    # Our pack declares the envelope-optional merchant_id on cdn_edge_pick (DECISIONS 14).
    cdn = FAMILIES["cdn_edge_pick"].schema_ref
    assert all(json_errors(cdn, {**r, "merchant_id": 1}) == [] for r in logs["cdn_edge_pick"])
    assert json_errors(cdn, {**logs["cdn_edge_pick"][0], "merchant_id": 0})
    assert "merchant_id" in {f.name for f in row_rules(cdn).fields}


@pytest.fixture(params=["read_ahead", "at_v16", "windowed"])
def trace_timing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The three ways S7 reads the router logs: the exact path with the trace predicted ahead
    beside the event tables (small runs) or at V-16 from the slimmed selection and edge tables
    (above the read-ahead budget), and arrival windows (large runs; here one window per day
    and per virtual arrival). Checks, codes and reports must not depend on which: a window
    that cannot show a pass hands over to the exact path."""
    from segment2b.states import s7_audit, s7_windows

    if request.param == "at_v16":
        monkeypatch.setattr(s7_audit, "TRACE_READ_AHEAD_BYTES", 0)
    if request.param == "windowed":
        monkeypatch.setattr(s7_windows, "WINDOW_BYTES", 0)
        monkeypatch.setattr(s7_windows, "WINDOW_SELECTION_BYTES", 1)
        monkeypatch.setattr(s7_windows, "_VIRTUAL_WINDOW", 1)
    return str(request.param)


def test_run_s7_reconciles_router_logs(
    through_s4: TinyRun, trace_timing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from segment2b.states import s7_audit

    predicted: list[bool] = []
    real = s7_audit._trace_now

    def spy(*args: Any) -> Any:
        table = real(*args)
        predicted.append(table is not None)
        return table

    monkeypatch.setattr(s7_audit, "_trace_now", spy)
    run = through_s4
    logs = router_logs(run)
    write_logs(run, logs)
    out = run_s7(run.home, **_kw(run))
    # At V-16 the trace is predicted from the slimmed tables (not parsed); read ahead, not there.
    assert predicted == ([True] if trace_timing == "at_v16" else [])
    # Three windows (one per day): the windows passed, the exact path did not run.
    assert out.extras["durations_ms"].get("router_windows") == (
        3 if trace_timing == "windowed" else None
    )
    checks = {c["id"]: c for c in out.report["checks"]}
    assert all(c["status"] == "PASS" for c in checks.values())
    assert checks["V-12"].get("context") is None
    assert checks["V-13"]["context"] == {"selections": 6}
    assert checks["V-14"]["context"] == {"virtual_total": 2}
    assert checks["V-16"]["context"] == {"draws_expected": 14, "draws_observed": 14}
    assert "context" not in checks["V-15"]
    m = out.report["metrics"]
    assert (m["selections_checked"], m["draws_expected"], m["draws_observed"]) == (6, 14, 14)
    runs = out.extras["run_report"]["samples"]["logs"]["runs"]
    assert runs == [
        {"parameter_hash": run.parameter_hash, "run_id": run.run_id, "events_total": 14}
    ]


@pytest.mark.parametrize("sites_known", [True, False])
def test_windows_record_what_the_exact_path_records(
    through_s4: TinyRun, monkeypatch: pytest.MonkeyPatch, sites_known: bool
) -> None:
    """Report bytes, metrics, samples and check contexts are the same whichever path passed
    (the second run publishes onto the first run's report: any other byte would be 501)."""
    from segment2b.states import s7_audit, s7_windows

    run = through_s4
    write_logs(run, router_logs(run))
    if not sites_known:
        resolve = s7_audit._resolve

        def without_sites(*args: Any, **kwargs: Any) -> S7Inputs:
            return dataclasses.replace(resolve(*args, **kwargs), site_timezones=None)

        monkeypatch.setattr(s7_audit, "_resolve", without_sites)
    exact = run_s7(run.home, **_kw(run))
    monkeypatch.setattr(s7_windows, "WINDOW_BYTES", 0)
    monkeypatch.setattr(s7_windows, "WINDOW_SELECTION_BYTES", 1)
    windowed = run_s7(run.home, **_kw(run))
    assert windowed.extras["durations_ms"]["router_windows"] == 3
    assert "router_windows" not in exact.extras["durations_ms"]
    assert windowed.extras["report_bytes"] == exact.extras["report_bytes"]
    for key in ("samples", "checks", "metrics"):
        assert windowed.extras["run_report"][key] == exact.extras["run_report"][key]
    v15 = next(c for c in exact.report["checks"] if c["id"] == "V-15")
    assert v15["status"] == ("PASS" if sites_known else "WARN")


def _set(kind: str, i: int, **values: Any) -> Callable[[Logs], None]:
    def edit(logs: Logs) -> None:
        logs[kind][i].update(values)

    return edit


def _pop(kind: str, key: str, i: int = 0) -> Callable[[Logs], None]:
    return lambda logs: logs[kind][i].pop(key)


def _regroup(i: int, group: str) -> Callable[[Logs], None]:
    """Move arrival i to another group consistently in the log and both events."""

    def edit(logs: Logs) -> None:
        for kind in ("selection", "alias_pick_group", "alias_pick_site"):
            logs[kind][i]["tz_group_id"] = group

    return edit


def _trace_total(family: str, **values: Any) -> Callable[[Logs], None]:
    def edit(logs: Logs) -> None:
        rows = [r for r in logs["trace"] if r["substream_label"] == family]
        rows[-1].update(values)

    return edit


@pytest.mark.parametrize(
    ("edit", "vid", "code"),
    [
        (_set("selection", 1, manifest_fingerprint="cd" * 32), "V-12", "503"),
        (_set("selection", 1, created_utc="2026-01-02T00:00:00.000000Z"), "V-12", "503"),
        (_set("selection", 2, utc_timestamp="2026-01-01T08:00:00.000000Z"), "V-12", "401"),
        # ... across days (across windows when windowed)
        (_set("selection", 3, utc_timestamp="2026-01-01T08:00:00.000000Z"), "V-12", "401"),
        (_set("selection", 0, extra=1), "V-12", "400"),
        (_set("selection", 0, site_id=0), "V-12", "400"),
        (_set("selection", 0, utc_timestamp="2026-01-01T09:00:00Z"), "V-12", "400"),
        (_pop("selection", "ctr_site_lo"), "V-12", "400"),
        (_set("edge", 0, edge_lat=91.0), "V-12", "400"),
        (_set("edge", 0, manifest_fingerprint="X"), "V-12", "400"),
        (_set("selection", 3, rng_stream_id="2B.other"), "V-13", "405"),
        (_set("alias_pick_site", 2, module="2B.S6.edge_router"), "V-13", "405"),
        (_set("alias_pick_group", 2, substream_label="alias_pick_site"), "V-13", "405"),
        (_set("alias_pick_group", 2, seed=7), "V-13", "503"),
        (_set("alias_pick_group", 2, run_id="0" * 32), "V-13", "503"),
        (_set("alias_pick_group", 2, run_id="XYZ"), "V-13", "400"),
        (_set("alias_pick_group", 2, draws="2"), "V-13", "402"),
        (_set("alias_pick_group", 2, blocks=2, rng_counter_after_lo=6), "V-13", "402"),
        (_set("alias_pick_site", 1, rng_counter_after_lo=2), "V-13", "404"),
        (_set("alias_pick_site", 1, rng_counter_after_lo=5), "V-13", "403"),
        (
            _set("alias_pick_site", 1, rng_counter_before_lo=0, rng_counter_after_lo=1),
            "V-13",
            "403",
        ),
        (
            _set("alias_pick_site", 3, rng_counter_before_lo=0, rng_counter_after_lo=1),
            "V-13",
            "403",
        ),
        (lambda logs: logs["alias_pick_site"].pop(), "V-13", "402"),
        (_set("selection", 4, ctr_site_lo=2), "V-13", "402"),
        (_set("alias_pick_site", 4, site_id=12345), "V-13", "402"),
        (_set("edge", 0, rng_stream_id="2B.routing"), "V-14", "405"),
        (_set("cdn_edge_pick", 0, module="2B.S6.edge_router"), "V-14", "405"),
        (lambda logs: logs["cdn_edge_pick"].pop(), "V-14", "402"),
        (_set("edge", 1, ctr_edge_lo=0), "V-14", "402"),
        (_set("cdn_edge_pick", 1, merchant_id=101), "V-14", "402"),
        (_trace_total("alias_pick_site", draws_total=99), "V-16", "402"),
        (_trace_total("cdn_edge_pick", events_total=3), "V-16", "402"),
        (lambda logs: logs["trace"].pop(0), "V-16", "402"),
        (_set("trace", 3, seed=9), "V-16", "503"),
        (_set("trace", 3, detail=5), "V-16", "400"),
        (_set("audit", 0, run_id="f" * 32), "V-16", "503"),
        (_set("audit", 0, algorithm="mt19937"), "V-16", "400"),
        (lambda logs: logs["audit"].clear(), "V-16", "402"),
        (_regroup(1, "Europe/London"), "V-15", "410"),
        (_set("edge", 1, edge_id="ZZ-EDGE-404"), "V-15", "411"),
        (_set("edge", 1, edge_lon=1.5), "V-15", "411"),
    ],
)
def test_router_log_faults(
    through_s4: TinyRun, edit: Callable[[Logs], Any], vid: str, code: str, trace_timing: str
) -> None:
    run = through_s4
    logs = copy.deepcopy(router_logs(run))
    edit(logs)
    write_logs(run, logs)
    err = _abort(run)
    assert (err.validator, err.code) == (vid, f"2B-S7-{code}")
    report = _published(run)
    assert failing(report) == (vid, [f"2B-S7-{code}"])
    evaluated = {"V-12": 12, "V-13": 13, "V-14": 14, "V-16": 15, "V-15": 16}[vid]
    assert len(report["checks"]) == evaluated


def test_row_day_must_equal_its_partition(through_s4: TinyRun) -> None:
    run = through_s4

    def move(kind: str, text: str) -> str:
        if kind != "selection" or '"utc_day": "2026-01-01"' not in text:
            return text
        return text.replace('"utc_day": "2026-01-01"', '"utc_day": "2026-01-02"', 1)

    write_logs(run, router_logs(run), raw=move)
    err = _abort(run)
    assert (err.validator, err.code) == ("V-12", "2B-S7-503")
    assert err.context["file"].endswith("utc_day=2026-01-01/selection_log.jsonl")


@pytest.mark.parametrize(
    ("kind", "rewrite", "line"),
    [
        ("alias_pick_group", lambda t: t.replace('"merchant_id": 202', '"merchant_id": 202.0'), 2),
        ("alias_pick_group", lambda t: t.replace('"draws": "1"', '"draws": 1', 2), 1),
        ("selection", lambda t: t.replace("}\n", "}{}\n", 1), 1),
        ("trace", lambda t: t[:-10] + "\n", 14),
        ("edge", lambda t: t.replace('"is_virtual": true', '"is_virtual": 1', 1), 1),
    ],
)
def test_unparsable_rows_name_file_and_line(
    through_s4: TinyRun, kind: str, rewrite: Callable[[str], str], line: int
) -> None:
    run = through_s4
    write_logs(run, router_logs(run), raw=lambda k, t: rewrite(t) if k == kind else t)
    err = _abort(run)
    assert err.code == "2B-S7-400"
    assert err.context["line"] == line and err.context["file"].endswith(".jsonl")


def test_blank_lines_are_ignored(through_s4: TinyRun) -> None:
    run = through_s4
    write_logs(run, router_logs(run), raw=lambda k, t: "\n" + t.replace("\n", "\n\n", 2))
    assert run_s7(run.home, **_kw(run)).report["summary"]["overall_status"] == "PASS"


@pytest.mark.parametrize("missing", ["trace", "audit", "alias_pick_site", "cdn_edge_pick"])
def test_missing_evidence_with_router_logs_is_402(through_s4: TinyRun, missing: str) -> None:
    run = through_s4
    write_logs(run, router_logs(run), skip=(missing,))
    assert _abort(run).code == "2B-S7-402"


def test_only_edge_log_present(through_s4: TinyRun) -> None:
    run = through_s4
    logs = router_logs(run)
    logs["trace"] = [r for r in logs["trace"] if r["module"] == "2B.virtual_edge"]
    write_logs(run, logs, skip=("selection", "alias_pick_group", "alias_pick_site"))
    checks = {c["id"]: c for c in run_s7(run.home, **_kw(run)).report["checks"]}
    assert checks["V-13"]["context"] == {"note": NOTE_S5_ABSENT}
    assert checks["V-16"]["context"] == {"draws_expected": 2, "draws_observed": 2}


def test_site_timezones_unavailable_is_warn(through_s4: TinyRun) -> None:
    run = through_s4
    write_logs(run, router_logs(run))
    for part in run.home.path("site_timezones", _tokens(run)).glob("*.parquet"):
        part.unlink()
    report = run_s7(run.home, **_kw(run)).report
    assert report["summary"] == {"overall_status": "PASS", "warn_count": 1, "fail_count": 0}
    v15 = next(c for c in report["checks"] if c["id"] == "V-15")
    assert v15["status"] == "WARN" and v15["codes"] == ["2B-S7-410"]
    assert v15["context"]["reason"]


def test_logs_of_another_run_are_not_read(through_s4: TinyRun) -> None:
    run = through_s4
    other = dataclasses.replace(run, run_id="0" * 32)
    write_logs(other, router_logs(run))
    checks = codes_of(run_s7(run.home, **_kw(run)).report)
    assert checks["V-12"][0] == "PASS"
    report = _published(run)
    assert next(c for c in report["checks"] if c["id"] == "V-12")["context"] == {
        "note": NOTE_BOTH_ABSENT
    }


def test_empty_edge_log_needs_no_events(through_s4: TinyRun) -> None:
    run = through_s4
    logs = router_logs(run)
    logs["edge"], logs["cdn_edge_pick"] = [], []
    logs["trace"] = [r for r in logs["trace"] if r["module"] == "2B.S5.router"]
    write_logs(run, logs, skip=("cdn_edge_pick",))
    empty = run.home.path("s6_edge_log", {**run.tokens(), "utc_day": "2026-01-01"})
    empty.parent.mkdir(parents=True)
    empty.write_bytes(b"")
    checks = {c["id"]: c for c in run_s7(run.home, **_kw(run)).report["checks"]}
    assert checks["V-14"]["context"] == {"virtual_total": 0}
    assert checks["V-16"]["context"] == {"draws_expected": 12, "draws_observed": 12}


# --- fast exact JSONL path (polars + rendering proof) vs the strict arrow parse -------------

EDGE_ROW = "schemas.2B.yaml#/trace/s6_edge_log_row"


def _edge_rows(n: int = 60) -> list[dict[str, Any]]:
    """Byte-law edge-log rows with every JSON type: ints up to u64 max, floats (incl. -0.0 and
    exponent forms), booleans, constant and varying strings."""
    lats = [38.9445, -0.0, 1e-05, 53.3331, 0.1, -33.8688]
    return [
        {
            "created_utc": CREATED,
            "ctr_edge_hi": 0,
            "ctr_edge_lo": i,
            "edge_id": ["iad-us", "dub-ie", "sin-sg"][i % 3],
            "edge_lat": lats[i % len(lats)],
            "edge_lon": [-77.4558, 151.2093, 180.0][i % 3],
            "ip_country": ["US", "IE", "SG"][i % 3],
            "is_virtual": True,
            "manifest_fingerprint": MF,
            "merchant_id": 2**64 - 1 - i,
            "rng_stream_id": "2B.routing_edge",
            "site_id": 7 * i + 1,
            "tz_group_id": ["Europe/Paris", "America/New_York"][i % 2],
            "utc_day": "2026-01-01",
            "utc_timestamp": f"2026-01-01T00:00:{i % 60:02d}.000000Z",
        }
        for i in range(n)
    ]


def _canon(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)


def _edit(k: int, old: str, new: str) -> Callable[[str], str]:
    """Replace ``old`` by ``new`` in line ``k`` only."""

    def go(text: str) -> str:
        lines = text.splitlines(keepends=True)
        assert old in lines[k]
        lines[k] = lines[k].replace(old, new, 1)
        return "".join(lines)

    return go


FAST_VARIANTS: dict[str, Callable[[str], str]] = {
    "canonical": lambda t: t,
    "escaped_string": _edit(4, '"Europe/Paris"', '"Europe\\/Paris"'),
    "raw_non_ascii": _edit(6, '"iad-us"', '"iad-\u00e9"'),
    "unicode_escape": _edit(6, '"iad-us"', '"iad-\\u00e9"'),
    "int_as_string": _edit(7, '"ctr_edge_lo": 7', '"ctr_edge_lo": "7"'),
    "int_leading_plus": _edit(7, '"ctr_edge_lo": 7', '"ctr_edge_lo": +7'),
    "float_as_int": _edit(9, '"edge_lon": -77.4558', '"edge_lon": -77'),
    "float_exponent": _edit(9, '"edge_lon": -77.4558', '"edge_lon": -7.74558E1'),
    "u64_overflow": _edit(0, f"{2**64 - 1}", f"{2**64}"),
    "duplicate_key": _edit(9, '"ip_country": "US"', '"ip_country": "US", "ip_country": "IE"'),
    "extra_key": _edit(10, '"is_virtual": true', '"is_virtual": true, "extra": 1'),
    "explicit_null": _edit(11, '"site_id": 78', '"site_id": null'),
    "bool_as_int": _edit(12, '"is_virtual": true', '"is_virtual": 1'),
    "reordered_keys": _edit(13, '"created_utc": "', '"zz": 0, "created_utc": "'),
    "extra_space": _edit(14, '"site_id": 99', '"site_id":  99'),
    "blank_line": lambda t: t.replace("\n", "\n\n", 3),
    "crlf": lambda t: t.replace("\n", "\r\n"),
    "no_final_newline": lambda t: t[:-1],
    "two_objects_one_line": lambda t: t.replace("}\n", "}", 1),
    # equal on every probed line (first, last, evenly spaced) but not on row 1
    "constant_guess_miss": _edit(1, '"rng_stream_id": "2B.routing_edge"', '"rng_stream_id": "x"'),
}


@pytest.mark.parametrize("variant", sorted(FAST_VARIANTS))
def test_fast_jsonl_path_equals_strict_parse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variant: str
) -> None:
    """Whatever the bytes, read_jsonl answers exactly like the strict arrow parse: same frame
    (values, dtypes, column order), same per-file offsets, or the same 400 failure."""
    from segment2b.states import s7_audit

    rules = row_rules(EDGE_ROW)
    text = FAST_VARIANTS[variant](_canon(_edge_rows()))
    split = text.index("\n", len(text) // 2) + 1  # two files, cut between lines
    files = []
    for k, part in enumerate((text[:split], text[split:])):
        path = tmp_path / f"utc_day=2026-01-0{k + 1}" / "s6_edge_log.jsonl"
        path.parent.mkdir(parents=True)
        path.write_bytes(part.encode())
        files.append(s7_audit.LogFile(path.relative_to(tmp_path).as_posix(), path, None))

    def outcome() -> Any:
        try:
            table = s7_audit.read_jsonl(files, rules, validator="V-12", dataset="s6_edge_log")
        except AuditError as err:
            return ("error", err.codes, err.reason, err.context.get("line"))
        return ("table", table.frame, table.offsets.tolist())

    fast = outcome()
    assert (s7_audit._fast_table(files, rules) is not None) == (
        variant in ("canonical", "raw_non_ascii", "constant_guess_miss")
    )
    monkeypatch.setattr(s7_audit, "_fast_table", lambda *_: None)
    strict = outcome()
    # The strict parse reads each file in pieces of whole lines: any piece size (one line per
    # piece, a few lines, the whole file) gives the same table, offsets, failing line and reason.
    for piece in (1, 700):
        monkeypatch.setattr(s7_audit, "_STRICT_PIECE", piece)
        pieced = outcome()
        assert pieced[0] == strict[0]
        if strict[0] == "table":
            assert pieced[1].equals(strict[1]) and pieced[2] == strict[2]
        else:
            assert pieced[1:] == strict[1:]
    assert fast[0] == strict[0]
    if fast[0] == "table":
        assert fast[1].schema == strict[1].schema and fast[1].equals(strict[1])
        assert fast[2] == strict[2]
    else:
        assert fast[1:] == strict[1:]


@pytest.mark.parametrize(
    ("field", "value"),
    [("rng_stream_id", "2B.routing_edge"), ("rng_stream_id", ""), ("manifest_fingerprint", "ab")],
)
def test_constant_columns_are_checked_like_full_columns(field: str, value: str) -> None:
    """A column flagged constant is checked on its first row; the outcome (first failing row,
    code, message) equals checking every row."""
    from segment2b.states import s7_audit

    rules = row_rules(EDGE_ROW)
    rows = _edge_rows(20)
    for r in rows:
        r[field] = value
    frame = pl.from_arrow(s7_audit._arrow_parse(_canon(rows).encode(), rules))
    assert isinstance(frame, pl.DataFrame)
    offsets = np.array([0, frame.height])
    plain = s7_audit.JsonlTable(frame, (), offsets)
    flagged = s7_audit.JsonlTable(frame, (), offsets, frozenset({field, "created_utc"}))

    def outcome(table: s7_audit.JsonlTable) -> Any:
        try:
            s7_audit._scan_rows(
                table,
                rules,
                validator="V-12",
                dataset="s6_edge_log",
                expected=(("manifest_fingerprint", MF, "503"), ("created_utc", CREATED, "503")),
            )
        except AuditError as err:
            return (err.codes, err.reason, err.context)
        return None

    assert outcome(flagged) == outcome(plain)


def test_predicted_event_and_trace_tables_equal_their_parse(through_s4: TinyRun) -> None:
    """S5's event families and the trace, predicted from the selection log, S4 and the events
    and proved against the bytes, equal the parsed tables; a row that breaks the prediction
    makes it decline (the parse then decides)."""
    from concurrent.futures import Future

    from segment2b.states import s7_audit

    run = through_s4
    logs = router_logs(run)
    write_logs(run, logs)
    found = s7_audit.discover_router_logs(
        run.home, seed=run.seed, parameter_hash=run.parameter_hash, run_id=run.run_id
    )
    s4 = pl.scan_parquet(run.home.path("s4_group_weights", _tokens(run)))

    def done(table: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        fut.set_result(table)
        return fut

    def parsed(files: Any, ref: str) -> Any:
        return s7_audit.read_jsonl(files, row_rules(ref), validator="V-13", dataset="x")

    sel = parsed(found.selection, s7_audit._SELECTION_ROW)
    events: dict[str, Any] = {}
    for name in ("alias_pick_group", "alias_pick_site", "cdn_edge_pick"):
        files = found.events[name]
        ref = parsed(files, FAMILIES[name].schema_ref)
        if name != "cdn_edge_pick":
            got = s7_audit._predict_events(FAMILIES[name], files, done(sel), s4)
            assert got is not None and got.frame.equals(ref.frame)
            assert got.frame.schema == ref.frame.schema and got.offsets.tolist() == [0, 6]
        events[name] = done(ref)
    edge = parsed(found.edge, EDGE_ROW)
    trace = s7_audit._predict_trace([found.trace], done(sel), done(edge))
    ref = parsed([found.trace], s7_audit._TRACE_ROW)
    assert trace is not None and trace.frame.equals(ref.frame)
    # One p_group that is not S4's: the group prediction declines.
    logs["alias_pick_group"][2]["p_group"] = 0.123
    write_logs(run, logs)
    group = s7_audit._predict_events(
        FAMILIES["alias_pick_group"], found.events["alias_pick_group"], done(sel), s4
    )
    assert group is None


@pytest.mark.parametrize("bad_row", [None, 0, 7, 4999])
def test_first_hit_by_distinct_values_equals_a_row_scan(bad_row: int | None) -> None:
    """Value checks of a low-cardinality string column evaluated on its distinct values give
    the same first violation (row, field, rule; earlier check wins ties) as scanning rows."""
    from segment2b.states import s7_audit

    n = 5000
    zones = ["Europe/Paris", "America/New_York", "Asia/Tokyo"]
    tz = [zones[i % 3] for i in range(n)]
    day = ["2026-01-01"] * n
    if bad_row is not None:
        tz[bad_row] = "not a zone!"
        day[bad_row] = "2026-1-1"
    frame = pl.DataFrame({"tz_group_id": tz, "utc_day": day, "k": list(range(n))})
    rules = row_rules("schemas.2B.yaml#/trace/s5_selection_log_row")
    checks = [
        (r.name, text, expr)
        for r in rules.fields
        if r.name in frame.columns
        for text, expr in r.checks()
    ]
    naive = frame.select(
        [expr.arg_true().first().alias(f"c{i}") for i, (_, _, expr) in enumerate(checks)]
    ).row(0)
    expected = min(((idx, i) for i, idx in enumerate(naive) if idx is not None), default=None)
    got = s7_audit._first_hit(frame, checks)
    if expected is None:
        assert got is None
    else:
        assert got == (expected[0], checks[expected[1]][0], checks[expected[1]][1])


def test_final_trace_row_is_the_greatest_after_counter_last_in_file_order() -> None:
    """§5.3's final row (greatest after-counter, ties → last in file order), found without a
    sort, equals the sorted answer, ties and high words included."""
    from segment2b.states import s7_audit

    rng = np.random.default_rng(7)
    for _ in range(50):
        n = int(rng.integers(1, 40))
        rows = pl.DataFrame(
            {
                "_row": np.arange(n, dtype=np.uint32) * 3,
                "rng_counter_after_hi": rng.integers(0, 2, n, dtype=np.uint64),
                "rng_counter_after_lo": rng.integers(0, 4, n, dtype=np.uint64) + np.uint64(2**63),
                "events_total": np.arange(n, dtype=np.uint64),
            }
        )
        want = rows.sort(
            "rng_counter_after_hi", "rng_counter_after_lo", "_row", maintain_order=True
        ).row(-1, named=True)
        assert s7_audit._final_row(rows) == want
