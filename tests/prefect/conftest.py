"""Fixtures of the Prefect tests: the session harness, a fresh default store per test,
the side-channel call log, and the environment worker processes need."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _harness(prefect_harness: None) -> None:
    """Every Prefect test runs against the one session-wide test server."""


class CallLog:
    """The side channel: one line per task body run, written by any process."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> list[str]:
        return self.path.read_text().splitlines() if self.path.exists() else []

    def counts(self) -> Counter[str]:
        return Counter(self.lines())

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


@pytest.fixture
def calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CallLog:
    path = tmp_path / "calls.log"
    monkeypatch.setenv("RF_TEST_CALLS", str(path))
    return CallLog(path)


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls: CallLog) -> str:
    """A fresh SQLite store, made the default store of this process and its children."""
    url = f"sqlite:///{tmp_path / 'store' / 'results.db'}"
    monkeypatch.setenv("RESULTS_FLOW_STORE", url)
    return url


@pytest.fixture
def worker_env() -> dict[str, str]:
    """The environment of a worker process: this one's, plus the harness server."""
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ)
    env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def start_worker(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """``python -m tests.prefect.workers ARGS`` in the repository root."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.prefect.workers", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
