"""JSON serialisations of contracts §12: canonical (H6) and pretty run-report form."""

from __future__ import annotations

import json
from typing import Any


def canonical_json(obj: Any) -> bytes:
    """H6: UTF-8, ASCII-escaped, keys sorted at every level, ``,``/``:`` separators, no newline."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def pretty_json(obj: Any) -> bytes:
    """Run-report form: indent 2, sorted keys, trailing newline (non-authoritative artefacts)."""
    return (json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=True) + "\n").encode("ascii")
