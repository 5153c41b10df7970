"""2B.S8 — validation bundle and ``_passed.flag`` (``s8-validation-bundle.md``).

Grain: one bundle folder per ``manifest_fingerprint`` (no seed or run tokens), written once and
never overwritten. S8 does not re-audit: it requires a PASS ``s7_audit_report`` for every seed
of the required panel, re-checks the sealed policy digests, copies the evidence byte-for-byte
into the bundle (bundle-local form, spec README decision 6), writes ``index.json`` (canonical
JSON, H6) and ``_passed.flag`` (H3 over the members, H4 bytes), re-verifies the staged folder by
the consumer law and publishes it with one atomic rename.

Bundle layout (members sorted bytewise in the index)::

    evidence/s0/seed={seed}/s0_gate_receipt_2B.json   # byte copy, one pair per seed
    evidence/s0/seed={seed}/sealed_inputs_2B.json
    reports/seed={seed}/s7_audit_report.json         # byte copy of each PASS report
    index.json                                        # not indexed
    _passed.flag                                      # not indexed

The S0 pair is per seed because S0 outputs are partitioned ``[seed, manifest_fingerprint]`` in
this project (dictionary deviation DEV-S0-PARTITION); §3.1's single ``evidence/s0/`` pair assumes
the design's fingerprint-only S0 path.

A required seed that is not ready (its S2/S3/S4 partitions or its S7 report are missing) is not
an error: :func:`run_s8` returns ``WAITING`` naming those seeds and writes nothing. A present
report that is not PASS (or invalid) raises ``2B-S8-031``: a failing seed is never dropped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl

from segment2b.bundle_verify import (
    FLAG_NAME,
    INDEX_NAME,
    check_bundle,
    strict_flag_digest,
    verify_bundle,
)
from segment2b.catalogue.schemas import json_errors
from segment2b.errors import SegmentError
from segment2b.states.evidence import EvidenceCodes, S0Evidence, load_evidence
from segment2b.states.outcome import StateOutcome, input_version
from segment2b.storage.canonical import canonical_json
from segment2b.storage.digests import flag_bytes, folder_files, sha256_bytes, sha256_file
from segment2b.storage.home import StorageHome
from segment2b.storage.publish import PublishResult, publish_folder

__all__ = [
    "S8Result",
    "SeedDiscovery",
    "bundle_members",
    "discover_seeds",
    "index_bytes",
    "run_s8",
    "seed_order",
    "verify_s8_published",
]

PREFIX = "2B-S8"
COMPONENT = "2B.S8"
CODE_VERSION = "s8-1"
BUNDLE_ID = "validation_bundle_2B"
INDEX_ID = "validation_bundle_index_2B"
FLAG_ID = "validation_passed_flag_2B"
REPORT_ID = "s7_audit_report"
REPORT_SCHEMA_REF = "schemas.2B.yaml#/validation/s7_audit_report_v1"
INDEX_SCHEMA_REF = "schemas.2B.yaml#/validation/validation_bundle_index_2B"
DISCOVERY_IDS: tuple[str, ...] = ("s2_alias_index", "s3_day_effects", "s4_group_weights")
EVIDENCE_IDS: tuple[str, ...] = ("s0_gate_receipt_2B", "sealed_inputs_2B")
POLICY_IDS: tuple[str, ...] = (
    "alias_layout_policy_v1",
    "route_rng_policy_v1",
    "virtual_edge_policy_v1",
)
SEED_RULE = "intersection(s2_alias_index, s3_day_effects, s4_group_weights)"
VALIDATOR_CODES: Mapping[str, tuple[str, ...]] = {
    "V-01": ("001",),
    "V-02": ("020", "021", "023"),
    "V-03": ("030",),
    "V-04": ("032", "031"),
    "V-05": ("033",),
    "V-06": ("040", "041", "042", "044"),
    "V-07": ("043", "045"),
    "V-08": ("050",),
    "V-09": ("052", "051"),
    "V-10": ("060", "061"),
    "V-11": ("080", "081", "082"),
    "V-12": ("023", "021", "090"),
}
_CODE_VALIDATOR = {
    code: vid for vid, codes in VALIDATOR_CODES.items() for code in codes if vid != "V-12"
}
_UINT64_MAX = (1 << 64) - 1
_CANONICAL_SEED = re.compile(r"0|[1-9][0-9]*")
_SEED_SEGMENT = re.compile(r"(?:^|/)seed=([^/]*)(?:/|$)")
_EVIDENCE_CODES = EvidenceCodes(
    receipt_missing="001",
    inventory_invalid="001",
    not_sealed="033",
    path_mismatch="033",
    digest_mismatch="033",
    created_missing="001",
    policy_schema="033",
)
_LOG = logging.getLogger(__name__)


def _err(suffix: str, message: str, **kw: Any) -> SegmentError:
    return SegmentError(
        f"{PREFIX}-{suffix}",
        message,
        validator=kw.pop("validator", None) or _CODE_VALIDATOR.get(suffix),
        **kw,
    )


# --- seeds ---------------------------------------------------------------------------------


def seed_order(seeds: Iterable[int]) -> list[int]:
    """§4.3: ASCII order of the decimal strings (``[100, 42, 7]`` → ``"100" < "42" < "7"``)."""
    return sorted(set(seeds), key=str)


def _parse_seed(token: str, where: str) -> int:
    """Canonical unsigned decimal ≤ 2^64 − 1, else ``2B-S8-030`` (§4.5)."""
    if not _CANONICAL_SEED.fullmatch(token) or int(token) > _UINT64_MAX:
        raise _err(
            "030",
            f"seed token {token!r} is not a canonical uint64",
            dataset=where,
            key=f"seed={token}",
        )
    return int(token)


@dataclass(frozen=True)
class SeedDiscovery:
    """§4: seeds per dataset, their intersection (ASCII order) and the partial ones."""

    per_dataset: Mapping[str, frozenset[int]]
    discovered: tuple[int, ...]
    partial: tuple[int, ...]


def discover_seeds(home: StorageHome, manifest_fingerprint: str) -> SeedDiscovery:
    """Glob each discovery dataset's template with ``seed=*`` and keep completed partitions.

    S2 counts when its ``index.json`` exists; S3/S4 when the folder holds ≥ 1 ``*.parquet``.
    Staging folders live under ``<home>/tmp/`` and never match these templates.
    """
    per: dict[str, frozenset[int]] = {}
    for dataset_id in DISCOVERY_IDS:
        rel = home.rel(dataset_id, {"seed": "*", "manifest_fingerprint": manifest_fingerprint})
        folder_like = rel.endswith("/")
        found: set[int] = set()
        for match in home.root.glob(rel.rstrip("/")):
            done = (
                match.is_dir() and any(match.glob("*.parquet")) if folder_like else match.is_file()
            )
            if not done:
                continue
            token = _SEED_SEGMENT.search(match.relative_to(home.root).as_posix())
            if token is None:
                continue
            found.add(_parse_seed(token.group(1), dataset_id))
        per[dataset_id] = frozenset(found)
    sets = list(per.values())
    both = frozenset.intersection(*sets) if sets else frozenset()
    union = frozenset().union(*sets)
    return SeedDiscovery(per, tuple(seed_order(both)), tuple(seed_order(union - both)))


# --- bundle members ------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One bundle member: bundle-relative path, its source and bytes read once."""

    path: str
    source: Path
    data: bytes

    @property
    def sha256_hex(self) -> str:
        return sha256_bytes(self.data)


