"""Races and crashes on the stores several processes share: file, SQLite, PostgreSQL, S3.

Regression guard for the defects of the system we follow: a check-then-write that
raced, and writes a killed process could leave half done.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest

from results_flow import ResultsManager
from tests.backends.models import Item
from tests.backends.workers import skip_if_exists_writer

WORKERS = 8
WRITES = 500
ROOT = Path(__file__).resolve().parents[2]


def _check_exactly_one_winner(url: str, results: list[list[str]], ids: list[str]) -> None:
    wins = Counter(rid for won in results for rid in won)
    assert sum(wins.values()) == len(ids), "number of True returns must equal the number of IDs"
    assert set(wins) == set(ids) and max(wins.values()) == 1
    with ResultsManager.from_url(url) as rm:
        assert rm.list_ids("race") == sorted(ids)
        stored = rm.get_many(ids, Item)
    winner_of = {rid: f"w{w}" for w, won in enumerate(results) for rid in won}
    assert all(stored[rid].writer == winner_of[rid] for rid in ids), (
        "the stored record is the winner's"
    )


def race_size(url: str, writes: int) -> tuple[int, int]:
    """(workers, IDs) for a race: every request to the local S3 server is an HTTP round
    trip through one Python process, so its races are 6 workers on 100 IDs."""
    return (6, 100) if url.startswith("s3://") else (WORKERS, writes)


@pytest.mark.slow
def test_processes_racing_skip_if_exists_leave_one_record_per_id(shared_store_url: str) -> None:
    workers, writes = race_size(shared_store_url, WRITES)
    ids = [f"race/{i}" for i in range(writes)]
    ResultsManager.from_url(shared_store_url).close()  # create the store before the race
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(
            pool.map(
                skip_if_exists_writer, [shared_store_url] * workers, range(workers), [ids] * workers
            )
        )
    _check_exactly_one_winner(shared_store_url, results, ids)


def test_threads_racing_skip_if_exists_leave_one_record_per_id(shared_store_url: str) -> None:
    workers, writes = race_size(shared_store_url, 200)
    ids = [f"race/{i}" for i in range(writes)]
    ResultsManager.from_url(shared_store_url).close()
    with ThreadPoolExecutor(workers) as pool:
        results = list(
            pool.map(
                skip_if_exists_writer, [shared_store_url] * workers, range(workers), [ids] * workers
            )
        )
    _check_exactly_one_winner(shared_store_url, results, ids)


@pytest.mark.slow
def test_writer_killed_mid_write_leaves_every_id_absent_or_valid(
    shared_store_url: str, tmp_path: Path
) -> None:
    ResultsManager.from_url(shared_store_url).close()
    ready = tmp_path / "ready"
    code = (
        "import sys; from tests.backends.workers import endless_writer; "
        "endless_writer(sys.argv[1], sys.argv[2])"
    )
    for _ in range(2):  # kill at two different moments
        ready.unlink(missing_ok=True)
        writer = subprocess.Popen(
            [sys.executable, "-c", code, shared_store_url, str(ready)], cwd=ROOT
        )
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline and writer.poll() is None:
            time.sleep(0.01)
        assert ready.exists(), "the writer never got going"
        time.sleep(0.05)
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        with ResultsManager.from_url(shared_store_url) as rm:
            ids = rm.list_ids()
            # Every write that returned before "ready" must be there (endless_writer's IDs).
            expected = {f"crash/new/{c}" if c % 2 == 0 else f"crash/{c % 50}" for c in range(200)}
            assert expected <= set(ids), sorted(expected - set(ids))
            assert all(i.startswith("crash/") for i in ids)
            for rid in ids:
                assert isinstance(rm.get(rid), Item)
            assert rm.get_many(ids).keys() == set(ids)
    if shared_store_url.startswith("file://"):
        root = Path(shared_store_url.removeprefix("file://"))
        leftovers = [p for p in root.rglob("*.tmp")]
        assert all(p.name.startswith(".") for p in leftovers), "temp files are hidden"
        assert all(not p.name.endswith(".json") for p in leftovers)


def test_forked_child_reads_and_writes_on_its_own_connections(tmp_path: Path) -> None:
    """Regression guard: pooled and per-thread SQLite connections never cross a fork."""
    rm = ResultsManager.from_url(f"sqlite:///{tmp_path / 'fork.db'}")
    rm.set("parent", Item(index=1))
    assert rm.get("parent", Item).index == 1  # the parent's reader connection is open
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        ok = rm.get("parent", Item).index == 1 and rm.set("child", Item(index=2))
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert rm.get("child", Item).index == 2
    assert rm.exists("parent")
