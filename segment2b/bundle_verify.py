"""Consumer verification of a 2B validation bundle (``s8-validation-bundle.md`` §7.5).

No PASS → no read: a consumer may read 2B outputs of a manifest only after recomputing the
bundle's hash law from its ``index.json`` and comparing it with ``_passed.flag``. Presence of
the flag alone proves nothing. This module is that recomputation, shared by S8's pre-publish
re-validation, its post-publish check and the ``segment2b verify-bundle <folder>`` command.

Checks, with the S8 codes (prefix ``2B-S8-``):

* flag exists and parses (052): strict ``sha256_hex = <hex64>`` plus one optional LF, else the
  tolerant reader of spec README decision 5 (first 64-hex token of line 1, reported as a warning);
* ``index.json`` parses, is a non-empty array of exactly ``{path, sha256_hex}`` rows (040), paths
  relative without ``\\`` or ``..`` (042), strictly ascending bytewise (041), unique (044), never
  listing ``_passed.flag`` or ``index.json`` (045);
* every indexed file exists (043) and hashes to its row (050); no unindexed file (043);
* H3 over the indexed files (paths ascending, raw bytes concatenated) equals the flag (051).

Legacy index-only bundles (paths starting ``data/`` resolved against a run root) are not
accepted here: S8 never emits them (spec README decision 6) and they fail as missing files.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segment2b.storage.digests import (
    bundle_digest,
    folder_files,
    parse_flag,
    sha256_file,
    unsafe_index_path,
)

__all__ = [
    "FLAG_NAME",
    "INDEX_NAME",
    "BundleCheck",
    "Finding",
    "bundle_bytes_digest",
    "check_bundle",
    "main",
    "strict_flag_digest",
    "verify_bundle",
]

PREFIX = "2B-S8"
FLAG_NAME = "_passed.flag"
INDEX_NAME = "index.json"
_STRICT_FLAG = re.compile(r"sha256_hex = ([a-f0-9]{64})\n?")
_HEX64 = re.compile(r"[a-f0-9]{64}")
_PATH_RULE = re.compile(r"^(?!/)(?!.*\\)(?!.*\.\.).+")


@dataclass(frozen=True)
class Finding:
    """One failed check: spec code, message and the member path it concerns."""

    code: str
    message: str
    path: str | None = None

    def __str__(self) -> str:
        where = f" | path={self.path}" if self.path is not None else ""
        return f"[{self.code}] {self.message}{where}"


@dataclass(frozen=True)
class BundleCheck:
    """Outcome of :func:`check_bundle` (``ok`` iff no finding)."""

    folder: Path
    findings: tuple[Finding, ...]
    warnings: tuple[str, ...] = ()
    flag_digest: str | None = None
    computed_digest: str | None = None
    members: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.findings


def strict_flag_digest(data: bytes) -> str | None:
    """The digest of a flag in the writer form (§7.3 full match), else None."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return None
    m = _STRICT_FLAG.fullmatch(text)
    return m.group(1) if m else None


def _read_flag(folder: Path, findings: list[Finding], warnings: list[str]) -> str | None:
    flag = folder / FLAG_NAME
    if not flag.is_file():
        findings.append(Finding(f"{PREFIX}-052", "_passed.flag is missing", FLAG_NAME))
        return None
    data = flag.read_bytes()
    digest = strict_flag_digest(data)
    if digest is not None:
        return digest
    tolerant = parse_flag(data.decode("ascii", errors="replace"))
    if tolerant is None:
        first = data.splitlines()[0][:100].decode("ascii", errors="replace") if data else ""
        findings.append(
            Finding(
                f"{PREFIX}-052",
                f"_passed.flag carries no sha256 digest (first line {first!r})",
                FLAG_NAME,
            )
        )
        return None
    warnings.append(
        "_passed.flag is not in the strict form 'sha256_hex = <hex64>\\n'; "
        "digest taken by the tolerant reader (spec README decision 5)"
    )
    return tolerant