def bundle_members(
    home: StorageHome, manifest_fingerprint: str, seeds: Sequence[int]
) -> list[Member]:
    """Members of the bundle-local layout for ``seeds``, sorted bytewise by path."""
    out: list[Member] = []
    for seed in seeds:
        tokens = {"seed": str(seed), "manifest_fingerprint": manifest_fingerprint}
        for dataset_id in EVIDENCE_IDS:
            source = home.path(dataset_id, tokens)
            out.append(
                Member(f"evidence/s0/seed={seed}/{source.name}", source, source.read_bytes())
            )
        source = home.path(REPORT_ID, tokens)
        out.append(Member(f"reports/seed={seed}/{source.name}", source, source.read_bytes()))
    return sorted(out, key=lambda m: m.path.encode("ascii"))


def index_rows(members: Sequence[Member]) -> list[dict[str, str]]:
    return [
        {"path": m.path, "sha256_hex": m.sha256_hex}
        for m in sorted(members, key=lambda m: m.path.encode("ascii"))
    ]


def index_bytes(rows: Sequence[Mapping[str, str]]) -> bytes:
    """§6.2: canonical JSON (H6) — keys sorted, ``,``/``:`` separators, no trailing newline."""
    return canonical_json([dict(r) for r in rows])


# --- ledger and result ---------------------------------------------------------------------


