"""Compute once: processes racing on the same IDs run each body once, on file, SQLite
and PostgreSQL stores; a lock holder killed with SIGKILL does not block the next run."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from results_flow import ResultsManager
from results_flow.errors import LockTimeoutError
from results_flow.prefect import result_id_for, results_task
from tests.prefect.conftest import CallLog, start_worker
from tests.prefect.tasks import Score, racer

WORKERS = 6
IDS = list(range(20))


@pytest.fixture(params=["file", "sqlite", "postgres"])
def shared_store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """A store several processes open at once, made the default store."""
    if request.param == "postgres":
        url = str(request.getfixturevalue("postgres_url"))
    elif request.param == "file":
        url = f"file://{tmp_path / 'files'}"
    else:
        url = f"sqlite:///{tmp_path / 'race.db'}"
    monkeypatch.setenv("RESULTS_FLOW_STORE", url)
    return url


def test_racing_processes_compute_each_id_once_on_every_shared_store(
    postgres_url: str, tmp_path: Path, worker_env: dict[str, str]
) -> None:
    stores = {
        "file": f"file://{tmp_path / 'files'}",
        "sqlite": f"sqlite:///{tmp_path / 'race.db'}",
        "postgres": postgres_url,
    }
    logs = {kind: CallLog(tmp_path / f"{kind}.log") for kind in stores}
    worker_env["RF_TEST_SLEEP"] = "0.05"
    go = tmp_path / "go"
    workers = []
    for w in range(WORKERS):
        order = IDS[w:] + IDS[:w]  # each worker meets the IDs in another order
        rounds = [[url, str(logs[kind].path), order] for kind, url in stores.items()]
        workers.append(start_worker(worker_env, "race", str(go), json.dumps(rounds)))
    time.sleep(0.5)  # they import, then all wait for `go`
    go.touch()
    for worker in workers:
        _, err = worker.communicate(timeout=180)
        assert worker.returncode == 0, err
    for kind, url in stores.items():
        assert logs[kind].counts() == Counter({f"racer:{i}": 1 for i in IDS}), kind
        rm = ResultsManager.from_url(url)
        assert len(rm.get_many([racer.result_id(i) for i in IDS], Score)) == len(IDS), kind


def test_sigkilled_lock_holder_does_not_block_the_next_run(
    shared_store: str, calls: CallLog, worker_env: dict[str, str]
) -> None:
    worker_env["RESULTS_FLOW_STORE"] = shared_store
    worker_env["RF_TEST_SLEEP"] = "300"
    holder = start_worker(worker_env, "hold", "99")
    deadline = time.monotonic() + 60
    while calls.lines() != ["racer:99"]:  # the body runs only while the lock is held
        assert holder.poll() is None, holder.communicate()
        assert time.monotonic() < deadline, "the holder never took the lock"
        time.sleep(0.02)
    holder.send_signal(signal.SIGKILL)
    holder.communicate()

    started = time.monotonic()
    result = racer.fn(99)  # the task's own wrapper, in this process, lock timeout 60 s
    assert time.monotonic() - started < 15
    assert isinstance(result, Score) and result.item == 99
    assert calls.lines() == ["racer:99", "racer:99"]
    assert ResultsManager.from_url(shared_store).get(racer.result_id(99), Score).item == 99


def test_waiting_past_lock_timeout_fails_naming_the_id() -> None:
    rm = ResultsManager.from_url("memory://lock-timeout")

    @results_task(manager=rm, lock_timeout=0.2)
    def slow(x: int) -> Score:
        return Score(item=x, value=0.0, pid=0)

    rid = result_id_for(slow, 1)
    with rm.lock(rid), pytest.raises(LockTimeoutError, match=rid):  # another worker computes
        slow.fn(1)
    assert slow.fn(1).item == 1
