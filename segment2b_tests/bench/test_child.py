"""The benchmark child's pure helpers (no timing is asserted anywhere)."""

from __future__ import annotations

import argparse
import os

import pytest

from segment2b.bench.child import UNITS, _attribute_s6_preparation, cli_run_argv
from segment2b.cli import main as cli_main
from segment2b.states.outcome import StateOutcome
from segment2b.storage.home import HOME_ENV


def test_cli_run_argv_carries_home_policies_and_world() -> None:
    spec = {
        "home": "/tmp/h",
        "policies": "/tmp/p",
        "world": {"profile": "replica", "n_merchants": 200, "roster_arrivals": 5000},
    }
    assert cli_run_argv(spec) == [
        "--home",
        "/tmp/h",
        "--policies",
        "/tmp/p",
        "--profile",
        "replica",
        "--merchants",
        "200",
        "--arrivals",
        "5000",
        "run",
    ]
    assert cli_run_argv({"home": "/tmp/h", "policies": None, "world": {}}) == [
        "--home",
        "/tmp/h",
        "run",
    ]


def test_cli_run_argv_is_accepted_by_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # The arguments must parse as `segment2b` parses them: stop right after parsing.
    seen: dict[str, object] = {}

    def fake_run(args: argparse.Namespace) -> None:
        seen.update(home=args.home, merchants=args.merchants, arrivals=args.arrivals)

    # The command line exports the home; restore the environment afterwards.
    monkeypatch.setenv(HOME_ENV, os.environ.get(HOME_ENV, "/tmp/unset"))

    monkeypatch.setattr("segment2b.cli.cmd_run", fake_run)
    monkeypatch.setattr("segment2b.cli._instance_home", lambda home: home)
    spec = {"home": "/tmp/h", "world": {"n_merchants": 200, "roster_arrivals": 5000}}
    cli_main(cli_run_argv(spec))
    assert (str(seen["home"]), seen["merchants"], seen["arrivals"]) == ("/tmp/h", 200, 5000)
    assert "cli_run" in UNITS


def test_only_the_wait_for_s6_moves_from_s5_to_s6() -> None:
    # S6 is prepared beside S5's rendering; S5's report says how long S5 then waited for it.
    s5 = StateOutcome(frame=None, report={"performance": {"durations_ms": {"s6_prepare": 250}}})
    steps = [
        {"step": "S5", "start": 10.0, "elapsed_s": 2.0},
        {"step": "S6", "start": 12.0, "elapsed_s": 0.1},
    ]
    _attribute_s6_preparation(steps, {"S5": s5})
    assert steps[0]["elapsed_s"] == pytest.approx(1.75)
    assert steps[1]["elapsed_s"] == pytest.approx(0.35)
    assert steps[1]["start"] == pytest.approx(11.75)
    assert sum(s["elapsed_s"] for s in steps) == pytest.approx(2.1)  # the wall is kept
    unjoined = [dict(s) for s in steps]
    _attribute_s6_preparation(unjoined, {"S5": StateOutcome(frame=None, report={})})
    assert unjoined == steps
