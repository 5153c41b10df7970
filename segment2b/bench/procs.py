"""Run one measured unit in a child process and read its peak memory from the kernel.

Why a child per unit: ``ru_maxrss`` is a high-water mark, monotone over a process's life, so
in one process every state after the hungriest would inherit its peak. A fresh child per unit
makes the figure that unit's own. The parent reaps the child with ``os.wait4``, whose rusage is
the kernel's exact peak resident set of that child, even when the child was killed.

A watchdog samples the child's memory (``/proc/<pid>/status``) and kills it when its *private*
(anonymous) resident memory passes a limit or the deadline passes, so a scale run that would
exhaust the machine's memory is reported as a finding instead of summoning the kernel's OOM
killer on some other process. The child also raises its own ``oom_score_adj`` so that, if
memory runs out anyway, the kernel picks the child first.

Two figures, because they answer different questions: ``VmRSS`` (and ``ru_maxrss``) also counts
file pages the child has touched through ``mmap`` — S7 maps every router log, so at scale its
RSS tracks the log size although the kernel can drop those clean pages at will. ``RssAnon`` is
the memory only the child holds (heap, Arrow and numpy buffers): what runs a machine out of
memory, so the watchdog limit applies to it. The kernel keeps no high-water mark for it, so its
peak is sampled every ``POLL_S`` (a short spike between samples can be missed).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

POLL_S = 0.1


@dataclass
class ChildResult:
    """What one child did.

    ``status``: ``ok``, ``failed`` (non-zero exit or an exception in the unit), ``memory_limit``
    (killed by the watchdog over ``rss_limit_bytes``) or ``timeout`` (killed at the deadline).
    ``wall_s`` covers the whole child (interpreter start and imports included); the unit's own
    timings are in ``result``. ``peak_rss_bytes`` is the kernel's high-water mark of the child;
    ``peak_anon_bytes`` the highest sampled private (anonymous) resident memory.
    """

    status: str
    wall_s: float
    peak_rss_bytes: int
    peak_anon_bytes: int = 0
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    log_path: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "wall_s": self.wall_s,
            "peak_rss_bytes": self.peak_rss_bytes,
            "peak_anon_bytes": self.peak_anon_bytes,
            "error": self.error,
            "log_path": self.log_path,
        }


def mem_available_bytes() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo`` (None off Linux)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _memory_bytes(pid: int) -> tuple[int, int]:
    """``(VmRSS, RssAnon)`` of ``pid`` in bytes; zeros once the process is gone."""
    rss = anon = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("RssAnon:"):
                anon = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return 0, 0
    return rss, anon


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _progress(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


def running_step(result: Mapping[str, Any]) -> str | None:
    """The step a killed child was in: the last ``start`` without a matching ``done``."""
    open_steps: list[str] = []
    for mark in result.get("progress", []):
        label = f"{mark.get('step')}" + (f" seed={mark['seed']}" if mark.get("seed") else "")
        if mark.get("event") == "start":
            open_steps.append(label)
        elif label in open_steps:
            open_steps.remove(label)
    return open_steps[-1] if open_steps else None


def _raise_oom_score() -> None:
    # Runs in the child before exec: volunteer as the OOM killer's first choice.
    with contextlib.suppress(OSError):
        Path("/proc/self/oom_score_adj").write_text("1000")


def run_child(
    spec: Mapping[str, Any],
    *,
    workdir: Path,
    name: str,
    timeout_s: float,
    rss_limit_bytes: int | None,
    env: Mapping[str, str] | None = None,
) -> ChildResult:
    """Run ``spec`` in a child process and wait for it (with a watchdog).

    The child starts as the ``segment2b`` command does (:mod:`segment2b.startup`: imports with
    the garbage collector paused, then frozen), so lane process times are the command's.

    The spec and the result travel through files in ``workdir``; the child's stdout/stderr go
    to ``<name>.log`` there (Dagster and the states log at INFO, as under ``segment2b run``).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    spec_path = workdir / f"{name}.spec.json"
    result_path = workdir / f"{name}.result.json"
    log_path = workdir / f"{name}.log"
    spec_path.write_text(json.dumps(spec, indent=2, default=str))
    result_path.unlink(missing_ok=True)
    result_path.with_suffix(".progress.jsonl").unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "segment2b.startup",
        "segment2b.bench.child",
        str(spec_path),
        str(result_path),
    ]
    t0 = time.perf_counter()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            preexec_fn=_raise_oom_score,  # noqa: PLW1509 - no threads in the parent here
        )
        killed: str | None = None
        seen_rss = seen_anon = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            rss, anon = _memory_bytes(proc.pid)
            seen_rss, seen_anon = max(seen_rss, rss), max(seen_anon, anon)
            elapsed = time.perf_counter() - t0
            if killed is None and rss_limit_bytes is not None and anon > rss_limit_bytes:
                killed = "memory_limit"
            elif killed is None and elapsed > timeout_s:
                killed = "timeout"
            if killed is not None:
                proc.send_signal(signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(POLL_S)
    # Reaped by wait4 above: tell Popen so it does not try again.
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    peak = max(int(usage.ru_maxrss) * 1024, seen_rss)  # ru_maxrss is KiB on Linux
    result: dict[str, Any] = {}
    if result_path.exists():
        result = json.loads(result_path.read_text())
    result["progress"] = _progress(result_path.with_suffix(".progress.jsonl"))
    if killed == "memory_limit":
        limit_gib = (rss_limit_bytes or 0) / 2**30
        error = (
            f"killed by the bench watchdog: private memory passed {limit_gib:.1f} GiB "
            f"during {running_step(result) or 'start-up'} after {wall:.0f} s"
        )
        return ChildResult(killed, wall, peak, seen_anon, result, error, str(log_path))
    if killed == "timeout":
        error = (
            f"killed by the bench watchdog after {timeout_s:.0f} s "
            f"during {running_step(result) or 'start-up'}"
        )
        return ChildResult(killed, wall, peak, seen_anon, result, error, str(log_path))
    if proc.returncode != 0 or not result.get("ok"):
        error = result.get("error") or (
            f"child exited with {proc.returncode} (signal {-proc.returncode} if negative); "
            f"log tail:\n{_tail(log_path)}"
        )
        return ChildResult("failed", wall, peak, seen_anon, result, error, str(log_path))
    return ChildResult("ok", wall, peak, seen_anon, result, None, str(log_path))
