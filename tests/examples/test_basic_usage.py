"""examples/basic_usage.py runs as a user runs it, on the default store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_basic_usage_runs_twice_on_the_default_store(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RESULTS_FLOW_STORE"}
    for run in range(2):
        out = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "basic_usage.py")],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
        assert "Retrieved: John Doe, 30" in out
        assert "Teams: ['teams/engineering']" in out
        assert ("written" if run == 0 else "already stored, skipped") in out
    assert (tmp_path / "results_store" / "results.db").exists()
