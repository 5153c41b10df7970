"""S5 and S6 in one step (the router asset): S6 prepared from S5's in-memory routing, the shared
trace written once. Must give exactly the bytes and outcomes of S5 then S6 run apart.

Grain: one run (seed, parameter_hash, run_id); the trace holds S5's rows then S6's.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from segment2b.errors import SegmentError
from segment2b.states import rng_logs, s5_router
from segment2b.states.outcome import StateOutcome
from segment2b.states.s5_router import run_s5
from segment2b.states.s6_edge_router import S6Pending, prepare_s6, run_s6
from segment2b.storage.digests import sha256_bytes
from segment2b.storage.home import StorageHome
from segment2b_tests.fixtures import TinyRun
from segment2b_tests.states.test_s5_router import s5_kwargs, sealed_run


def _joined(run: TinyRun) -> tuple[StateOutcome, StateOutcome]:
    kw = s5_kwargs(run)
    s5 = run_s5(run.home, **kw, join_s6=lambda so_far: prepare_s6(run.home, **kw, s5=so_far))
    join = s5.extras["s6_join"]
    assert isinstance(join, S6Pending)
    return s5, join.finish(s5.extras["s6_trace"])


def _apart(run: TinyRun) -> tuple[StateOutcome, StateOutcome]:
    s5 = run_s5(run.home, **s5_kwargs(run))
    return s5, run_s6(run.home, **s5_kwargs(run), s5=s5)


def _logs(run: TinyRun) -> dict[str, bytes]:
    root = run.home.root / "logs"
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*.jsonl"))
        if "rng/audit" not in p.as_posix()  # wall-clock ts_utc by design (s5 §3.3)
    }


def _outcomes(out: StateOutcome, home: StorageHome) -> list[tuple[Any, ...]]:
    rows = [
        (p.path.relative_to(home.root).as_posix(), p.bytes, p.digest, p.outcome)
        for p in out.published
    ]
    # The audit row's ts_utc is wall-clock by design (s5 §3.3): compare its outcome only.
    return [(r[0], r[3]) if "rng/audit" in r[0] else r for r in rows]


def test_joined_router_writes_what_s5_then_s6_write(tmp_path: Path) -> None:
    apart, joined = sealed_run(tmp_path / "apart"), sealed_run(tmp_path / "joined")
    a5, a6 = _apart(apart)
    j5, j6 = _joined(joined)
    assert _logs(joined) == _logs(apart)
    assert j6.report["counts"]["virtual_arrivals"] == 2
    assert _outcomes(j5, joined.home) == _outcomes(a5, apart.home)
    assert _outcomes(j6, joined.home) == _outcomes(a6, apart.home)
    assert j6.frame.equals(a6.frame)
    assert not list(joined.home.tmp.iterdir())  # no stage left behind


def test_joined_reruns_are_idempotent_in_either_mode(tmp_path: Path) -> None:
    run = sealed_run(tmp_path)
    _joined(run)
    before = _logs(run)
    j5, j6 = _joined(run)
    assert {p.outcome for p in (*j5.published, *j6.published)} == {"idempotent"}
    a5, a6 = _apart(run)
    assert {p.outcome for p in (*a5.published, *a6.published)} == {"idempotent"}
    _joined(run)
    assert _logs(run) == before


def test_an_s6_failure_in_the_join_publishes_nothing(tmp_path: Path) -> None:
    run = sealed_run(tmp_path)
    kw = s5_kwargs(run)

    def broken_s6(_so_far: Callable[[], StateOutcome]) -> S6Pending:
        raise SegmentError("2B-S6-031", "edge list invalid", dataset="virtual_edge_policy_v1")

    with pytest.raises(SegmentError) as exc:
        run_s5(run.home, **kw, join_s6=broken_s6)
    assert exc.value.code == "2B-S6-031"
    assert not (run.home.root / "logs").exists() or _logs(run) == {}
    assert not list(run.home.tmp.iterdir())


class _RecordingJoin:
    """A prepared S6 that records whether S5 abandoned it."""

    def __init__(self) -> None:
        self.tail = b""
        self.input_version = "v6"
        self.abandoned = False

    def abandon(self) -> None:
        self.abandoned = True


def _break_site_family(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise SegmentError("2B-S5-050", "site family could not be rendered")

    monkeypatch.setattr(s5_router, "s5_site_plan", broken)


def test_an_s5_failure_while_s6_is_prepared_abandons_s6(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # S6 is prepared on its own thread while S5 renders: an S5 failure in that window must
    # still abandon what S6 prepared, publish nothing and raise S5's code.
    run = sealed_run(tmp_path)
    prepared: list[_RecordingJoin] = []

    def recording_s6(_so_far: Callable[[], StateOutcome]) -> _RecordingJoin:
        prepared.append(_RecordingJoin())
        return prepared[-1]

    _break_site_family(monkeypatch)
    with pytest.raises(SegmentError) as exc:
        run_s5(run.home, **s5_kwargs(run), join_s6=recording_s6)
    assert exc.value.code == "2B-S5-050"
    assert len(prepared) == 1 and prepared[0].abandoned
    assert not (run.home.root / "logs").exists() or _logs(run) == {}
    assert not list(run.home.tmp.iterdir())


def test_an_s5_routing_failure_releases_s6_waiting_for_the_routing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # S6's entry checks run while S5 routes, then S6 waits for the routing: if routing fails,
    # S6 must be released (no deadlock), prepare nothing and S5's code must surface.
    run = sealed_run(tmp_path)
    seen: list[BaseException] = []
    s6_waiting = threading.Event()

    def waiting_s6(so_far: Callable[[], StateOutcome]) -> _RecordingJoin:
        s6_waiting.set()
        try:
            so_far()
        except BaseException as exc:
            seen.append(exc)
            raise
        return _RecordingJoin()

    def broken_route(*_args: object, **_kwargs: object) -> None:
        assert s6_waiting.wait(timeout=60)  # fail only once S6 is (about to be) waiting
        raise SegmentError("2B-S5-040", "no S4 mix for a roster merchant-day")

    monkeypatch.setattr(s5_router, "route_arrivals", broken_route)
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            run_s5(run.home, **s5_kwargs(run), join_s6=waiting_s6)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive(), "S5 and S6 deadlocked on the routing"
    assert isinstance(outcome[0], SegmentError) and outcome[0].code == "2B-S5-040"
    assert len(seen) == 1 and seen[0] is outcome[0]
    assert not list(run.home.tmp.iterdir())


def test_s5_failures_come_before_s6_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = sealed_run(tmp_path)

    def broken_s6(_so_far: Callable[[], StateOutcome]) -> S6Pending:
        raise SegmentError("2B-S6-031", "edge list invalid", dataset="virtual_edge_policy_v1")

    _break_site_family(monkeypatch)
    with pytest.raises(SegmentError) as exc:
        run_s5(run.home, **s5_kwargs(run), join_s6=broken_s6)
    assert exc.value.code == "2B-S5-050"  # the serial order: S5's renders, then S6


# --- publish_trace_s5_s6 against publish_trace_s5 then publish_trace_s6 -----------------------

S5_ROWS = b'{"module": "2B.S5.router", "k": 0}\n{"module": "2B.S5.router", "k": 1}\n'
S5_OTHER = b'{"module": "2B.S5.router", "k": 7}\n'
TAIL = b'{"module": "2B.virtual_edge", "k": 0}\n'
TAIL_OLD = b'{"module": "2B.virtual_edge", "k": 9}\n'

# (existing trace or None, recorded S5 version, recorded S6 version, new tail)
SCENARIOS: dict[str, tuple[bytes | None, str | None, str | None, bytes]] = {
    "fresh": (None, None, None, TAIL),
    "after_s5_only": (S5_ROWS, "v5", None, TAIL),
    "both_there": (S5_ROWS + TAIL, "v5", "v6", TAIL),
    "other_tail_same_version_081": (S5_ROWS + TAIL_OLD, "v5", "v6", TAIL),
    "other_tail_new_version": (S5_ROWS + TAIL_OLD, "v5", "v6-old", TAIL),
    "other_s5_same_version_080": (S5_OTHER + TAIL_OLD, "v5", "v6", TAIL),
    "other_s5_new_version": (S5_OTHER + TAIL_OLD, "v5-old", "v6-old", TAIL),
    "no_tail_fresh": (None, None, None, b""),
    "no_tail_after_s5": (S5_ROWS, "v5", None, b""),
    "no_tail_but_s6_rows_095": (S5_ROWS + TAIL_OLD, "v5", "v6", b""),
}


def _trace_home(
    root: Path, existing: bytes | None, v5: str | None, v6: str | None
) -> tuple[StorageHome, Path, Path]:
    home = StorageHome(root=root / "home", policy_root=root / "policies")
    target = home.root / "logs" / "trace" / "rng_trace_log.jsonl"
    target.parent.mkdir(parents=True)
    if existing is not None:
        target.write_bytes(existing)
        for tag, version in (("s5", v5), ("s6", v6)):
            if version is not None:
                rng_logs._write_version(home, target, tag, version)
    staged = root / "staged.jsonl"
    staged.write_bytes(S5_ROWS)
    return home, target, staged


def _result(fn: Callable[[], list[Any]]) -> Any:
    try:
        return [None if r is None else (r.bytes, r.digest, r.outcome) for r in fn()]
    except SegmentError as exc:
        return exc.code


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_one_write_equals_s5_publish_then_s6_append(tmp_path: Path, name: str) -> None:
    existing, v5, v6, tail = SCENARIOS[name]
    homes = {}
    for mode in ("apart", "joined"):
        homes[mode] = _trace_home(tmp_path / mode, existing, v5, v6)
    home, target, staged = homes["apart"]

    def apart() -> list[Any]:
        first = rng_logs.publish_trace_s5(home, target, staged, input_version="v5")
        return [first, rng_logs.publish_trace_s6(home, target, tail, input_version="v6")]

    jhome, jtarget, jstaged = homes["joined"]

    def joined() -> list[Any]:
        return list(
            rng_logs.publish_trace_s5_s6(
                jhome, jtarget, jstaged, input_version="v5", tail=tail, tail_version="v6"
            )
        )

    want, got = _result(apart), _result(joined)
    assert got == want
    assert jtarget.read_bytes() == target.read_bytes()
    if name.endswith(("_080", "_081", "_095")):
        assert isinstance(got, str) and got.endswith(name[-3:])
        assert jtarget.read_bytes() == existing  # a refused publish leaves the trace as it was
    else:
        assert isinstance(got, list)
        for tag in ("s5", "s6"):
            assert rng_logs._read_version(jhome, jtarget, tag) == rng_logs._read_version(
                home, target, tag
            )
    shutil.rmtree(tmp_path / "joined", ignore_errors=True)


def test_fresh_trace_publish_hashes_nothing_unless_a_target_exists(tmp_path: Path) -> None:
    """A fresh trace with no writer digest is renamed unhashed (digest None); once the target
    exists the staged bytes are hashed to be compared (DECISIONS 29)."""
    home, target, staged = _trace_home(tmp_path, None, None, None)
    first = rng_logs.publish_trace_s5(home, target, staged, input_version="v5")
    assert (first.outcome, first.digest) == ("published", None)
    staged.write_bytes(S5_ROWS)
    again = rng_logs.publish_trace_s5(home, target, staged, input_version="v5")
    assert (again.outcome, again.digest) == ("idempotent", sha256_bytes(S5_ROWS))
