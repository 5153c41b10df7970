"""Process start-up (segment2b.startup): the collector is paused only during the import."""

import gc
import subprocess
import sys

import pytest

from segment2b import startup


def test_import_settled_imports_and_leaves_the_collector_on() -> None:
    assert gc.isenabled()
    module = startup.import_settled("segment2b.storage.digests")
    assert module.__name__ == "segment2b.storage.digests"
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0


def test_import_settled_re_enables_the_collector_when_the_import_fails() -> None:
    with pytest.raises(ModuleNotFoundError):
        startup.import_settled("segment2b.no_such_module")
    assert gc.isenabled()


def test_main_without_a_module_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert startup.main([]) == 2
    assert "usage" in capsys.readouterr().err


def test_module_entry_point_runs_the_module_main() -> None:
    # The benchmark starts its children this way; a bad spec path must surface as the child's
    # own failure (its main's exit code), not as a start-up error.
    proc = subprocess.run(
        [sys.executable, "-m", "segment2b.startup", "segment2b.bundle_verify", "/nonexistent"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
