"""Non-authoritative run-reports: pretty JSON, replaced atomically on every run."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from segment2b.storage.canonical import pretty_json


def write_report(path: Path, report: dict[str, Any]) -> Path:
    """Write a run-report (indent 2, sorted, trailing newline) via a temp file and rename.

    Run-reports carry wall-clock durations, so they are never byte-compared and are simply
    replaced; they are never hashed into any bundle.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_bytes(pretty_json(report))
    os.replace(tmp, path)
    return path
