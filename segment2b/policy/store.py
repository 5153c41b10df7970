"""The active policy pack: raw bytes, H1 digests, validated models, and parameter_hash.

A pack is a folder holding the five policy files by their dictionary basenames
(``policies/`` by default, ``policies/baseline/`` for the grade-C posture).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from segment2b.errors import SegmentError
from segment2b.identity import part_digest
from segment2b.policy.models import POLICY_IDS, POLICY_MODELS, PolicyBase
from segment2b.storage.canonical import canonical_json

POLICIES_ENV = "SEGMENT2B_POLICIES"
DEFAULT_PACK = Path(__file__).resolve().parents[2] / "policies"


def default_pack() -> Path:
    """``$SEGMENT2B_POLICIES`` if set, else the repository's ``policies/``."""
    return Path(os.environ.get(POLICIES_ENV) or DEFAULT_PACK).resolve()


@dataclass(frozen=True)
class LoadedPolicy:
    """One policy file: its bytes, H1 digest, parsed JSON and validated model."""

    policy_id: str
    path: Path
    raw: bytes
    sha256_hex: str
    document: Mapping[str, Any]
    model: PolicyBase


def policy_self_digest(document: Mapping[str, Any]) -> str:
    """H5: SHA-256 of canonical JSON of the policy with ``sha256_hex`` removed."""
    return hashlib.sha256(
        canonical_json({k: v for k, v in document.items() if k != "sha256_hex"})
    ).hexdigest()


def load_policy(path: Path, policy_id: str, *, code: str = "2B-S0-020") -> LoadedPolicy:
    """Read, digest and validate one policy; errors name the file, the field and the rule."""
    if not path.is_file():
        raise SegmentError(
            "2B-S0-010",
            "required policy file is missing",
            dataset=policy_id,
            key=str(path),
            context={"missing_ids": [policy_id]},
        )
    raw = path.read_bytes()
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise SegmentError(
            code,
            f"policy JSON is unreadable in {path.name}: {exc}",
            dataset=policy_id,
            key=str(path),
        ) from exc
    try:
        model = POLICY_MODELS[policy_id].model_validate(document)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "<root>"
        raise SegmentError(
            code,
            f"policy {path.name} field '{field}' breaks rule: {first['msg']}",
            dataset=policy_id,
            key=field,
            context={"file": str(path), "errors": [e["msg"] for e in exc.errors()[:10]]},
        ) from exc
    embedded = document.get("sha256_hex") if isinstance(document, dict) else None
    if embedded is not None and embedded != policy_self_digest(document):
        # README decision 7: embedded self-digests are either correct (H5) or absent.
        raise SegmentError(
            "2B-S0-042",
            f"policy {path.name} embedded sha256_hex does not satisfy H5",
            dataset=policy_id,
            key="sha256_hex",
            context={"embedded": embedded, "expected": policy_self_digest(document)},
        )
    return LoadedPolicy(policy_id, path, raw, hashlib.sha256(raw).hexdigest(), document, model)


@dataclass(frozen=True)
class PolicyPack:
    """All five policies of one pack, validated, keyed by policy id (sorted)."""

    root: Path
    policies: Mapping[str, LoadedPolicy]

    def __getitem__(self, policy_id: str) -> LoadedPolicy:
        return self.policies[policy_id]

    def digests(self) -> dict[str, str]:
        return {pid: self.policies[pid].sha256_hex for pid in POLICY_IDS}


def load_pack(root: Path | None = None) -> PolicyPack:
    root = (root or default_pack()).resolve()
    return PolicyPack(root, {pid: load_policy(root / f"{pid}.json", pid) for pid in POLICY_IDS})


def parameter_hash(policy_digests: Mapping[str, str], roster_settings: Mapping[str, Any]) -> str:
    """SHA-256 over the sorted ``part``s of the governed files (contracts §2).

    Governed files: the five policy files (basename ``<id>.json``, H1 digest) and the roster
    settings, hashed as the canonical JSON bytes of a virtual file ``roster_settings.json``.
    """
    parts = {f"{pid}.json": digest for pid, digest in policy_digests.items()}
    parts["roster_settings.json"] = hashlib.sha256(
        canonical_json(dict(roster_settings))
    ).hexdigest()
    h = hashlib.sha256()
    for name in sorted(parts):
        h.update(part_digest(name, parts[name]))
    return h.hexdigest()
