"""The package's compiled kernels (numba): compiled once per machine, loaded ahead of need.

numba compiles each kernel on first use and caches the machine code on disk (``make`` calls
:func:`warm_up` after installing, so no run compiles). Even from that cache, the first kernel
call in a process costs about 0.2 s (numba's typing and code-generation context is set up
then), which would land on S5's critical path. :func:`preload` does it on a background thread
as soon as a process builds its state runners, while S0-S4 (or S3-S4 of a fast lane) run.
"""

from __future__ import annotations

import contextlib
import threading

from segment2b.core import alias_table
from segment2b.storage import jsonl_render, roster_scan

__all__ = ["preload", "warm_up"]

_lock = threading.Lock()
_started: list[threading.Thread] = []


def warm_up() -> None:
    """Compile (or load from numba's cache) every kernel, in this thread."""
    jsonl_render.warm_up()
    roster_scan.warm_up()
    alias_table.warm_up()


def _quiet_warm_up() -> None:
    # A failure here is not the run's: the kernel's real first call raises it, with context.
    with contextlib.suppress(Exception):
        warm_up()


def preload() -> threading.Thread:
    """Start :func:`warm_up` on a background thread, once per process (later calls return
    the same thread). Not a daemon: the interpreter waits for it rather than stopping it
    inside the compiler."""
    with _lock:
        if not _started:
            thread = threading.Thread(target=_quiet_warm_up, name="segment2b-kernels")
            thread.start()
            _started.append(thread)
        return _started[0]
