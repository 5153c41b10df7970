"""2B.S2 — alias tables (``s2-alias-tables.md``): ``s2_alias_blob`` + ``s2_alias_index``.

Grain: one alias slice per merchant (``alias.bin``, slices in ascending ``merchant_id``) and
one index object per seed × fingerprint whose ``merchants`` rows say where each slice lives and
how to verify it. RNG-free; same sealed inputs ⇒ byte-identical blob and index.

``build_s2`` is the pure core, ``run_s2`` the runner, ``verify_s2_published`` the post-publish
re-check behind the structural asset checks.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from segment2b.catalogue.schemas import json_errors
from segment2b.core.alias import (
    AliasSliceError,
    BlobLayout,
    assemble_blob,
    decode_probabilities,
    decode_probabilities_segments,
    encode_prob_q,
    grid_masses,
    parse_slice,
    segment_max,
    segment_offsets,
    segment_sum,
    slice_length,
    walker_vose,
)
from segment2b.errors import SegmentError
from segment2b.policy.models import AliasLayoutPolicyV1
from segment2b.states.evidence import EvidenceCodes, load_evidence
from segment2b.states.outcome import StateOutcome, input_version
from segment2b.states.s0_gate import environment
from segment2b.states.s1_site_weights import ValidatorLedger
from segment2b.storage.canonical import pretty_json
from segment2b.storage.digests import folder_digest, sha256_bytes
from segment2b.storage.home import StorageHome
from segment2b.storage.publish import PublishResult, publish_file
from segment2b.storage.reports import write_report
from segment2b.storage.tables import read_partition

PREFIX = "2B-S2"
CODE_VERSION = "s2-1"
POLICY_ID = "alias_layout_policy_v1"
INDEX_ID = "s2_alias_index"
BLOB_ID = "s2_alias_blob"
S1_ID = "s1_site_weights"
INDEX_SCHEMA_REF = "schemas.2B.yaml#/plan/s2_alias_index"
S1_COLUMNS = ("merchant_id", "legal_country_iso", "site_order", "p_weight", "quantised_bits")
VALIDATOR_IDS: tuple[str, ...] = tuple(f"V-{i:02d}" for i in range(1, 28))
MAX_VIOLATIONS = 50

# §3: the only accepted values (fail closed → 2B-S2-032). Paths are dotted policy fields.
ACCEPTED_EXACT: Mapping[str, Any] = {
    "layout_version": "2B.alias.blob.v1",
    "encode_spec.mass_rounding": "round_to_nearest_ties_to_even",
    "encode_spec.delta_adjust": "residual_ranked_plus_minus_one",
    "encode_spec.worklist_order": "ascending_index",
    "record_layout.slice_header": "u32_n_sites,u32_prob_qbits,u32_reserved0,u32_reserved1",
    "record_layout.prob_q_encoding": "Q0.32_floor_clamp_1_to_2^32-1",
    "record_layout.alias_index_type": "u32",
    "decode_law": "walker_vose_q0_32",
    "checksum": {"algorithm": "sha256", "scope": "slice_payload_bytes", "encoding": "hex64_lower"},
    "blob_digest": {"algorithm": "sha256", "scope": "raw_blob_bytes", "encoding": "hex64_lower"},
}

_EVIDENCE_CODES = EvidenceCodes(
    receipt_missing="001",
    inventory_invalid="020",
    not_sealed="022",
    path_mismatch="070",
    digest_mismatch="022",
    created_missing="086",
    policy_schema="031",
)
_CODE_VALIDATOR = {
    "001": "V-01",
    "020": "V-02",
    "021": "V-02",
    "022": "V-24",
    "031": "V-04",
    "032": "V-04",
    "040": "V-06",
    "041": "V-07",
    "042": "V-26",
    "045": "V-13",
    "050": "V-08",
    "051": "V-09",
    "052": "V-16",
    "053": "V-16",
    "055": "V-17",
    "058": "V-05",
    "060": "V-11",
    "061": "V-12",
    "062": "V-14",
    "063": "V-18",
    "064": "V-25",
    "070": "V-03",
    "080": "V-22",
    "081": "V-23",
    "082": "V-22",
    "083": "V-10",
    "085": "V-19",
    "086": "V-20",
}


def _err(
    suffix: str,
    message: str,
    *,
    key: str | None = None,
    dataset: str = INDEX_ID,
    validator: str | None = None,
    **context: Any,
) -> SegmentError:
    return SegmentError(
        f"{PREFIX}-{suffix}",
        message,
        dataset=dataset,
        key=key,
        validator=validator or _CODE_VALIDATOR.get(suffix),
        context=context,
    )


# --- policy (§3) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class S2Settings:
    """The policy fields S2 uses, checked against the accepted-value table."""

    policy_id: str
    version_tag: str
    policy_version: str
    layout_version: str
    endianness: str
    alignment_bytes: int
    pad_byte: int
    pad_included_in_slice_length: bool
    bits: int
    normalisation_epsilon: float
    quantisation_epsilon: float
    tiny_negative_epsilon: float
    treat_within_epsilon_of_one_as_one: bool
    prob_qbits: int
    required_header: tuple[str, ...]
    required_row: tuple[str, ...]

    @property
    def grid_size(self) -> int:
        return 1 << self.bits


def _dig(doc: Mapping[str, Any], dotted: str) -> Any:
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def resolve_settings(policy: AliasLayoutPolicyV1) -> S2Settings:
    """§3 accepted values and minima; any deviation is ``2B-S2-032`` naming the field.

    Identity fields (``policy_id``, ``version_tag``, ``policy_version``) must be present (the
    model enforces id and semver); their values are the current ones, not pinned, so the
    baseline pack (1.0.1) still builds. ``quantised_bits`` must lie in [1, prob_qbits]: the
    decode reproduces m/G only to ~2^−Q, so a finer grid than Q bits cannot be honoured.
    """
    doc = policy.model_dump(mode="python")

    def bad(field_name: str, message: str) -> SegmentError:
        return _err("032", message, key=field_name, dataset=POLICY_ID, field=field_name)

    for name in ("policy_id", "version_tag", "policy_version"):
        if not doc.get(name):
            raise bad(name, f"policy identity field {name} is missing")
    for dotted, expected in ACCEPTED_EXACT.items():
        value = _dig(doc, dotted)
        if isinstance(expected, Mapping):
            value = dict(value) if isinstance(value, Mapping) else value
        if value != expected:
            raise bad(dotted, f"policy {dotted}={value!r} is not the accepted {expected!r}")
    if policy.endianness not in ("little", "big"):
        raise bad("endianness", f"endianness {policy.endianness!r} not in (little, big)")
    if not isinstance(policy.alignment_bytes, int) or policy.alignment_bytes < 1:
        raise bad("alignment_bytes", "alignment_bytes must be an integer >= 1")
    treat = _dig(doc, "encode_spec.treat_within_epsilon_of_one_as_one")
    if not isinstance(treat, bool):
        raise bad(
            "encode_spec.treat_within_epsilon_of_one_as_one",
            "encode_spec.treat_within_epsilon_of_one_as_one must be a boolean",
        )
    q_bits = _dig(doc, "record_layout.prob_qbits")
    if isinstance(q_bits, bool) or not isinstance(q_bits, int) or not 1 <= q_bits <= 32:
        raise bad("record_layout.prob_qbits", f"prob_qbits={q_bits!r} not in [1, 32]")
    bits = policy.quantised_bits
    if not 1 <= bits <= q_bits:
        raise bad("quantised_bits", f"quantised_bits={bits} not in [1, prob_qbits={q_bits}]")
    if not policy.normalisation_epsilon > 0:
        raise bad("normalisation_epsilon", "normalisation_epsilon must be > 0")
    if not policy.quantisation_epsilon > 0:
        raise bad("quantisation_epsilon", "quantisation_epsilon must be > 0")
    pad_hex = policy.padding_rule.pad_byte_hex
    tiny = policy.tiny_negative_epsilon
    return S2Settings(
        policy_id=policy.policy_id,
        version_tag=policy.version_tag,
        policy_version=policy.policy_version,
        layout_version=policy.layout_version,
        endianness=policy.endianness,
        alignment_bytes=policy.alignment_bytes,
        pad_byte=int(pad_hex, 16),
        pad_included_in_slice_length=bool(policy.padding_rule.pad_included_in_slice_length),
        bits=bits,
        normalisation_epsilon=float(policy.normalisation_epsilon),
        quantisation_epsilon=float(policy.quantisation_epsilon),
        tiny_negative_epsilon=float(tiny) if tiny else float(policy.normalisation_epsilon),
        treat_within_epsilon_of_one_as_one=treat,
        prob_qbits=q_bits,
        required_header=tuple(policy.required_index_fields.header),
        required_row=tuple(policy.required_index_fields.merchant_row),
    )


# --- build (§4) ------------------------------------------------------------------------------


@dataclass(frozen=True)
class S2Build:
    """Output of :func:`build_s2`: blob bytes, the index object and diagnostics.

    ``p_hat`` is the decoded probability of every S1 row (same order as the input frame).
    """

    blob: bytes
    index: Mapping[str, Any]
    layout: BlobLayout
    p_hat: np.ndarray
    counters: Mapping[str, Any]
    settings: S2Settings
    durations_ms: Mapping[str, int] = field(default_factory=dict)

    @property
    def index_bytes(self) -> bytes:
        """§4.8 serialisation: sorted keys, indent 2, ASCII, one trailing newline."""
        return pretty_json(self.index)


def _check_input(s1: pl.DataFrame, settings: S2Settings) -> pl.DataFrame:
    missing = [c for c in S1_COLUMNS if c not in s1.columns]
    if missing:
        raise _err("020", f"s1_site_weights lacks column(s) {missing}", dataset=S1_ID)
    frame = s1.select(S1_COLUMNS)
    bad_p = frame.filter(~pl.col("p_weight").is_between(0.0, 1.0) | pl.col("p_weight").is_nan())
    if bad_p.height:
        row = bad_p.row(0, named=True)
        raise _err(
            "053",
            f"s1 p_weight {row['p_weight']!r} is not a finite weight in [0, 1]",
            dataset=S1_ID,
            key=f"merchant_id={row['merchant_id']}",
        )
    off_bits = frame.filter(pl.col("quantised_bits") != settings.bits)
    if off_bits.height:
        row = off_bits.row(0, named=True)
        raise _err(
            "058",
            f"s1 quantised_bits={row['quantised_bits']} != policy b={settings.bits}",
            dataset=S1_ID,
            key=f"merchant_id={row['merchant_id']}",
        )
    if frame.height > 1:
        pk = frame.select("merchant_id", "legal_country_iso", "site_order")
        prev = pk.shift(1)
        ascending = (
            (pk["merchant_id"] > prev["merchant_id"])
            | (
                (pk["merchant_id"] == prev["merchant_id"])
                & (
                    (pk["legal_country_iso"] > prev["legal_country_iso"])
                    | (
                        (pk["legal_country_iso"] == prev["legal_country_iso"])
                        & (pk["site_order"] > prev["site_order"])
                    )
                )
            )
        ).fill_null(True)
        if not ascending.all():
            i = int((~ascending).arg_true()[0])
            row = pk.row(i, named=True)
            raise _err(
                "083",
                "s1_site_weights rows are not in strictly ascending PK order",
                dataset=S1_ID,
                key=f"merchant_id={row['merchant_id']}/legal_country_iso="
                f"{row['legal_country_iso']}/site_order={row['site_order']}",
            )
    return frame


def build_index(
    settings: S2Settings,
    merchant_ids: Sequence[int],
    sites: Sequence[int],
    layout: BlobLayout,
    *,
    created_utc: str,
    policy_digest: str,
) -> dict[str, Any]:
    """The §5.1 index object (rows ascending ``merchant_id``)."""
    rows = [
        {
            "merchant_id": int(m),
            "offset": int(o),
            "length": int(n),
            "sites": int(k),
            "quantised_bits": settings.bits,
            "checksum": c,
        }
        for m, o, n, k, c in zip(
            merchant_ids,
            layout.offsets.tolist(),
            layout.lengths.tolist(),
            sites,
            layout.checksums,
            strict=True,
        )
    ]
    return {
        "layout_version": settings.layout_version,
        "endianness": settings.endianness,
        "alignment_bytes": settings.alignment_bytes,
        "quantised_bits": settings.bits,
        "created_utc": created_utc,
        "policy_id": POLICY_ID,
        "policy_digest": policy_digest,
        "blob_sha256": layout.sha256,
        "blob_size_bytes": len(layout.blob),
        "merchants_count": len(rows),
        "merchants": rows,
    }


def index_violations(
    index: Mapping[str, Any],
    settings: S2Settings,
    *,
    blob_size: int,
    created_utc: str,
    policy_digest: str,
    s1_sites: Mapping[int, int] | None = None,
    blob_sha256: str | None = None,
) -> list[SegmentError]:
    """§4.7 post-build checks, in order; every failing check, each with its code.

    ``s1_sites`` (merchant → K) enables the coverage/site-count extras (050/051);
    ``blob_sha256`` (a fresh re-hash) enables the digest extra (062).
    """
    out: list[SegmentError] = []
    rows = index.get("merchants") if isinstance(index.get("merchants"), list) else []
    missing = [f for f in settings.required_header if f not in index]
    missing += [f"merchants[].{f}" for r in rows[:1] for f in settings.required_row if f not in r]
    if missing:
        out.append(_err("042", f"index lacks required fields {missing}", key=missing[0]))
    schema = json_errors(INDEX_SCHEMA_REF, index)
    if schema:
        out.append(_err("040", f"index fails its schema: {schema[0]}", schema_errors=schema))
        return out  # the field checks below need a well-formed index
    if index["merchants_count"] != len(rows):
        out.append(_err("045", f"merchants_count={index['merchants_count']} != {len(rows)} rows"))
    if index["blob_size_bytes"] != blob_size:
        out.append(_err("045", f"blob_size_bytes={index['blob_size_bytes']} != {blob_size} bytes"))
    if index["policy_id"] != POLICY_ID or index["policy_digest"] != policy_digest:
        out.append(_err("085", "policy_id/policy_digest differ from the sealed policy"))
    if index["created_utc"] != created_utc:
        out.append(_err("086", f"created_utc {index['created_utc']} != receipt {created_utc}"))
    if (
        index["endianness"] != settings.endianness
        or index["alignment_bytes"] != settings.alignment_bytes
        or index["layout_version"] != settings.layout_version
    ):
        out.append(_err("064", "layout_version/endianness/alignment_bytes differ from policy"))
    if index["quantised_bits"] != settings.bits:
        out.append(_err("058", f"header quantised_bits={index['quantised_bits']} != policy"))
    ids = [r["merchant_id"] for r in rows]
    if any(b <= a for a, b in itertools.pairwise(ids)):
        out.append(_err("083", "index rows are not in strictly ascending merchant_id"))
    prev_end = 0
    for r in sorted(rows, key=lambda r: r["offset"]):
        key = f"merchant_id={r['merchant_id']}"
        start, end = r["offset"], r["offset"] + r["length"]
        if end > blob_size:
            out.append(
                _err("060", f"slice [{start}, {end}) exceeds blob size {blob_size}", key=key)
            )
        if start < prev_end:
            out.append(
                _err("061", f"slice at {start} overlaps the previous end {prev_end}", key=key)
            )
        if start % settings.alignment_bytes:
            out.append(
                _err("064", f"offset {start} not aligned to {settings.alignment_bytes}", key=key)
            )
        if r["quantised_bits"] != settings.bits:
            msg = f"row quantised_bits={r['quantised_bits']} != policy"
            out.append(_err("058", msg, key=key))
        prev_end = max(prev_end, end)
    if s1_sites is not None:
        indexed = {r["merchant_id"]: r["sites"] for r in rows}
        if set(indexed) != set(s1_sites):
            extra = sorted(set(indexed) ^ set(s1_sites))
            out.append(
                _err(
                    "050",
                    f"index merchants differ from s1_site_weights ({len(extra)} differ)",
                    key=f"merchant_id={extra[0]}",
                )
            )
        for m, k in indexed.items():
            if m in s1_sites and s1_sites[m] != k:
                out.append(
                    _err(
                        "051", f"index sites={k} != s1 sites={s1_sites[m]}", key=f"merchant_id={m}"
                    )
                )
    if blob_sha256 is not None and index["blob_sha256"] != blob_sha256:
        out.append(_err("062", "blob_sha256 differs from the SHA-256 of the blob bytes"))
    return out


def build_s2(
    s1: pl.DataFrame,
    policy: AliasLayoutPolicyV1,
    *,
    created_utc: str,
    policy_digest: str,
) -> S2Build:
    """Alias blob + index from ``s1_site_weights`` (§4), fully checked before returning.

    Parameters
    ----------
    s1 : polars.DataFrame
        S1 rows in PK order (``merchant_id, legal_country_iso, site_order, p_weight,
        quantised_bits`` at least).
    policy : AliasLayoutPolicyV1
        Validated policy model; the accepted-value table is enforced here (``032``).
    created_utc : str
        S0 ``verified_at_utc``.
    policy_digest : str
        Sealed H1 digest of the policy file (echoed as ``policy_digest``).

    Raises
    ------
    SegmentError
        ``2B-S2-0NN`` per §8, naming the merchant where there is one.
    """
    t0 = time.perf_counter()
    settings = resolve_settings(policy)
    frame = _check_input(s1, settings)
    mid_arr = frame["merchant_id"].to_numpy()
    offsets = segment_offsets(mid_arr)
    sizes = np.diff(offsets)
    mids: list[int] = mid_arr[offsets[:-1]].tolist()
    p = frame["p_weight"].to_numpy().astype(np.float64, copy=True)

    # §4.1 integer grid (S2 law: signed residual, no skipping, one-hot shortcut).
    grid = grid_masses(
        p,
        offsets,
        settings.bits,
        residual="signed",
        one_hot_epsilon=(
            settings.normalisation_epsilon if settings.treat_within_epsilon_of_one_as_one else None
        ),
    )
    if (grid.unassigned > 0).any():
        i = int(np.argmax(grid.unassigned > 0))
        raise _err(
            "052",
            f"Σm != G after the ±1 adjustment (Δ = {int(grid.delta[i])})",
            key=f"merchant_id={mids[i]}",
        )
    masses = grid.masses
    if masses.size and ((masses < 0) | (masses > settings.grid_size)).any():
        j = int(np.argmax((masses < 0) | (masses > settings.grid_size)))
        seg_j = int(np.searchsorted(offsets, j, side="right") - 1)
        raise _err("053", f"mass {int(masses[j])} outside [0, G]", key=f"merchant_id={mids[seg_j]}")
    t1 = time.perf_counter()

    # §4.2-4.3 Walker/Vose + Q0.32.
    prob, alias = walker_vose(
        masses, offsets, settings.bits, tiny_negative_epsilon=settings.tiny_negative_epsilon
    )
    prob_q = encode_prob_q(prob, settings.prob_qbits)
    t2 = time.perf_counter()

    # §4.4-4.5 slices, padding, checksums, blob digest.
    layout = assemble_blob(
        prob_q,
        alias,
        offsets,
        prob_qbits=settings.prob_qbits,
        endianness=settings.endianness,  # type: ignore[arg-type]
        alignment_bytes=settings.alignment_bytes,
        pad_byte=settings.pad_byte,
        pad_included_in_slice_length=settings.pad_included_in_slice_length,
    )
    t3 = time.perf_counter()

    # §4.6 decode coherence, every merchant.
    p_hat = decode_probabilities_segments(prob_q, alias, offsets, settings.prob_qbits)
    eps_q = settings.quantisation_epsilon
    mass_err = np.abs(segment_sum(p_hat, offsets) - 1.0)
    delta = np.abs(p_hat - p)
    max_delta = segment_max(delta, offsets)
    incoherent = (mass_err > eps_q) | (max_delta > eps_q)
    if incoherent.any():
        i = int(np.argmax(incoherent))
        raise _err(
            "055",
            f"decoded slice differs from p_weight: max |p̂ − p| = {max_delta[i]:.3e}, "
            f"|Σp̂ − 1| = {mass_err[i]:.3e} (ε_q = {eps_q})",
            key=f"merchant_id={mids[i]}",
            dataset=BLOB_ID,
        )
    t4 = time.perf_counter()

    # §4.7 index + post-build checks.
    index = build_index(
        settings,
        mids,
        sizes.tolist(),
        layout,
        created_utc=created_utc,
        policy_digest=policy_digest,
    )
    problems = index_violations(
        index,
        settings,
        blob_size=len(layout.blob),
        created_utc=created_utc,
        policy_digest=policy_digest,
        s1_sites=dict(zip(mids, sizes.tolist(), strict=True)),
        blob_sha256=sha256_bytes(layout.blob),
    )
    if problems:
        raise problems[0]
    t5 = time.perf_counter()
    counters = {
        "merchants_total": len(mids),
        "sites_total": int(frame.height),
        "merchants_count": len(mids),
        "blob_size_bytes": len(layout.blob),
        "grid_bits": settings.bits,
        "grid_size": settings.grid_size,
        "max_abs_delta_decode": float(delta.max()) if delta.size else 0.0,
        "merchants_mass_exact_after_decode": int((mass_err <= eps_q).sum()),
        "non_overlap_violations": 0,
        "alignment_violations": 0,
    }
    return S2Build(
        blob=layout.blob,
        index=index,
        layout=layout,
        p_hat=p_hat,
        counters=counters,
        settings=settings,
        durations_ms={
            "reconstruct_ms": round((t1 - t0) * 1000),
            "encode_ms": round((t2 - t1) * 1000),
            "serialize_ms": round((t3 - t2) * 1000),
            "decode_check_ms": round((t4 - t3) * 1000),
            "digest_ms": round((t5 - t4) * 1000),
        },
    )


# --- runner ------------------------------------------------------------------------------------


def _tokens(seed: int, manifest_fingerprint: str) -> dict[str, str]:
    return {"seed": str(seed), "manifest_fingerprint": manifest_fingerprint}


def _read_s1(home: StorageHome, tokens: Mapping[str, str]) -> tuple[pl.DataFrame, str]:
    """Within-segment input: resolved by id at exact [seed, mf], not sealed (contracts §4)."""
    folder = home.path(S1_ID, tokens)
    if not folder.is_dir():
        raise _err(
            "020",
            "s1_site_weights partition is missing (run S1)",
            dataset=S1_ID,
            key=home.rel(S1_ID, tokens),
        )
    frame = read_partition(
        folder,
        dataset_id=S1_ID,
        schema_ref=home.catalogue.entry(S1_ID).schema_ref,
        code=f"{PREFIX}-020",
    )
    return frame, folder_digest(folder)


def _samples(build: S2Build, s1: pl.DataFrame) -> dict[str, Any]:
    rows = list(build.index["merchants"])
    pw = s1["p_weight"].to_numpy()
    delta = np.abs(build.p_hat - pw)
    mid = s1["merchant_id"].to_numpy()
    order_ = s1["site_order"].to_numpy()
    top = np.lexsort((order_, mid, -delta))[:20]
    by_off = sorted(rows, key=lambda r: r["offset"])
    size = build.index["blob_size_bytes"]

    def boundary(i: int) -> dict[str, Any]:
        r = by_off[i]
        nxt = by_off[i + 1]["offset"] if i + 1 < len(by_off) else size
        return {
            "merchant_id": r["merchant_id"],
            "offset": r["offset"],
            "length": r["length"],
            "next_offset": nxt,
            "gap_bytes": nxt - r["offset"] - r["length"],
        }

    picks = sorted(
        set(range(min(5, len(by_off)))) | set(range(max(len(by_off) - 5, 0), len(by_off)))
    )
    align = build.settings.alignment_bytes
    return {
        "index_rows": rows[:20],
        "decode_rows": [
            {
                "merchant_id": int(mid[i]),
                "site_order": int(order_[i]),
                "p_weight": float(pw[i]),
                "p_hat": float(build.p_hat[i]),
                "abs_delta": float(delta[i]),
            }
            for i in top
        ],
        "boundary_checks": [boundary(i) for i in picks],
        "alignment": [
            {
                "merchant_id": r["merchant_id"],
                "offset": r["offset"],
                "alignment_bytes": align,
                "aligned": r["offset"] % align == 0,
            }
            for r in rows[:10]
        ],
    }


def _publish(
    home: StorageHome,
    tokens: Mapping[str, str],
    build: S2Build,
    version: str,
) -> tuple[PublishResult, PublishResult]:
    """§4.8: exactly one target present is a partial publish (082); index first, then blob."""
    index_path = home.path(INDEX_ID, tokens)
    blob_path = home.path(BLOB_ID, tokens)
    if index_path.exists() != blob_path.exists():
        present = INDEX_ID if index_path.exists() else BLOB_ID
        raise _err(
            "082",
            f"partial publish: only {present} exists",
            dataset=present,
            key=home.rel(present, tokens),
        )
    idx = publish_file(
        home,
        index_path,
        build.index_bytes,
        prefix=PREFIX,
        dataset_id=INDEX_ID,
        input_version=version,
    )
    blob = publish_file(
        home, blob_path, build.blob, prefix=PREFIX, dataset_id=BLOB_ID, input_version=version
    )
    return idx, blob


def run_s2(home: StorageHome, *, seed: int, manifest_fingerprint: str) -> StateOutcome:
    """Execute S2 for one seed × fingerprint; any Abort writes a FAIL run-report and re-raises.

    Publishes ``s2_alias_index`` (index.json) and ``s2_alias_blob`` (alias.bin). The outcome's
    ``frame`` is the index's merchant rows; ``extras['build']`` holds the :class:`S2Build`.
    """
    tokens = _tokens(seed, manifest_fingerprint)
    led = ValidatorLedger(VALIDATOR_IDS)
    cat = home.catalogue
    base: dict[str, Any] = {
        "component": "2B.S2",
        "manifest_fingerprint": manifest_fingerprint,
        "seed": str(seed),
        "catalogue_resolution": {
            "dictionary_version": cat.dictionary_version,
            "registry_version": cat.registry_version,
        },
        "environment": {**environment(), "network_io_detected": 0},
    }
    report_path = home.path("s2_run_report", tokens)
    try:
        outcome = _run(
            home, tokens, seed=seed, manifest_fingerprint=manifest_fingerprint, led=led, base=base
        )
    except SegmentError as err:
        led.fail_from(err, _CODE_VALIDATOR)
        write_report(
            report_path,
            {
                **base,
                "validators": led.rows(),
                "summary": led.summary(failed=True),
                "failure": {
                    **err.payload(),
                    "manifest_fingerprint": manifest_fingerprint,
                    "seed": seed,
                },
            },
        )
        raise
    write_report(report_path, dict(outcome.report))
    return outcome


def _run(
    home: StorageHome,
    tokens: Mapping[str, str],
    *,
    seed: int,
    manifest_fingerprint: str,
    led: ValidatorLedger,
    base: Mapping[str, Any],
) -> StateOutcome:
    t0 = time.perf_counter()
    ev = load_evidence(
        home,
        seed=seed,
        manifest_fingerprint=manifest_fingerprint,
        prefix=PREFIX,
        codes=_EVIDENCE_CODES,
    )
    loaded = ev.policy(POLICY_ID)
    policy = loaded.model
    assert isinstance(policy, AliasLayoutPolicyV1)
    sealed_digest = str(ev.row(POLICY_ID)["sha256_hex"])
    s1, s1_digest = _read_s1(home, tokens)
    t1 = time.perf_counter()
    build = build_s2(s1, policy, created_utc=ev.created_utc, policy_digest=sealed_digest)
    t2 = time.perf_counter()
    idx_res, blob_res = _publish(
        home,
        tokens,
        build,
        input_version(CODE_VERSION, s1_site_weights=s1_digest, policy=sealed_digest),
    )
    t3 = time.perf_counter()
    index_rel, blob_rel = home.rel(INDEX_ID, tokens), home.rel(BLOB_ID, tokens)
    c = build.counters
    s = build.settings
    report = {
        **base,
        "created_utc": ev.created_utc,
        "policy": {
            "id": POLICY_ID,
            "version_tag": str(ev.row(POLICY_ID).get("version_tag", s.version_tag)),
            "sha256_hex": sealed_digest,
            "layout_version": s.layout_version,
            "endianness": s.endianness,
            "alignment_bytes": s.alignment_bytes,
            "quantised_bits": s.bits,
        },
        "inputs_summary": {
            "weights_path": home.rel(S1_ID, tokens),
            "merchants_total": c["merchants_total"],
            "sites_total": c["sites_total"],
        },
        "blob_index": {
            "blob_path": blob_rel,
            "index_path": index_rel,
            "blob_size_bytes": c["blob_size_bytes"],
            "blob_sha256": build.index["blob_sha256"],
            "merchants_count": c["merchants_count"],
        },
        "encode_stats": {
            "grid_bits": c["grid_bits"],
            "grid_size": c["grid_size"],
            "max_abs_delta_decode": c["max_abs_delta_decode"],
            "merchants_mass_exact_after_decode": c["merchants_mass_exact_after_decode"],
        },
        "publish": {
            "targets": [
                {"id": INDEX_ID, "path": index_rel, "bytes": idx_res.bytes},
                {"id": BLOB_ID, "path": blob_rel, "bytes": blob_res.bytes},
            ],
            "write_once_verified": True,
            "atomic_publish": "idempotent" not in (idx_res.outcome, blob_res.outcome),
            "outcomes": {INDEX_ID: idx_res.outcome, BLOB_ID: blob_res.outcome},
        },
        "validators": led.rows(),
        "summary": led.summary(),
        "samples": _samples(build, s1),
        "id_map": [
            {"id": S1_ID, "path": home.rel(S1_ID, tokens)},
            {"id": POLICY_ID, "path": home.rel(POLICY_ID, tokens)},
            {"id": INDEX_ID, "path": index_rel},
            {"id": BLOB_ID, "path": blob_rel},
        ],
        "counters": {**c, "publish_bytes_total": idx_res.bytes + blob_res.bytes},
        "durations_ms": {
            "resolve_ms": round((t1 - t0) * 1000),
            **build.durations_ms,
            "publish_ms": round((t3 - t2) * 1000),
        },
    }
    frame = pl.DataFrame(
        build.index["merchants"],
        schema={
            "merchant_id": pl.UInt64,
            "offset": pl.Int64,
            "length": pl.Int64,
            "sites": pl.Int64,
            "quantised_bits": pl.Int64,
            "checksum": pl.String,
        },
    )
    return StateOutcome(frame, report, [idx_res, blob_res], extras={"build": build})


# --- post-publish verification -------------------------------------------------------------


def verify_s2_published(home: StorageHome, *, seed: int, manifest_fingerprint: str) -> list[str]:
    """Re-check the published blob and index against the sealed policy and S1.

    Blob SHA-256 = index ``blob_sha256`` (062) and size (045); index schema and §4.7 checks;
    merchant set and site counts = S1 (050/051); per merchant: slice checksum (063), header
    and alias range (063), decode within ε_q of the S1 weights (055). Returns one message per
    violation, each starting with its code and naming the merchant (empty list = pass).
    """
    tokens = _tokens(seed, manifest_fingerprint)
    try:
        ev = load_evidence(
            home,
            seed=seed,
            manifest_fingerprint=manifest_fingerprint,
            prefix=PREFIX,
            codes=_EVIDENCE_CODES,
        )
        loaded = ev.policy(POLICY_ID)
        assert isinstance(loaded.model, AliasLayoutPolicyV1)
        settings = resolve_settings(loaded.model)
        s1, _ = _read_s1(home, tokens)
    except SegmentError as err:
        return [str(err)]
    index_path, blob_path = home.path(INDEX_ID, tokens), home.path(BLOB_ID, tokens)
    missing = [p for p in (index_path, blob_path) if not p.is_file()]
    if missing:
        return [f"[{PREFIX}-020] published output missing: {p}" for p in missing]
    blob = blob_path.read_bytes()
    try:
        index = json.loads(index_path.read_bytes())
    except ValueError as exc:
        return [f"[{PREFIX}-040] index.json is not JSON: {exc}"]

    mid_arr = s1["merchant_id"].to_numpy()
    offsets = segment_offsets(mid_arr)
    s1_mids: list[int] = mid_arr[offsets[:-1]].tolist()
    sizes = np.diff(offsets).tolist()
    s1_sites = dict(zip(s1_mids, sizes, strict=True))
    problems = index_violations(
        index,
        settings,
        blob_size=len(blob),
        created_utc=ev.created_utc,
        policy_digest=str(ev.row(POLICY_ID)["sha256_hex"]),
        s1_sites=s1_sites,
        blob_sha256=sha256_bytes(blob),
    )
    out = [str(e) for e in problems]
    if any(e.code.endswith("-040") for e in problems):
        return out
    if index["merchants_count"] != len(s1_mids) and not any(
        e.code.endswith("-045") for e in problems
    ):
        out.append(
            f"[{PREFIX}-050] merchants_count {index['merchants_count']} != S1 {len(s1_mids)}"
        )

    pw = s1["p_weight"].to_numpy()
    where = dict(zip(s1_mids, offsets[:-1].tolist(), strict=True))
    view = memoryview(blob)
    eps_q = settings.quantisation_epsilon
    for row in index["merchants"]:
        mid = row["merchant_id"]
        key = f"merchant_id={mid}"
        payload_len = int(slice_length(row["sites"]))
        start = row["offset"]
        if start + payload_len > len(blob):
            continue  # already reported as 060
        payload = view[start : start + payload_len]
        if sha256_bytes(payload) != row["checksum"]:
            out.append(f"[{PREFIX}-063] CHECKSUM_MISMATCH slice checksum differs | {key}")
            continue
        try:
            parsed = parse_slice(payload, endianness=settings.endianness)  # type: ignore[arg-type]
        except AliasSliceError as exc:
            out.append(f"[{PREFIX}-063] slice does not parse: {exc} | {key}")
            continue
        if parsed.n_sites != row["sites"] or parsed.prob_qbits != settings.prob_qbits:
            out.append(f"[{PREFIX}-063] slice header (K, Q) disagrees with index/policy | {key}")
            continue
        if mid not in where or s1_sites[mid] != parsed.n_sites:
            continue  # already reported as 050/051
        a = where[mid]
        p_hat = decode_probabilities(parsed.prob_q, parsed.alias, parsed.prob_qbits)
        worst = float(np.abs(p_hat - pw[a : a + parsed.n_sites]).max())
        mass = abs(float(p_hat.sum()) - 1.0)
        if worst > eps_q or mass > eps_q:
            out.append(
                f"[{PREFIX}-055] ALIAS_DECODE_INCOHERENT max |p̂ − p| = {worst:.3e}, "
                f"|Σp̂ − 1| = {mass:.3e} | {key}"
            )
        if len(out) > MAX_VIOLATIONS:
            out.append(f"… truncated after {MAX_VIOLATIONS} violations")
            break
    return out
