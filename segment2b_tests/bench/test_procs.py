"""The bench's memory probe: private (anonymous) memory is read apart from mapped file pages."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import pytest

from segment2b.bench.procs import _memory_bytes

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux /proc")


def test_mapped_file_pages_count_in_rss_but_not_in_private_memory(tmp_path: Path) -> None:
    path = tmp_path / "log.bin"
    path.write_bytes(b"\x01" * (64 * 2**20))
    rss0, anon0 = _memory_bytes(os.getpid())
    assert 0 < anon0 <= rss0
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        assert sum(mm[i] for i in range(0, len(mm), 4096)) == len(mm) // 4096  # touch pages
        rss1, anon1 = _memory_bytes(os.getpid())
    assert rss1 - rss0 >= 48 * 2**20  # the touched file pages are resident...
    assert anon1 - anon0 < 16 * 2**20  # ...but they are not private memory


def test_a_finished_process_reads_as_zero() -> None:
    assert _memory_bytes(2**22 + 12345) == (0, 0)