class _Ledger:
    """Validators V-01..V-12 for the run-report (PASS lists the full code list)."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def passed(self, vid: str, **context: Any) -> None:
        self.items[vid] = {
            "id": vid,
            "status": "PASS",
            "codes": [f"{PREFIX}-{c}" for c in VALIDATOR_CODES[vid]],
            "context": context,
        }

    def warned(self, vid: str, reason: str, **context: Any) -> None:
        self.items[vid] = {
            "id": vid,
            "status": "WARN",
            "codes": [f"{PREFIX}-{c}" for c in VALIDATOR_CODES[vid]],
            "context": {"reason": reason, **context},
        }

    def rows(self) -> list[dict[str, Any]]:
        return [self.items[k] for k in sorted(self.items)]


@dataclass(frozen=True)
class S8Result:
    """What one S8 invocation did.

    ``status``: ``PUBLISHED`` (new bundle), ``IDEMPOTENT`` (identical bundle already there) or
    ``WAITING`` (nothing written; ``waiting_for`` names the required seeds not yet ready and
    ``reasons`` why). ``outcome`` is None while waiting.
    """

    status: Literal["PUBLISHED", "IDEMPOTENT", "WAITING"]
    waiting_for: tuple[int, ...]
    outcome: StateOutcome | None
    message: str
    reasons: Mapping[int, str] = field(default_factory=dict)

    @property
    def published(self) -> bool:
        return self.status != "WAITING"


# --- checks --------------------------------------------------------------------------------


def _check_report(
    home: StorageHome, seed: int, manifest_fingerprint: str, ev: S0Evidence
) -> Mapping[str, Any]:
    """V-04/V-10 for one present report: schema + PASS (031), embeds vs path and S0 (061)."""
    tokens = {"seed": str(seed), "manifest_fingerprint": manifest_fingerprint}
    rel = home.rel(REPORT_ID, tokens)
    try:
        report = json.loads(home.path(REPORT_ID, tokens).read_bytes())
    except ValueError as exc:
        raise _err("031", f"S7 report is not JSON: {exc}", dataset=REPORT_ID, key=rel) from exc
    errors = json_errors(REPORT_SCHEMA_REF, report)
    if errors:
        raise _err(
            "031",
            f"S7 report fails {REPORT_SCHEMA_REF}: {errors[0]}",
            dataset=REPORT_ID,
            key=rel,
            context={"schema_errors": errors},
        )
    status = report["summary"]["overall_status"]
    if status != "PASS":
        failing = [c["id"] for c in report["checks"] if c["status"] == "FAIL"]
        raise _err(
            "031",
            f"S7_REPORT_NOT_PASS: seed {seed} overall_status={status} (failing {failing})",
            dataset=REPORT_ID,
            key=rel,
            context={"seed": seed, "failing_checks": failing},
        )
    if str(report["seed"]) != str(seed) or report["manifest_fingerprint"] != manifest_fingerprint:
        raise _err(
            "061",
            "S7 report seed/manifest_fingerprint differ from its path tokens",
            dataset=REPORT_ID,
            key=rel,
        )
    if report["created_utc"] != ev.created_utc:
        raise _err(
            "061",
            f"S7 report created_utc {report['created_utc']} != S0 verified_at_utc "
            f"{ev.created_utc} (stale report after a re-seal; re-run S1-S7)",
            dataset=REPORT_ID,
            key=rel,
        )
    return report


def _policy_parity(home: StorageHome, evidence: Mapping[int, S0Evidence]) -> dict[str, str]:
    """V-05: every seed's sealed policy row matches the dictionary path and file bytes (033)."""
    digests: dict[str, str] = {}
    for seed, ev in evidence.items():
        for pid in POLICY_IDS:
            if not ev.is_sealed(pid):
                raise _err("033", f"seed {seed}: policy not sealed by S0", dataset=pid, key=pid)
            row = ev.rows[pid]
            rendered = home.rel(pid, {})
            if row["path"] != rendered or dict(row["partition"]) != {}:
                raise _err(
                    "033",
                    f"seed {seed}: sealed path/partition differs from the dictionary",
                    dataset=pid,
                    key=str(row["path"]),
                )
            path = home.path(pid)
            if pid not in digests:
                if not path.is_file():
                    raise _err("033", "sealed policy file is missing", dataset=pid, key=rendered)
                digests[pid] = sha256_file(path)
            if digests[pid] != row["sha256_hex"]:
                raise _err(
                    "033",
                    f"SEALED_DIGEST_MISMATCH: {pid} bytes differ from seed {seed}'s seal",
                    dataset=pid,
                    key=rendered,
                    context={"sealed": row["sha256_hex"], "actual": digests[pid]},
                )
    return digests


