"""A fixed workload timed at the start and at the end of a benchmark run.

The machine is shared and its speed drifts during a day (on 2026-11-27 the same code's pure
certification lane took 35.7 s at 06:08 and 48.6 s at 08:35). The probe times the kinds of work
the states do (SHA-256 over a buffer, a numpy sort, a polars group-by, plain Python, writing a
file to disk) on fixed inputs, so two reports can be compared by their probes: figures of runs
whose probes differ are not comparable without scaling.

Writes are the least stable part. On this VM, writing into memory the host has taken back (free
pages it was told about) costs about ten times what writing into recycled pages costs: 1 GB of
page-cache writes took 2.5 s of kernel time in one run and 0.2 s in the next. Best-of-three
hides that, so the probe also times the *first* 256 MiB page-cache write once
(``first_write_256mib_s``, not part of ``total_s``): it tells whether the logs written next
pay the cold-page price.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

PROBE_REPEATS = 3
"""Best of three per part: the machine's speed at that moment, not its worst hiccup."""


def _best(fn: Callable[[], object]) -> float:
    times = []
    for _ in range(PROBE_REPEATS):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _write_file(folder: Path, data: bytes, *, sync: bool = True, times: int = 1) -> None:
    """Write ``data`` ``times`` over into a fresh file in ``folder`` (synced unless told not
    to), then delete it."""
    path = folder / f"probe_{uuid.uuid4().hex}.bin"
    try:
        with path.open("wb") as fh:
            for _ in range(times):
                fh.write(data)
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
    finally:
        path.unlink(missing_ok=True)


def machine_probe(folder: Path) -> dict[str, float]:
    """Seconds per part of the fixed workload (best of :data:`PROBE_REPEATS`) and their sum;
    the disk part writes (and syncs) a 64 MiB file in ``folder``: put it where the logs go.
    ``first_write_256mib_s`` (timed once, before the rest, outside the sum) is the first
    page-cache write of 256 MiB."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261127)
    buffer = rng.integers(0, 256, 64 << 20, dtype=np.uint8).tobytes()
    values = rng.random(2_000_000)
    frame = pl.DataFrame({"k": rng.integers(0, 50_000, 2_000_000), "v": values})
    t0 = time.perf_counter()
    _write_file(folder, buffer, sync=False, times=4)
    first_write = time.perf_counter() - t0
    parts = {
        "sha256_64mib_s": _best(lambda: hashlib.sha256(buffer).digest()),
        "numpy_sort_2m_s": _best(lambda: np.sort(values)),
        "polars_group_by_2m_s": _best(lambda: frame.group_by("k").agg(pl.col("v").sum())),
        "python_loop_1m_s": _best(lambda: sum(i * i for i in range(1_000_000))),
        "write_sync_64mib_s": _best(lambda: _write_file(folder, buffer)),
    }
    return {
        **{k: round(v, 4) for k, v in parts.items()},
        "total_s": round(sum(parts.values()), 4),
        "first_write_256mib_s": round(first_write, 4),
    }
