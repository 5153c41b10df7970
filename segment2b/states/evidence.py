"""The S0-evidence rule (contracts §4) shared by S1..S8: nothing is read that S0 did not seal.

Every state first loads ``s0_gate_receipt_2B`` and ``sealed_inputs_2B`` for its partition, then
opens cross-layer inputs and policies only through their inventory rows: the sealed path must
equal the dictionary-rendered path, the partition must match, and a policy's H1 digest must
equal the sealed ``sha256_hex``. Codes differ per state, so callers pass theirs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segment2b.catalogue.schemas import json_errors
from segment2b.errors import SegmentError
from segment2b.policy.store import LoadedPolicy, load_policy
from segment2b.storage.digests import sha256_bytes, sha256_file
from segment2b.storage.home import StorageHome


@dataclass(frozen=True)
class EvidenceCodes:
    """Per-state codes for the evidence checks (suffixes after ``2B-Sx-``)."""

    receipt_missing: str = "001"
    inventory_invalid: str = "020"
    not_sealed: str = "022"
    path_mismatch: str = "070"
    digest_mismatch: str = "070"
    created_missing: str = "086"
    policy_schema: str = "031"


@dataclass(frozen=True)
class S0Evidence:
    """The gate receipt and sealed inventory of one (seed, manifest_fingerprint)."""

    home: StorageHome
    prefix: str
    codes: EvidenceCodes
    seed: int
    manifest_fingerprint: str
    receipt: Mapping[str, Any]
    rows: Mapping[str, Mapping[str, Any]]

    @property
    def created_utc(self) -> str:
        """``verified_at_utc``: the canonical created_utc of every S1..S8 artefact (time law)."""
        return str(self.receipt["verified_at_utc"])

    @property
    def parameter_hash(self) -> str:
        return str(self.receipt["parameter_hash"])

    def _err(self, suffix: str, message: str, asset_id: str, **context: Any) -> SegmentError:
        return SegmentError(
            f"{self.prefix}-{suffix}",
            message,
            dataset=asset_id,
            key=context.get("key"),
            context=context,
        )

    def row(self, asset_id: str) -> Mapping[str, Any]:
        try:
            return self.rows[asset_id]
        except KeyError:
            raise self._err(
                self.codes.not_sealed, "input is not in the S0 sealed inventory", asset_id
            ) from None

    def is_sealed(self, asset_id: str) -> bool:
        return asset_id in self.rows

    def path(self, asset_id: str, tokens: Mapping[str, str] | None = None) -> Path:
        """Absolute path of a sealed input after path and partition equality checks."""
        row = self.row(asset_id)
        toks = {
            "seed": str(self.seed),
            "manifest_fingerprint": self.manifest_fingerprint,
            **(tokens or {}),
        }
        rendered = self.home.rel(asset_id, toks)
        expected_partition = self.home.catalogue.partition(asset_id, {**toks, **row["partition"]})
        if row["path"] != rendered or dict(row["partition"]) != expected_partition:
            raise self._err(
                self.codes.path_mismatch,
                "sealed path/partition differs from the dictionary rendering",
                asset_id,
                key=row["path"],
                sealed_path=row["path"],
                expected_path=rendered,
            )
        if "seed" in row["partition"] and row["partition"]["seed"] != str(self.seed):
            raise self._err(self.codes.path_mismatch, "sealed seed differs", asset_id)
        return self.home.path(asset_id, toks)

    def policy(self, policy_id: str) -> LoadedPolicy:
        """Open a policy via its sealed path; its H1 digest must equal the sealed digest."""
        path = self.path(policy_id)
        if not path.is_file():
            raise self._err(
                self.codes.inventory_invalid,
                "sealed policy file is missing",
                policy_id,
                key=str(path),
            )
        digest = sha256_file(path)
        if digest != self.rows[policy_id]["sha256_hex"]:
            raise self._err(
                self.codes.digest_mismatch,
                f"policy {path.name} bytes changed after S0 sealed them (re-run S0)",
                policy_id,
                key=str(path),
                sealed_sha256=self.rows[policy_id]["sha256_hex"],
                actual_sha256=digest,
            )
        return load_policy(path, policy_id, code=f"{self.prefix}-{self.codes.policy_schema}")

    def sealed_file(self, asset_id: str, tokens: Mapping[str, str] | None = None) -> Path:
        """A sealed single-file input (e.g. the roster) whose H1 digest must still match."""
        path = self._sealed_path(asset_id, tokens)
        self._check_digest(asset_id, path, sha256_file(path))
        return path

    def sealed_bytes(self, asset_id: str, tokens: Mapping[str, str] | None = None) -> bytes:
        """Like :meth:`sealed_file`, but read once: the bytes that were hashed are returned
        (no second read, and exactly the sealed bytes are what the caller parses)."""
        path = self._sealed_path(asset_id, tokens)
        data = path.read_bytes()
        self._check_digest(asset_id, path, sha256_bytes(data))
        return data

    def sealed_bytes_verified_by(
        self, asset_id: str, tokens: Mapping[str, str] | None, hasher: Executor
    ) -> tuple[bytes, Callable[[], None]]:
        """Like :meth:`sealed_bytes`, with the digest computed on ``hasher`` while the caller
        goes on: returns the bytes and ``verify``, which waits for the digest and raises the
        mismatch. The bytes must not be trusted, nor a failure of their parse reported, before
        ``verify`` has returned (a changed file is the first thing to report)."""
        path = self._sealed_path(asset_id, tokens)
        data = path.read_bytes()
        digest = hasher.submit(sha256_bytes, data)

        def verify() -> None:
            self._check_digest(asset_id, path, digest.result())

        return data, verify

    def _sealed_path(self, asset_id: str, tokens: Mapping[str, str] | None) -> Path:
        path = self.path(asset_id, tokens)
        if not path.is_file():
            raise self._err(
                self.codes.inventory_invalid,
                "sealed input file is missing",
                asset_id,
                key=str(path),
            )
        return path

    def _check_digest(self, asset_id: str, path: Path, digest: str) -> None:
        if digest != self.rows[asset_id]["sha256_hex"]:
            raise self._err(
                self.codes.digest_mismatch,
                "input bytes changed after S0 sealed them",
                asset_id,
                key=str(path),
                sealed_sha256=self.rows[asset_id]["sha256_hex"],
                actual_sha256=digest,
            )


def load_evidence(
    home: StorageHome,
    *,
    seed: int,
    manifest_fingerprint: str,
    prefix: str,
    codes: EvidenceCodes | None = None,
) -> S0Evidence:
    """Load and schema-validate the S0 receipt and inventory for one seed × fingerprint."""
    codes = codes or EvidenceCodes()
    tokens = {"seed": str(seed), "manifest_fingerprint": manifest_fingerprint}
    rec_path = home.path("s0_gate_receipt_2B", tokens)
    inv_path = home.path("sealed_inputs_2B", tokens)
    if not rec_path.is_file():
        raise SegmentError(
            f"{prefix}-{codes.receipt_missing}",
            "S0 gate receipt is missing (run S0 first)",
            dataset="s0_gate_receipt_2B",
            key=str(rec_path),
        )
    receipt = json.loads(rec_path.read_bytes())
    errors = json_errors(home.catalogue.entry("s0_gate_receipt_2B").schema_ref, receipt)
    if errors or receipt.get("manifest_fingerprint") != manifest_fingerprint:
        raise SegmentError(
            f"{prefix}-{codes.receipt_missing}",
            "S0 gate receipt is invalid or for another fingerprint",
            dataset="s0_gate_receipt_2B",
            key=str(rec_path),
            context={"schema_errors": errors},
        )
    if not receipt.get("verified_at_utc"):
        raise SegmentError(
            f"{prefix}-{codes.created_missing}",
            "S0 receipt lacks verified_at_utc",
            dataset="s0_gate_receipt_2B",
            key=str(rec_path),
        )
    if not inv_path.is_file():
        raise SegmentError(
            f"{prefix}-{codes.inventory_invalid}",
            "sealed inventory is missing",
            dataset="sealed_inputs_2B",
            key=str(inv_path),
        )
    inventory = json.loads(inv_path.read_bytes())
    errors = json_errors(home.catalogue.entry("sealed_inputs_2B").schema_ref, inventory)
    if errors:
        raise SegmentError(
            f"{prefix}-{codes.inventory_invalid}",
            "sealed inventory fails its schema",
            dataset="sealed_inputs_2B",
            key=str(inv_path),
            context={"schema_errors": errors},
        )
    return S0Evidence(
        home=home,
        prefix=prefix,
        codes=codes,
        seed=seed,
        manifest_fingerprint=manifest_fingerprint,
        receipt=receipt,
        rows={r["asset_id"]: r for r in inventory},
    )