def _raise_findings(findings: Sequence[Any], *, override: str | None = None) -> None:
    if findings:
        first = findings[0]
        suffix = override or first.code.rsplit("-", 1)[-1]
        raise _err(
            suffix,
            f"bundle re-validation failed: {first.message}",
            dataset=BUNDLE_ID,
            key=first.path,
            context={"findings": [str(f) for f in findings[:10]]},
        )


def _existing_pairs(folder: Path) -> set[tuple[str, str]]:
    return {(rel, sha256_file(folder / rel)) for rel in folder_files(folder)}


# --- runner --------------------------------------------------------------------------------


def run_s8(
    home: StorageHome, *, manifest_fingerprint: str, required_seeds: Sequence[int]
) -> S8Result:
    """Publish the manifest's validation bundle once every required seed has an S7 PASS.

    Parameters
    ----------
    home : StorageHome
        Storage home holding every seed.
    manifest_fingerprint : str
        The manifest to certify.
    required_seeds : Sequence[int]
        The seed panel; the bundle holds exactly these seeds (ASCII order).

    Returns
    -------
    S8Result
        ``WAITING`` (nothing written) while a required seed lacks S2/S3/S4 outputs or its
        S7 report; else ``PUBLISHED`` or ``IDEMPOTENT`` with the outcome.

    Raises
    ------
    SegmentError
        ``2B-S8-NNN``: 001 S0 evidence, 030 seed set, 031 report not PASS/invalid, 033
        policy digest, 04x/05x bundle law, 060/061 identity, 080 existing bundle differs,
        081 non-deterministic rebuild, 082 publish.
    """
    try:
        return _run_s8(home, manifest_fingerprint, required_seeds)
    except SegmentError as err:
        _LOG.error(
            "%s",
            json.dumps(
                {
                    "event": "VALIDATION",
                    "validator_id": err.validator,
                    "result": "fail",
                    "error_code": err.code,
                    "detail": err.short_message,
                    "manifest_fingerprint": manifest_fingerprint,
                },
                sort_keys=True,
            ),
        )
        raise


