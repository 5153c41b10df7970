"""Kernels load once per process, in the background, and a failed preload is not fatal."""

from __future__ import annotations

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
