"""2B.S0 — gate and environment seal (s0-gate.md).

Verifies the 1B PASS gate by the hash law before any 1B egress is opened, seals every input and
the five policies, and publishes ``sealed_inputs_2B`` (one row per sealed asset) then
``s0_gate_receipt_2B`` (one object per seed × manifest_fingerprint). RNG-free.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segment2b.catalogue.schemas import anchor_exists, json_errors
from segment2b.errors import SegmentError
from segment2b.policy.models import POLICY_IDS
from segment2b.policy.store import load_policy
from segment2b.storage.canonical import canonical_json
from segment2b.storage.digests import (
    bundle_digest,
    folder_digest,
    parse_flag,
    sha256_bytes,
    sha256_file,
    unsafe_index_path,
)
from segment2b.storage.home import StorageHome
from segment2b.storage.publish import PublishResult, publish_file, publish_folder
from segment2b.storage.reports import write_report

PREFIX = "2B-S0"
REQUIRED_IDS: tuple[str, ...] = (
    "validation_bundle_1B",
    "validation_passed_flag_1B",
    "site_locations",
    "site_timezones",
    "route_rng_policy_v1",
    "alias_layout_policy_v1",
    "day_effect_policy_v1",
    "group_mix_regularizer_v1",
    "virtual_edge_policy_v1",
)
OPTIONAL_IDS: tuple[str, ...] = ("tz_timetable_cache", "s5_arrival_roster")
OUTPUT_IDS: tuple[str, ...] = ("s0_gate_receipt_2B", "sealed_inputs_2B")
VALIDATOR_IDS: tuple[str, ...] = tuple(f"V-{i:02d}" for i in range(1, 17))
_PLACEHOLDERS = {"", "TBD", "null", "unknown"}


@dataclass(frozen=True)
class RunIdentity:
    """The four run tokens plus the run receipt's ``created_utc``."""

    seed: int
    manifest_fingerprint: str
    parameter_hash: str
    run_id: str
    created_utc: str

    def tokens(self) -> dict[str, str]:
        return {
            "seed": str(self.seed),
            "manifest_fingerprint": self.manifest_fingerprint,
            "parameter_hash": self.parameter_hash,
            "run_id": self.run_id,
        }


@dataclass
class S0Outcome:
    """What S0 produced: both artefacts, publish results, the run-report and validator states."""

    receipt: dict[str, Any]
    inventory: list[dict[str, Any]]
    report: dict[str, Any]
    published: list[PublishResult] = field(default_factory=list)


def environment() -> dict[str, str]:
    """Determinism receipt environment, pinned to stable values (no kernel build string)."""
    import os

    return {
        "engine_commit": os.environ.get("ENGINE_COMMIT", "unknown"),
        "python_version": platform.python_version(),
        "platform": f"{platform.system()}-{platform.machine()}",
    }


def read_run_receipt(home: StorageHome, run_id: str) -> RunIdentity:
    """Load ``run_receipt.json`` and check folder name == embedded run_id and tokens present."""
    path = home.path("run_receipt", {"run_id": run_id})
    if not path.is_file():
        raise SegmentError(
            f"{PREFIX}-010",
            "run receipt is missing",
            dataset="run_receipt",
            key=str(path),
            context={"missing_ids": ["run_receipt"]},
        )
    try:
        doc = json.loads(path.read_bytes())
    except ValueError as exc:
        raise SegmentError(
            f"{PREFIX}-020", f"run receipt is not JSON: {exc}", dataset="run_receipt", key=str(path)
        ) from exc
    missing = [
        k for k in ("run_id", "seed", "parameter_hash", "manifest_fingerprint") if k not in doc
    ]
    if missing or path.parent.name != doc.get("run_id"):
        raise SegmentError(
            f"{PREFIX}-020",
            "run receipt is inconsistent (missing tokens or folder name != run_id)",
            dataset="run_receipt",
            key=str(path),
            context={"missing": missing, "folder": path.parent.name},
        )
    return RunIdentity(
        seed=int(doc["seed"]),
        manifest_fingerprint=doc["manifest_fingerprint"],
        parameter_hash=doc["parameter_hash"],
        run_id=doc["run_id"],
        created_utc=doc.get("created_utc", ""),
    )


