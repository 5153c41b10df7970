"""``segment2b bench``: per-state runtime, peak memory, lane timings, Dagster overhead, scale sweep.

Every measured unit runs in its own child process (``python -m segment2b.startup
segment2b.bench.child``: started as the ``segment2b`` command starts) on a fresh storage home,
so each unit's peak memory is the kernel's high-water mark for that process alone and
idempotent re-publishes never shorten a timing. See ``docs/benchmark.md``.
"""
