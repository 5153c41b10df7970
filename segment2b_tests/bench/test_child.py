"""The benchmark child's pure helpers (no timing is asserted anywhere)."""

from __future__ import annotations

import argparse
import os

import pytest

from segment2b.bench.child import UNITS, cli_run_argv
from segment2b.cli import main as cli_main
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
