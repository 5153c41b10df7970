"""Kernels load once per process, in the background, and a failed preload is not fatal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from segment2b.storage import compiled


def test_preload_starts_one_thread_per_process() -> None:
    first = compiled.preload()
    assert compiled.preload() is first
    first.join(timeout=120)
    assert not first.is_alive()
    assert not first.daemon  # the interpreter waits for it rather than stopping it mid-compile


def test_a_failing_warm_up_is_left_to_the_kernels_real_first_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken() -> int:
        raise RuntimeError("no cache directory")

    monkeypatch.setattr(compiled.roster_scan, "warm_up", broken)
    compiled._quiet_warm_up()  # swallowed: the run itself raises with context
    with pytest.raises(RuntimeError):
        compiled.warm_up()


_SIGNATURES_AFTER_ROUTING = """
import json, sys
from pathlib import Path

from segment2b.core import alias_table
from segment2b.storage import compiled, jsonl_render, roster_scan

kernels = {
    "alias_table._build": alias_table._build,
    "alias_table._decode": alias_table._decode,
    "roster_scan._newlines": roster_scan._newlines,
    "roster_scan._scan": roster_scan._scan,
    "jsonl_render._render": jsonl_render._render,
}
compiled.warm_up()
before = {name: {str(s) for s in k.signatures} for name, k in kernels.items()}

from segment2b.states.s5_router import run_s5
from segment2b.states.s6_edge_router import run_s6
from segment2b_tests.states.test_s5_router import s5_kwargs, sealed_run

run = sealed_run(Path(sys.argv[1]))
s5 = run_s5(run.home, **s5_kwargs(run))
run_s6(run.home, **s5_kwargs(run), s5=s5)
added = {n: sorted({str(s) for s in k.signatures} - before[n]) for n, k in kernels.items()}
print(json.dumps(added))
"""


def test_warm_up_compiles_every_kernel_variant_the_router_calls(tmp_path: Path) -> None:
    """numba compiles one variant per argument type (a read-only array is another type). A
    variant that ``warm_up`` does not make is compiled, or loaded from numba's cache, inside
    the run, on S5's clock. A fresh interpreter, because other tests call the kernels with
    other types on purpose."""
    done = subprocess.run(
        [sys.executable, "-c", _SIGNATURES_AFTER_ROUTING, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=300,
    )
    added = json.loads(done.stdout.strip().splitlines()[-1])
    assert added == {name: [] for name in added}
