"""Where a benchmark runs: its work folder, fresh storage homes, limits, and the child runner.

Every measurement gets its own fresh storage home, so no step finds its outputs already
published (an idempotent re-publish skips the write and would flatter the timing). Homes are
deleted once measured unless ``keep`` is set (``SEGMENT2B_BENCH_KEEP=1``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segment2b.bench.procs import ChildResult, mem_available_bytes, run_child

KEEP_ENV = "SEGMENT2B_BENCH_KEEP"
TIMEOUT_ENV = "SEGMENT2B_BENCH_UNIT_TIMEOUT_S"
RSS_LIMIT_ENV = "SEGMENT2B_BENCH_RSS_LIMIT_GIB"
DEFAULT_UNIT_TIMEOUT_S = 1800.0
# Share of the memory available when a unit starts that it may use before the watchdog stops
# it: leaves room for the parent, the page cache and whatever else shares the machine.
RSS_SHARE_OF_AVAILABLE = 0.85


@dataclass
class BenchContext:
    """One benchmark invocation."""

    root: Path
    world: dict[str, Any]
    policies: str | None
    keep: bool = False
    unit_timeout_s: float = DEFAULT_UNIT_TIMEOUT_S
    rss_limit_gib: float | None = None
    homes: list[Path] = field(default_factory=list)

    @classmethod
    def from_env(
        cls, root: Path, world: Mapping[str, Any], policies: str | None, *, keep: bool = False
    ) -> BenchContext:
        limit = os.environ.get(RSS_LIMIT_ENV)
        return cls(
            root=root,
            world=dict(world),
            policies=policies,
            keep=keep or os.environ.get(KEEP_ENV, "") not in ("", "0"),
            unit_timeout_s=float(os.environ.get(TIMEOUT_ENV) or DEFAULT_UNIT_TIMEOUT_S),
            rss_limit_gib=float(limit) if limit else None,
        )

    def fresh_home(self, name: str) -> Path:
        home = self.root / "homes" / name
        if home.exists():
            shutil.rmtree(home)
        home.mkdir(parents=True)
        self.homes.append(home)
        return home

    def rss_limit_bytes(self) -> int | None:
        if self.rss_limit_gib is not None:
            return int(self.rss_limit_gib * 2**30)
        available = mem_available_bytes()
        return int(available * RSS_SHARE_OF_AVAILABLE) if available else None

    def spec(self, kind: str, home: Path, **fields: Any) -> dict[str, Any]:
        return {
            "kind": kind,
            "home": str(home),
            "policies": self.policies,
            "world": self.world,
            **fields,
        }

    def run(self, spec: Mapping[str, Any], name: str, **env: str) -> ChildResult:
        # Start every measurement with no dirty pages queued for writeback: a unit that follows
        # one which wrote gigabytes of logs would otherwise pay for the previous unit's flush.
        os.sync()
        return run_child(
            spec,
            workdir=self.root / "logs",
            name=name,
            timeout_s=self.unit_timeout_s,
            rss_limit_bytes=self.rss_limit_bytes(),
            env={"SEGMENT2B_HOME": spec["home"], **env},
        )

    def discard(self, home: Path) -> None:
        """Delete a measured home (unless kept) — disk use grows fast at sweep scale."""
        if not self.keep and home.exists():
            shutil.rmtree(home, ignore_errors=True)

    def finish(self) -> None:
        if self.keep:
            return
        for home in self.homes:
            self.discard(home)
        shutil.rmtree(self.root / "homes", ignore_errors=True)
