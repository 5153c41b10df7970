"""Hash laws H1-H4 of contracts §12 (file, folder, indexed bundle, PASS flag)."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

CHUNK = 1 << 20
_FLAG_STRICT = re.compile(r"^sha256_hex\s*=\s*([a-f0-9]{64})\s*$")
_HEX64 = re.compile(r"[a-f0-9]{64}")


class FileChangedError(RuntimeError):
    """H1: the file's size or mtime changed while it was being hashed."""


def _stat_key(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _feed(h: hashlib._Hash, path: Path) -> None:
    before = _stat_key(path)
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    if _stat_key(path) != before:
        raise FileChangedError(f"file changed during hashing: {path}")


def sha256_file(path: Path) -> str:
    """H1: SHA-256 of the raw bytes, streamed in 1 MiB chunks, stat-checked."""
    h = hashlib.sha256()
    _feed(h, path)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def folder_files(root: Path) -> list[str]:
    """All regular files below ``root`` as relative POSIX paths, code-point sorted."""
    out: list[str] = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            full = Path(dirpath) / name
            if full.is_file() and not full.is_symlink():
                out.append(full.relative_to(root).as_posix())
    return sorted(out)


def tree_bytes(root: Path) -> int:
    """Bytes of every file under ``root``."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def folder_digest(root: Path) -> str:
    """H2: concatenated raw bytes of every file, sorted by relative path; names not hashed."""
    h = hashlib.sha256()
    for rel in folder_files(root):
        _feed(h, root / rel)
    return h.hexdigest()


def bundle_digest(root: Path, paths: Iterable[str]) -> str:
    """H3: sort index paths ASCII-lex, drop ``_passed.flag``, hash the concatenated bytes.

    Callers validate the paths first (relative, no ``..``, files exist); this only hashes.
    """
    h = hashlib.sha256()
    for rel in sorted(p for p in paths if not p.endswith("_passed.flag")):
        _feed(h, root / rel)
    return h.hexdigest()


def flag_bytes(digest: str) -> bytes:
    """H4 writer form: ``sha256_hex = <hex64>\\n``."""
    return f"sha256_hex = {digest}\n".encode("ascii")


def parse_flag(text: str) -> str | None:
    """H4 reader: strict pattern on the trimmed first line, then the tolerant hex64 fallback."""
    if not text.strip():
        return None
    line = text.splitlines()[0].strip()
    if m := _FLAG_STRICT.match(line):
        return m.group(1)
    if m := _HEX64.search(line):
        return m.group(0)
    return None


def unsafe_index_path(path: object) -> bool:
    """Index paths must be relative POSIX: no leading ``/``, no backslash, no ``..``."""
    return (
        not isinstance(path, str)
        or not path
        or path.startswith(("/", "\\"))
        or "\\" in path
        or ".." in path
    )
