"""Run identity tokens (contracts §2, spec README §2): parts, run_id, fingerprints."""

from __future__ import annotations

import hashlib
import struct

from segment2b.core.philox import uer


def part_digest(basename: str, digest_hex: str) -> bytes:
    """``part(name, digest)`` = SHA256(UER(basename) || 32 raw digest bytes)."""
    return hashlib.sha256(uer(basename) + bytes.fromhex(digest_hex)).digest()


def run_id(manifest_fingerprint: str, seed: int, parameter_hash: str) -> str:
    """Deterministic run id: first 16 bytes of SHA256(UER("run:2B") || mf || LE64(seed) || ph)."""
    h = hashlib.sha256(
        uer("run:2B")
        + bytes.fromhex(manifest_fingerprint)
        + struct.pack("<Q", seed)
        + bytes.fromhex(parameter_hash)
    )
    return h.digest()[:16].hex()