class _Validators:
    """Validator ledger V-01..V-16 for the run-report."""

    def __init__(self) -> None:
        self.status: dict[str, tuple[str, list[str]]] = {v: ("PASS", []) for v in VALIDATOR_IDS}

    def warn(self, vid: str, code: str) -> None:
        self.status[vid] = ("WARN", [code])

    def fail(self, vid: str, code: str) -> None:
        self.status[vid] = ("FAIL", [code])

    def rows(self) -> list[dict[str, Any]]:
        return [{"id": v, "status": s, "codes": c} for v, (s, c) in self.status.items()]

    def counts(self) -> tuple[int, int]:
        warn = sum(1 for s, _ in self.status.values() if s == "WARN")
        fail = sum(1 for s, _ in self.status.values() if s == "FAIL")
        return warn, fail


def _verify_gate(home: StorageHome, tokens: Mapping[str, str], led: _Validators) -> dict[str, Any]:
    """Steps 3-7: bundle + flag present, flag parsed, index valid, H3 digest equals the flag."""
    bundle_root = home.path("validation_bundle_1B", tokens)
    flag_path = home.path("validation_passed_flag_1B", tokens)
    if not bundle_root.is_dir() or not flag_path.is_file():
        led.fail("V-01", f"{PREFIX}-010")
        missing = [
            i
            for i, p in (
                ("validation_bundle_1B", bundle_root),
                ("validation_passed_flag_1B", flag_path),
            )
            if not p.exists()
        ]
        raise SegmentError(
            f"{PREFIX}-010",
            "1B validation bundle or _passed.flag is missing",
            dataset=missing[0] if missing else "validation_bundle_1B",
            key=str(bundle_root),
            validator="V-01",
            context={"missing_ids": missing},
        )
    text = flag_path.read_text(encoding="ascii", errors="replace")
    expected = parse_flag(text)
    if expected is None:
        led.fail("V-02", f"{PREFIX}-013")
        raise SegmentError(
            f"{PREFIX}-013",
            "_passed.flag is empty or carries no sha256 digest",
            dataset="validation_passed_flag_1B",
            key=str(flag_path),
            validator="V-02",
            context={"flag_line": text.splitlines()[0] if text.strip() else ""},
        )
    index_path = bundle_root / "index.json"

    def bad_index(reason: str, offending: str) -> SegmentError:
        led.fail("V-02", f"{PREFIX}-012")
        return SegmentError(
            f"{PREFIX}-012",
            f"1B bundle index invalid: {reason}",
            dataset="validation_bundle_1B",
            key=offending,
            validator="V-02",
            context={"offending_path": offending},
        )

    if not index_path.is_file():
        raise bad_index("index.json is missing", "index.json")
    try:
        index = json.loads(index_path.read_bytes())
    except ValueError as exc:
        raise bad_index(f"index.json is not JSON ({exc})", "index.json") from exc
    shape_1b = "schemas.1B.yaml#/validation/validation_bundle_1B/index_schema"
    shape_generic = "schemas.1B.yaml#/validation/validation_bundle_1B/generic_index_schema"
    errs = json_errors(shape_1b, index)
    if errs and json_errors(shape_generic, index):
        raise bad_index(errs[0], "index.json")
    if errs == [] and len({r["artifact_id"] for r in index}) != len(index):
        raise bad_index("artifact_id is not unique", "index.json")
    paths = [row["path"] for row in index]
    for p in paths:
        if unsafe_index_path(p):
            raise bad_index("path is absolute or escapes the bundle root", str(p))
    ordered = sorted(paths)
    hashed = [p for p in ordered if not p.endswith("_passed.flag")]
    if not hashed:
        raise bad_index("no hashable members", "index.json")
    for p in hashed:
        if not (bundle_root / p).is_file():
            raise bad_index("indexed file does not exist", p)
    actual = bundle_digest(bundle_root, hashed)
    if actual != expected:
        led.fail("V-02", f"{PREFIX}-011")
        raise SegmentError(
            f"{PREFIX}-011",
            "1B bundle digest does not match _passed.flag",
            dataset="validation_bundle_1B",
            key=str(bundle_root),
            validator="V-02",
            context={"expected_sha256": expected, "actual_sha256": actual},
        )
    return {
        "bundle_index_count": len(index),
        "bundle_sha256_expected": expected,
        "bundle_sha256_actual": actual,
        "flag_path": home.rel("validation_passed_flag_1B", tokens),
        "gate_index_sample": ordered[:20],
    }


