"""Process start-up: import an entry module with the cyclic garbage collector paused.

    python -m segment2b.startup <module> [args ...]   # runs <module>.main([args ...])

Every process of this project (the ``segment2b`` command, its seed workers, the benchmark's
children) starts by importing dagster, polars and the asset graph: roughly a million objects that
live as long as the process and are never garbage. CPython's cyclic collector would scan them
again and again while they are being created, at every later full collection during a run, and
once more at exit. Measured on the fast lane (one seed through Dagster, 2-core machine): about
0.3 s of import time and 0.5 s of exit time per process. So the collector is paused while the
entry module is imported and what the import created is then frozen (``gc.freeze``: moved to a
generation the collector never scans). Objects created afterwards (the state functions' work)
are collected as usual; reference counting frees everything that is not in a cycle either way.
"""

from __future__ import annotations

import gc
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType


def settle_heap() -> None:
    """Freeze every object alive now (the collector's own on/off state is left alone)."""
    gc.freeze()


def import_settled(name: str) -> ModuleType:
    """Import ``name`` with the collector paused, then :func:`settle_heap`."""
    gc.disable()
    try:
        return importlib.import_module(name)
    finally:
        settle_heap()
        gc.enable()


def cli() -> None:
    """The ``segment2b`` console script."""
    import_settled("segment2b.cli").main()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m segment2b.startup <module> [args ...]", file=sys.stderr)
        return 2
    result = import_settled(args[0]).main(args[1:])
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