def _read_index(folder: Path, findings: list[Finding]) -> tuple[list[dict[str, Any]], bool] | None:
    """Parse and shape-check ``index.json``: usable rows and whether every row was usable."""
    path = folder / INDEX_NAME
    if not path.is_file():
        findings.append(Finding(f"{PREFIX}-040", "index.json is missing", INDEX_NAME))
        return None
    try:
        doc = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        findings.append(Finding(f"{PREFIX}-040", f"index.json is not JSON: {exc}", INDEX_NAME))
        return None
    if not isinstance(doc, list) or not doc:
        findings.append(
            Finding(f"{PREFIX}-040", "index.json must be a non-empty JSON array", INDEX_NAME)
        )
        return None
    rows: list[dict[str, Any]] = []
    for i, row in enumerate(doc):
        if not isinstance(row, dict) or set(row) != {"path", "sha256_hex"}:
            keys = sorted(row) if isinstance(row, dict) else type(row).__name__
            findings.append(
                Finding(
                    f"{PREFIX}-040",
                    f"index row {i} must have exactly path and sha256_hex (got {keys})",
                    INDEX_NAME,
                )
            )
            continue
        p, digest = row["path"], row["sha256_hex"]
        if not isinstance(p, str) or not p:
            findings.append(
                Finding(f"{PREFIX}-040", f"index row {i} path is not a non-empty string", None)
            )
            continue
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            findings.append(
                Finding(f"{PREFIX}-040", f"index row {i} sha256_hex is not hex64", str(p))
            )
            continue
        if unsafe_index_path(p) or not _PATH_RULE.match(str(p)):
            findings.append(
                Finding(
                    f"{PREFIX}-042",
                    "index path is not bundle-relative (leading '/', '\\' or '..')",
                    str(p),
                )
            )
            continue
        if not str(p).isascii():
            findings.append(Finding(f"{PREFIX}-040", "index path is not ASCII", str(p)))
            continue
        rows.append(row)
    paths = [str(r["path"]) for r in rows]
    for a, b in itertools.pairwise(paths):
        if a == b:
            findings.append(Finding(f"{PREFIX}-044", "duplicate index path", b))
        elif b.encode() < a.encode():
            findings.append(
                Finding(f"{PREFIX}-041", f"index paths not ascending bytewise ({a!r} > {b!r})", b)
            )
    for p in paths:
        if p == INDEX_NAME or p.rsplit("/", 1)[-1] == FLAG_NAME:
            findings.append(Finding(f"{PREFIX}-045", "index lists _passed.flag or index.json", p))
    return rows, len(rows) == len(doc)


def check_bundle(folder: Path) -> BundleCheck:
    """Re-verify a bundle folder by the hash law (§7.5) and report every failed check."""
    folder = Path(folder)
    findings: list[Finding] = []
    warnings: list[str] = []
    if not folder.is_dir():
        return BundleCheck(
            folder, (Finding(f"{PREFIX}-043", "bundle folder does not exist", str(folder)),)
        )
    flag = _read_flag(folder, findings, warnings)
    parsed = _read_index(folder, findings)
    members: list[str] = []
    computed: str | None = None
    if parsed is not None:
        rows, hashable = parsed
        for row in rows:
            rel = str(row["path"])
            target = folder / rel
            if rel == INDEX_NAME or rel.rsplit("/", 1)[-1] == FLAG_NAME:
                continue
            members.append(rel)
            if not target.is_file():
                findings.append(Finding(f"{PREFIX}-043", "indexed file is missing", rel))
                hashable = False
                continue
            actual = sha256_file(target)
            if actual != row["sha256_hex"]:
                findings.append(
                    Finding(
                        f"{PREFIX}-050",
                        f"SHA-256 {actual} differs from the index row {row['sha256_hex']}",
                        rel,
                    )
                )
        listed = {str(r["path"]) for r in rows}
        for rel in folder_files(folder):
            if rel not in listed and rel not in (INDEX_NAME, FLAG_NAME):
                findings.append(Finding(f"{PREFIX}-043", "file in bundle is not indexed", rel))
        if hashable and members:
            computed = bundle_digest(folder, members)
            if flag is not None and computed != flag:
                findings.append(
                    Finding(
                        f"{PREFIX}-051",
                        f"bundle digest {computed} differs from _passed.flag {flag}",
                        FLAG_NAME,
                    )
                )
    return BundleCheck(
        folder=folder,
        findings=tuple(findings),
        warnings=tuple(warnings),
        flag_digest=flag,
        computed_digest=computed,
        members=tuple(sorted(members, key=str.encode)),
    )


def verify_bundle(folder: Path) -> list[str]:
    """Failure messages (``[2B-S8-NNN] …``) of :func:`check_bundle`; empty list = PASS."""
    return [str(f) for f in check_bundle(folder).findings]


def bundle_bytes_digest(members: Sequence[bytes]) -> str:
    """H3 over already-ordered member bytes (plain concatenation; no names, no lengths)."""
    h = hashlib.sha256()
    for data in members:
        h.update(data)
    return h.hexdigest()


def main(argv: Sequence[str] | None = None) -> int:
    """``segment2b verify-bundle <folder>…``: one PASS/FAIL/WARN line each; exit 0 iff all PASS."""
    parser = argparse.ArgumentParser(
        prog="segment2b verify-bundle",
        description="Re-verify 2B validation bundles by the hash law (No PASS → no read).",
    )
    parser.add_argument("folders", nargs="+", type=Path, help="bundle folder(s)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    ok = True
    out = sys.stdout
    for folder in args.folders:
        result = check_bundle(folder)
        for warning in result.warnings:
            out.write(f"WARN {folder} {warning}\n")
        if result.ok:
            out.write(
                f"PASS {folder} sha256_hex={result.computed_digest} members={len(result.members)}\n"
            )
            continue
        ok = False
        for finding in result.findings:
            out.write(f"FAIL {folder} {finding}\n")
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