def _version_tag(
    home: StorageHome, asset_id: str, tokens: Mapping[str, str], policy_doc: Any
) -> str:
    extra = dict(tokens)
    if policy_doc is not None:
        pv = policy_doc.get("policy_version") or policy_doc.get("version_tag")
        if pv:
            extra["policy_version"] = str(pv)
    tag = home.catalogue.version_tag(asset_id, extra)
    if tag in _PLACEHOLDERS or "{" in tag or "}" in tag:
        reg = home.catalogue.registry.get(asset_id, {})
        for key in ("semver", "version"):
            alt = str(reg.get(key, ""))
            if alt and alt not in _PLACEHOLDERS and "{" not in alt:
                return alt
        return "unknown"
    return tag


def _seal(
    home: StorageHome,
    asset_id: str,
    tokens: Mapping[str, str],
    digest: str,
    policy_doc: Any = None,
) -> dict[str, Any]:
    entry = home.catalogue.entry(asset_id)
    partition = home.catalogue.partition(asset_id, tokens)
    path = home.rel(asset_id, tokens)
    for k, v in partition.items():
        if f"{k}={v}" not in path:
            raise SegmentError(
                f"{PREFIX}-050",
                "rendered path lacks a partition segment",
                dataset=asset_id,
                key=k,
                validator="V-11",
                context={"id": asset_id, "expected_partition": partition, "actual_partition": path},
            )
    return {
        "asset_id": asset_id,
        "version_tag": _version_tag(home, asset_id, tokens, policy_doc),
        "sha256_hex": digest,
        "path": path,
        "partition": partition,
        "schema_ref": entry.schema_ref,
    }


def _cache_problem(cache_root: Path, mf: str) -> str | None:
    manifest = cache_root / "tz_timetable_cache.json"
    if not manifest.is_file():
        return "tz_timetable_cache.json missing"
    try:
        doc = json.loads(manifest.read_bytes())
    except ValueError:
        return "tz_timetable_cache.json is not JSON"
    errs = json_errors("schemas.2A.yaml#/cache/tz_timetable_cache", doc)
    if errs:
        return f"schema: {errs[0]}"
    if doc.get("manifest_fingerprint") != mf:
        return "manifest_fingerprint differs from the run's"
    return None


def run_s0(home: StorageHome, run_id: str) -> S0Outcome:
    """Execute S0 for one run; on any Abort, write a FAIL run-report and re-raise."""
    ident = read_run_receipt(home, run_id)
    led = _Validators()
    tokens = ident.tokens()
    report_path = home.path("s0_run_report", tokens)
    cat = home.catalogue
    env = environment()
    base_report: dict[str, Any] = {
        "component": "2B.S0",
        "manifest_fingerprint": ident.manifest_fingerprint,
        "seed": str(ident.seed),
        "catalogue_resolution": {
            "dictionary_version": cat.dictionary_version,
            "registry_version": cat.registry_version,
        },
        "environment": {**env, "network_io_detected": 0},
    }
    try:
        outcome = _run(home, ident, led, env, base_report)
    except SegmentError as err:
        warn, fail = led.counts()
        if fail == 0 and err.validator in led.status:
            led.fail(err.validator, err.code)
            warn, fail = led.counts()
        write_report(
            report_path,
            {
                **base_report,
                "validators": led.rows(),
                "summary": {
                    "overall_status": "FAIL",
                    "warn_count": warn,
                    "fail_count": max(fail, 1),
                },
                "failure": {
                    **err.payload(),
                    "manifest_fingerprint": ident.manifest_fingerprint,
                    "seed": ident.seed,
                },
            },
        )
        raise
    write_report(report_path, outcome.report)
    return outcome