def _run_s8(
    home: StorageHome, manifest_fingerprint: str, required_seeds: Sequence[int]
) -> S8Result:
    mf = manifest_fingerprint
    led = _Ledger()
    cat = home.catalogue
    # V-02: every id used resolves.
    for dataset_id in (
        *DISCOVERY_IDS,
        *EVIDENCE_IDS,
        REPORT_ID,
        *POLICY_IDS,
        BUNDLE_ID,
        INDEX_ID,
        FLAG_ID,
    ):
        cat.entry(dataset_id, code=f"{PREFIX}-020")
    led.passed("V-02")
    # V-10 (partition law): manifest-scoped target, no seed/run tokens.
    bundle_rel = home.rel(BUNDLE_ID, {"manifest_fingerprint": mf})
    if f"manifest_fingerprint={mf}" not in bundle_rel or any(
        t in bundle_rel for t in ("seed=", "parameter_hash=", "run_id=")
    ):
        raise _err("060", f"bundle path {bundle_rel} is not manifest-scoped", dataset=BUNDLE_ID)

    # V-03: the panel and discovery.
    panel = seed_order(required_seeds)
    for seed in panel:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= _UINT64_MAX:
            raise _err("030", f"required seed {seed!r} is not a uint64", dataset=BUNDLE_ID)
    if not panel:
        raise _err("030", "SEED_SET_EMPTY: no required seeds", dataset=BUNDLE_ID)
    disc = discover_seeds(home, mf)
    if disc.partial:
        _LOG.warning(
            "S8 mf=%s: seeds %s have only some of S2/S3/S4 and are excluded from discovery",
            mf,
            list(disc.partial),
        )
    extra = [s for s in disc.discovered if s not in panel]
    if extra:
        _LOG.warning("S8 mf=%s: discovered seeds %s are outside the panel; not bundled", mf, extra)
    led.passed(
        "V-03", seeds_discovered=[str(s) for s in disc.discovered], required=[str(s) for s in panel]
    )

    # V-01, V-04, V-10 per seed; not-ready seeds are collected, failing reports raise.
    waiting: dict[int, str] = {}
    evidence: dict[int, S0Evidence] = {}
    warn_count = 0
    for seed in panel:
        tokens = {"seed": str(seed), "manifest_fingerprint": mf}
        if seed not in disc.discovered:
            missing = [d for d in DISCOVERY_IDS if seed not in disc.per_dataset[d]]
            waiting[seed] = f"{', '.join(missing)} not published"
            continue
        if not home.path(REPORT_ID, tokens).is_file():
            waiting[seed] = "s7_audit_report missing (run S7)"
            continue
        ev = load_evidence(
            home, seed=seed, manifest_fingerprint=mf, prefix=PREFIX, codes=_EVIDENCE_CODES
        )
        report = _check_report(home, seed, mf, ev)
        warn_count += int(report["summary"]["warn_count"])
        evidence[seed] = ev
    if waiting:
        order = tuple(seed_order(waiting))
        message = "S8 waiting for seed(s) " + ", ".join(f"{s} ({waiting[s]})" for s in order)
        _LOG.info("%s; mf=%s; nothing published", message, mf)
        return S8Result("WAITING", order, None, message, dict(waiting))
    led.passed("V-01")
    led.passed("V-04", s7_pass_count=len(evidence), warn_count=warn_count)

    # V-05: policy parity.
    policy_digests = _policy_parity(home, evidence)
    led.passed("V-05")

    # Members, index and flag (built twice: 081 self-check).
    members = bundle_members(home, mf, panel)
    rows = index_rows(members)
    idx = index_bytes(rows)
    if idx != index_bytes(index_rows(list(reversed(members)))):
        raise _err("081", "NON_IDEMPOTENT_REEMIT: index rendering is not deterministic")
    errors = json_errors(INDEX_SCHEMA_REF, json.loads(idx))
    if errors:
        raise _err("040", f"index fails {INDEX_SCHEMA_REF}: {errors[0]}", dataset=INDEX_ID)
    digest = sha256_bytes(b"".join(m.data for m in sorted(members, key=lambda m: m.path.encode())))
    flag = flag_bytes(digest)
    expected = {(m.path, m.sha256_hex) for m in members}
    expected |= {(INDEX_NAME, sha256_bytes(idx)), (FLAG_NAME, sha256_bytes(flag))}

    target = home.path(BUNDLE_ID, {"manifest_fingerprint": mf})
    status: Literal["PUBLISHED", "IDEMPOTENT"]
    if target.exists():
        # §9.3: compare (path, digest) pairs, so renamed or moved members are caught too.
        if _existing_pairs(target) != expected:
            raise _err(
                "080",
                "IMMUTABLE_OVERWRITE: a different bundle already exists for this manifest",
                dataset=BUNDLE_ID,
                key=bundle_rel,
            )
        _LOG.info("S8 mf=%s: bundle already exists with identical bytes; no-op", mf)
        size = sum(len(m.data) for m in members) + len(idx) + len(flag)
        result = PublishResult(target, size, digest, "idempotent")
        status = "IDEMPOTENT"
    else:

        def write(stage: Path) -> None:
            for m in members:
                path = stage / m.path
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(m.data)
                if sha256_file(path) != sha256_bytes(m.data):
                    raise _err("050", "staged copy differs from its source", key=m.path)
            (stage / INDEX_NAME).write_bytes(idx)
            (stage / FLAG_NAME).write_bytes(flag)
            # §5.10 pre-publish re-validation from disk, plus the writer's strict flag form.
            _raise_findings(check_bundle(stage).findings)
            if strict_flag_digest((stage / FLAG_NAME).read_bytes()) != digest:
                raise _err("052", "staged _passed.flag is not in the strict writer form")
            if {(rel, sha256_file(stage / rel)) for rel in folder_files(stage)} != expected:
                raise _err("043", "staged folder holds files other than members + index + flag")

        result = publish_folder(
            home,
            target,
            write,
            prefix=PREFIX,
            state="s8_validation_bundle",
            dataset_id=BUNDLE_ID,
            input_version=input_version(CODE_VERSION, members=rows),
            immutable=True,
        )
        _raise_findings(check_bundle(target).findings, override="082")
        # The bundle's version is its flag digest (H3), whichever branch published it.
        result = dataclasses.replace(result, digest=digest)
        status = "PUBLISHED" if result.outcome == "published" else "IDEMPOTENT"
    led.passed("V-06")
    led.passed("V-07")
    led.passed("V-08")
    led.passed("V-09")
    led.passed("V-10")
    led.passed("V-11", outcome=result.outcome)
    led.passed("V-12")

    first = evidence[panel[0]]
    report = {
        "component": COMPONENT,
        "manifest_fingerprint": mf,
        "created_utc": first.created_utc,
        "catalogue_resolution": dict(first.receipt.get("catalogue_resolution") or {}),
        "seed_coverage": {
            "rule": SEED_RULE,
            "seeds_discovered": [str(s) for s in disc.discovered],
            "required_count": len(panel),
            "s7_pass_count": len(evidence),
            "missing_or_fail_count": 0,
        },
        "inputs_digest": {
            **{
                d: {
                    "path": cat.entry(d).path,
                    "partition": {"seed": "<varies>", "manifest_fingerprint": mf},
                    "sha256_hex": None,
                }
                for d in (*DISCOVERY_IDS[:1], "s2_alias_blob", *DISCOVERY_IDS[1:])
            },
            "policies": {
                pid: {"path": home.rel(pid, {}), "sha256_hex": policy_digests[pid]}
                for pid in POLICY_IDS
            },
        },
        "bundle": {
            "publish_path": bundle_rel if bundle_rel.endswith("/") else f"{bundle_rel}/",
            "index_path": f"./{INDEX_NAME}",
            "flag_path": f"./{FLAG_NAME}",
            "files_indexed": len(rows),
            "bytes_indexed_total": sum(len(m.data) for m in members),
            "index_ascii_lex": True,
            "flag_excluded_from_index": True,
            "bundle_digest": digest,
            "flag_digest_matches": True,
        },
        "validators": led.rows(),
        "summary": {"overall_status": "PASS", "warn_count": warn_count, "fail_count": 0},
    }
    _LOG.info("%s", json.dumps(report, sort_keys=True))
    frame = pl.DataFrame(rows, schema={"path": pl.String, "sha256_hex": pl.String})
    outcome = StateOutcome(
        frame,
        report,
        [result],
        extras={"bundle_digest": digest, "index_bytes": idx, "flag_bytes": flag},
    )
    message = f"S8 {status.lower()} bundle {bundle_rel} for seeds {[str(s) for s in panel]}"
    _LOG.info("%s", message)
    return S8Result(status, (), outcome, message)


def verify_s8_published(home: StorageHome, *, manifest_fingerprint: str) -> list[str]:
    """Consumer re-verification (§7.5) of the published bundle; empty list = PASS."""
    return verify_bundle(home.path(BUNDLE_ID, {"manifest_fingerprint": manifest_fingerprint}))
