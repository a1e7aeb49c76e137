"""StoreLockManager: Prefect's own caching (SERIALIZABLE isolation, ResultsStorage)
computes each key once across processes on the store's locks, without Redis."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from results_flow import ResultsManager
from results_flow.prefect import ResultsStorage, StoreLockManager
from results_flow.prefect.locking import lock_id
from tests.prefect.conftest import ROOT

COUNT = 6


@pytest.fixture(params=["sqlite", "postgres"])
def race_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'race.db'}"


def test_two_processes_compute_each_key_once(
    race_store: str, tmp_path: Path, worker_env: dict[str, str]
) -> None:
    log, go = tmp_path / "calls.log", tmp_path / "go"
    name = f"race-{uuid.uuid4().hex[:8]}"
    ResultsStorage(store_url=race_store).save(name)
    args = [race_store, f"results-storage/{name}", str(log), str(go), str(COUNT)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.prefect.lock_manager_worker", *args],
            cwd=ROOT,
            env=worker_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    time.sleep(1.0)  # both import, then wait for `go`
    go.touch()
    outputs = []
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-3000:]
        outputs.append(out.strip().splitlines()[-1])
    squares = str([n * n for n in range(COUNT)])
    assert outputs == [squares, squares]  # both got every result
    assert Counter(log.read_text().split()) == {str(n): 1 for n in range(COUNT)}


def test_lock_manager_protocol_on_a_store(tmp_path: Path) -> None:
    rm = ResultsManager.from_url(f"sqlite:///{tmp_path / 'locks.db'}")
    locks, other = StoreLockManager(rm), StoreLockManager(rm)
    assert locks.acquire_lock("k1", holder="a", acquire_timeout=1)
    assert locks.acquire_lock("k1", holder="a")  # re-entrant for its holder
    assert locks.is_lock_holder("k1", "a") and not locks.is_lock_holder("k1", "b")
    assert other.is_locked("k1")
    assert not other.acquire_lock("k1", holder="b", acquire_timeout=0.2)
    assert not other.wait_for_lock("k1", timeout=0.2)
    with pytest.raises(ValueError, match="No lock held by b"):
        locks.release_lock("k1", "b")
    locks.release_lock("k1", "a")
    assert not other.is_locked("k1")
    assert other.wait_for_lock("k1", timeout=1)
    assert other.acquire_lock("k1", holder="b", acquire_timeout=1, hold_timeout=0.3)
    time.sleep(1.0)  # held past hold_timeout: released
    assert not locks.is_locked("k1")
    assert lock_id("a/../b") != "prefect-locks/a/../b"  # a key that is no valid ID is hashed
    rm.close()