def _run(
    home: StorageHome,
    ident: RunIdentity,
    led: _Validators,
    env: Mapping[str, str],
    base_report: dict[str, Any],
) -> S0Outcome:
    tokens = ident.tokens()
    cat = home.catalogue
    # V-03: every id resolvable with a schema_ref anchor that exists.
    for asset_id in (*REQUIRED_IDS, *OPTIONAL_IDS, *OUTPUT_IDS):
        entry = cat.entry(asset_id)
        if not entry.schema_ref or not anchor_exists(entry.schema_ref):
            led.fail("V-03", f"{PREFIX}-020")
            raise SegmentError(
                f"{PREFIX}-020",
                "schema_ref anchor does not resolve",
                dataset=asset_id,
                key=entry.schema_ref,
                validator="V-03",
                context={"id": asset_id},
            )
    t0 = time.perf_counter()
    gate = _verify_gate(home, tokens, led)
    gate_ms = int((time.perf_counter() - t0) * 1000)

    # Only now may 1B egress or any other input be opened (No PASS -> No read).
    t1 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    receipt_items: list[dict[str, Any]] = []

    def add(row: dict[str, Any]) -> None:
        rows.append(row)
        receipt_items.append(
            {"id": row["asset_id"], "partition": row["partition"], "schema_ref": row["schema_ref"]}
        )

    flag_path = home.path("validation_passed_flag_1B", tokens)
    add(_seal(home, "validation_bundle_1B", tokens, gate["bundle_sha256_actual"]))
    add(_seal(home, "validation_passed_flag_1B", tokens, sha256_file(flag_path)))
    missing = [i for i in ("site_locations", "site_timezones") if not home.path(i, tokens).is_dir()]
    missing += [p for p in POLICY_IDS if not home.path(p).is_file()]
    if missing:
        led.fail("V-04", f"{PREFIX}-010")
        raise SegmentError(
            f"{PREFIX}-010",
            "required inputs are missing",
            dataset=missing[0],
            key=str(home.path(missing[0], tokens)),
            validator="V-04",
            context={"missing_ids": missing},
        )
    for asset_id in ("site_locations", "site_timezones"):
        add(_seal(home, asset_id, tokens, folder_digest(home.path(asset_id, tokens))))
    policy_rows: dict[str, dict[str, Any]] = {}
    for pid in (
        "route_rng_policy_v1",
        "alias_layout_policy_v1",
        "day_effect_policy_v1",
        "group_mix_regularizer_v1",
        "virtual_edge_policy_v1",
    ):
        loaded = load_policy(home.path(pid), pid, code=f"{PREFIX}-020")
        row = _seal(home, pid, tokens, loaded.sha256_hex, loaded.document)
        policy_rows[pid] = row
        add(row)
    required_present = len(rows)

    cache_root = home.path("tz_timetable_cache", tokens)
    cache_present = 0
    if cache_root.is_dir():
        problem = _cache_problem(cache_root, ident.manifest_fingerprint)
        if problem is None:
            add(_seal(home, "tz_timetable_cache", tokens, folder_digest(cache_root)))
            cache_present = 1
        else:
            led.warn("V-05", f"{PREFIX}-090")
    else:
        led.warn("V-05", f"{PREFIX}-090")
    roster_path = home.path("s5_arrival_roster", tokens)
    roster_present = 0
    if roster_path.is_file():
        add(_seal(home, "s5_arrival_roster", tokens, sha256_file(roster_path)))
        roster_present = 1

    # V-12 duplicates, V-10 policy capture, V-08 membership, V-09 tags/digests.
    ids = [r["asset_id"] for r in rows]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        led.fail("V-12", f"{PREFIX}-043")
        raise SegmentError(
            f"{PREFIX}-043", "duplicate asset_id", dataset=dupes[0], validator="V-12"
        )
    policy_ids = sorted(policy_rows)
    policy_digests = [policy_rows[p]["sha256_hex"] for p in policy_ids]
    if len(policy_ids) != 5 or len(policy_digests) != len(policy_ids):
        led.fail("V-10", f"{PREFIX}-042")
        raise SegmentError(
            f"{PREFIX}-042",
            "policy capture incoherent",
            dataset="policies",
            validator="V-10",
            context={"policy_ids": policy_ids, "policy_digests": policy_digests},
        )
    if {i["id"] for i in receipt_items} != set(ids):
        led.fail("V-08", f"{PREFIX}-040")
        raise SegmentError(f"{PREFIX}-040", "receipt ids differ from inventory", validator="V-08")
    for r in rows:
        if r["version_tag"] == "unknown":
            led.warn("V-09", f"{PREFIX}-041")
    inventory = sorted(rows, key=lambda r: (r["asset_id"], r["path"]))
    inv_errors = json_errors(cat.entry("sealed_inputs_2B").schema_ref, inventory)
    if inv_errors:
        led.fail("V-07", f"{PREFIX}-031")
        raise SegmentError(
            f"{PREFIX}-031",
            "sealed inventory fails its schema",
            dataset="sealed_inputs_2B",
            validator="V-07",
            context={"schema_errors": inv_errors},
        )
    seal_ms = int((time.perf_counter() - t1) * 1000)

    # §6: verified_at_utc reuses an existing parseable receipt, else the run receipt's time.
    receipt_path = home.path("s0_gate_receipt_2B", tokens)
    verified_at = ident.created_utc
    if receipt_path.is_file():
        try:
            verified_at = json.loads(receipt_path.read_bytes())["verified_at_utc"]
        except (ValueError, KeyError):
            verified_at = ident.created_utc
    receipt = {
        "manifest_fingerprint": ident.manifest_fingerprint,
        "seed": ident.seed,
        "parameter_hash": ident.parameter_hash,
        "verified_at_utc": verified_at,
        "sealed_inputs": receipt_items,
        "catalogue_resolution": base_report["catalogue_resolution"],
        "determinism_receipt": {**env, "policy_ids": policy_ids, "policy_digests": policy_digests},
    }
    rec_errors = json_errors(cat.entry("s0_gate_receipt_2B").schema_ref, receipt)
    if rec_errors:
        led.fail("V-06", f"{PREFIX}-030")
        raise SegmentError(
            f"{PREFIX}-030",
            "gate receipt fails its schema",
            dataset="s0_gate_receipt_2B",
            validator="V-06",
            context={"schema_errors": rec_errors},
        )
    inv_rel = home.rel("sealed_inputs_2B", tokens)
    rec_rel = home.rel("s0_gate_receipt_2B", tokens)
    path_token = f"manifest_fingerprint={ident.manifest_fingerprint}"
    if path_token not in inv_rel or path_token not in rec_rel:
        led.fail("V-13", f"{PREFIX}-070")
        raise SegmentError(
            f"{PREFIX}-070",
            "output path lacks the fingerprint token",
            validator="V-13",
            context={"embedded": ident.manifest_fingerprint, "path_token": rec_rel},
        )

    # Publish: inventory first, then receipt, so a receipt always implies an inventory.
    t2 = time.perf_counter()
    inv_bytes = canonical_json(inventory)
    rec_bytes = canonical_json(receipt)
    input_version = sha256_bytes(canonical_json({"inventory": inventory, "tokens": ident.tokens()}))
    inv_target = home.path("sealed_inputs_2B", tokens)
    try:
        inv_res = publish_folder(
            home,
            inv_target.parent,
            lambda stage: (stage / inv_target.name).write_bytes(inv_bytes),
            prefix=PREFIX,
            state="s0_sealed_inputs_2b",
            dataset_id="sealed_inputs_2B",
            input_version=input_version,
        )
        rec_res = publish_file(
            home,
            receipt_path,
            rec_bytes,
            prefix=PREFIX,
            dataset_id="s0_gate_receipt_2B",
            input_version=input_version,
        )
    except SegmentError as err:
        led.fail("V-14", err.code)
        raise
    publish_ms = int((time.perf_counter() - t2) * 1000)

    shared = {}
    for r in rows:
        shared.setdefault(r["sha256_hex"], set()).add(r["asset_id"])
    warn, fail = led.counts()
    report = {
        **base_report,
        "verified_at_utc": verified_at,
        "gate": {k: v for k, v in gate.items() if k != "gate_index_sample"},
        "inputs_summary": {
            "inputs_total": len(rows),
            "required_present": required_present,
            "optional_cache_present": cache_present,
            "optional_arrival_roster_present": roster_present,
            "policy_ids": policy_ids,
            "policy_digests": policy_digests,
        },
        "inventory_summary": {
            "inventory_rows": len(inventory),
            "digests_recorded": sum(1 for r in inventory if r["sha256_hex"]),
            "duplicate_byte_sets": sum(1 for ids_ in shared.values() if len(ids_) > 1),
        },
        "publish": {
            "targets": [
                {"id": "s0_gate_receipt_2B", "path": rec_rel, "bytes": len(rec_bytes)},
                {"id": "sealed_inputs_2B", "path": inv_rel, "bytes": len(inv_bytes)},
            ],
            "write_once_verified": True,
            "atomic_publish": True,
            "publish_bytes_total": len(rec_bytes) + len(inv_bytes),
            "outcomes": {
                "sealed_inputs_2B": inv_res.outcome,
                "s0_gate_receipt_2B": rec_res.outcome,
            },
        },
        "validators": led.rows(),
        "summary": {"overall_status": "PASS", "warn_count": warn, "fail_count": fail},
        "sealed_inputs_sample": [
            {k: r[k] for k in ("asset_id", "version_tag", "sha256_hex", "path", "partition")}
            for r in inventory[:20]
        ],
        "gate_index_sample": gate["gate_index_sample"],
        "id_map": [{"id": r["asset_id"], "path": r["path"]} for r in inventory],
        "durations_ms": {
            "gate_verify_ms": gate_ms,
            "inventory_emit_ms": seal_ms,
            "publish_ms": publish_ms,
        },
    }
    return S0Outcome(receipt, inventory, report, [inv_res, rec_res])


def s0_data_version(inventory: list[dict[str, Any]], receipt: Mapping[str, Any]) -> str:
    """Dagster data version of S0: the gate verdict and the non-policy seals only.

    Policy edits reach their consumers through the policy source assets directly, so resealing
    after a day-effect edit must not mark S1/S2 stale (spec README §1 rerun matrix). Paths that
    embed parameter_hash/run_id are excluded for the same reason; their digests are kept.
    """
    core = [
        {"asset_id": r["asset_id"], "sha256_hex": r["sha256_hex"]}
        for r in inventory
        if r["asset_id"] not in POLICY_IDS
    ]
    return sha256_bytes(
        canonical_json(
            {
                "seals": core,
                "seed": receipt["seed"],
                "manifest_fingerprint": receipt["manifest_fingerprint"],
                "verified_at_utc": receipt["verified_at_utc"],
            }
        )
    )
