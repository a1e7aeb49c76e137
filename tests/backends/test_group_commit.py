"""Group commit on the SQL stores (backends/sql/group_commit.py): writers of one process that
commit at the same moment share one transaction, and each keeps its own outcome.

A batch is formed on purpose: the first writer's commit is held until the others have
queued, so the next commit holds all of them (no timing involved). Regression guard:
one write's conflict or error must not fail the writes it committed with, and a kill
mid-batch must leave every acknowledged write and no torn one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from results_flow import ResultsManager
from results_flow.backends.sql.group_commit import GroupCommit
from results_flow.errors import ResultExistsError, StoreBusyError
from tests.backends.conftest import url_for
from tests.backends.models import Item

ROOT = Path(__file__).resolve().parents[2]
WRITERS = 12


@pytest.fixture(params=["sqlite", "postgres"])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return url_for(request.param, tmp_path, request)


@pytest.fixture
def rm(sql_url: str) -> Iterator[ResultsManager]:
    with ResultsManager.from_url(sql_url) as manager:
        yield manager


def group_of(rm: ResultsManager) -> GroupCommit:
    group: GroupCommit = rm.backend._rows._group  # type: ignore[attr-defined]
    return group


class HeldFirstCommit:
    """Wraps a group's commit: records each batch's size, and holds the first commit
    until ``queued`` writes wait behind it, so they form one batch."""

    def __init__(self, group: GroupCommit, queued: int) -> None:
        self.group, self.queued = group, queued
        self.commit = group.commit
        self.sizes: list[int] = []
        group.commit = self  # type: ignore[method-assign]
        # One batch at a time (PostgreSQL commits several at once): the writes queued
        # behind the held commit then wait for its lane and form one batch.
        group.lanes = 1

    def __call__(self, writes: Sequence[Any]) -> list[Any]:
        self.sizes.append(len(writes))
        if len(self.sizes) == 1:
            deadline = time.monotonic() + 60
            while len(self.group._queue) < self.queued and time.monotonic() < deadline:
                time.sleep(0.001)
        return self.commit(writes)


def in_one_batch(rm: ResultsManager, first: Callable[[], Any], rest: list[Callable[[], Any]]):
    """Run ``first``, then ``rest`` while its commit is held: ``rest`` commits as one batch."""
    held = HeldFirstCommit(group_of(rm), len(rest))
    with ThreadPoolExecutor(len(rest) + 1) as pool:
        leader = pool.submit(first)
        while not held.sizes:
            time.sleep(0.001)
        futures = [pool.submit(call) for call in rest]
        outcomes = [_outcome(f) for f in [leader, *futures]]
    assert held.sizes[:2] == [1, len(rest)], held.sizes
    return outcomes


def _outcome(future: Future[Any]) -> Any:
    try:
        return future.result()
    except Exception as exc:
        return exc


def test_writers_queued_together_commit_in_one_batch_and_all_land(rm: ResultsManager) -> None:
    items = {f"gc/{i}": Item(index=i, writer="w") for i in range(WRITERS)}
    calls = [lambda rid=rid, item=item: rm.set(rid, item) for rid, item in items.items()]
    outcomes = in_one_batch(rm, calls[0], calls[1:])
    assert all(o is True for o in outcomes), outcomes
    assert rm.get_many(list(items), Item) == items


def test_raise_if_exists_in_a_batch_raises_only_for_its_caller(rm: ResultsManager) -> None:
    rm.set("gc/taken", Item(index=0, writer="first"))
    new = [f"gc/new/{i}" for i in range(WRITERS - 1)]
    rest = [lambda rid=rid: rm.set(rid, Item(index=1, writer="w")) for rid in new]
    taken = lambda: rm.set("gc/taken", Item(index=2, writer="second"))  # noqa: E731
    skipped = lambda: rm.set("gc/taken", Item(index=3, writer="third"), "skip_if_exists")  # noqa: E731
    outcomes = in_one_batch(rm, rest[0], [*rest[1:], taken, skipped])
    assert outcomes[:-2] == [True] * len(new)
    assert isinstance(outcomes[-2], ResultExistsError) and "gc/taken" in str(outcomes[-2])
    assert outcomes[-1] is False
    assert rm.get("gc/taken", Item).writer == "first"
    assert rm.exists_many(new) == set(new)


def test_a_write_that_fails_in_a_batch_fails_alone(rm: ResultsManager) -> None:
    """A write raising inside the batch's transaction rolls the batch back; every write
    then runs alone, so only the failing one gets its error."""
    rows = rm.backend._rows  # type: ignore[attr-defined]

    def failing(_: Any) -> None:
        raise ValueError("this write is broken")

    new = [f"gc/ok/{i}" for i in range(WRITERS - 1)]
    rest = [lambda rid=rid: rm.set(rid, Item(index=1, writer="w")) for rid in new]
    outcomes = in_one_batch(rm, rest[0], [*rest[1:], lambda: rows.write(failing)])
    assert outcomes[:-1] == [True] * len(new)
    assert isinstance(outcomes[-1], ValueError) and "broken" in str(outcomes[-1])
    assert rm.exists_many(new) == set(new)


def test_a_lone_writer_commits_at_once_in_a_batch_of_one(rm: ResultsManager) -> None:
    held = HeldFirstCommit(group_of(rm), 0)
    for i in range(3):
        rm.set(f"gc/alone/{i}", Item(index=i, writer="w"))
    assert held.sizes == [1, 1, 1]


@pytest.mark.slow
def test_many_writers_killed_mid_batch_keep_every_acknowledged_write(
    sql_url: str, tmp_path: Path
) -> None:
    """SIGKILL while 16 threads commit in batches: every ``set`` that returned is stored
    and valid, and nothing else but whole records is."""
    ResultsManager.from_url(sql_url).close()
    acks = tmp_path / "acks"
    code = (
        "import sys; from tests.backends.workers import batched_writers; "
        "batched_writers(sys.argv[1], sys.argv[2], 16)"
    )
    for round_ in range(2):  # kill at two different moments
        acks.unlink(missing_ok=True)
        writer = subprocess.Popen([sys.executable, "-c", code, sql_url, str(acks)], cwd=ROOT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and writer.poll() is None:
            if acks.exists() and acks.stat().st_size > 8_000 * (round_ + 1):
                break
            time.sleep(0.01)
        assert writer.poll() is None, "the writer stopped before it was killed"
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        acknowledged = set(acks.read_text().split())
        assert len(acknowledged) > 100
        with ResultsManager.from_url(sql_url) as rm:
            ids = rm.list_ids("kill")
            assert acknowledged <= set(ids), sorted(acknowledged - set(ids))[:5]
            stored = rm.get_many(ids, Item)
            assert all(item.writer == "x" * (item.index % 300) for item in stored.values())


def test_writes_of_several_threads_all_land(rm: ResultsManager) -> None:
    """No batch loses or mixes up a write: 8 threads, 50 writes each."""

    def write(worker: int) -> None:
        for i in range(50):
            rm.set(f"gc/t{worker}/{i}", Item(index=i, writer=f"w{worker}"))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = rm.get_many([f"gc/t{w}/{i}" for w in range(8) for i in range(50)], Item)
    assert len(stored) == 400
    assert all(
        stored[f"gc/t{w}/{i}"] == Item(index=i, writer=f"w{w}") for w in range(8) for i in range(50)
    )


def test_a_write_not_taken_into_a_batch_in_time_gives_up_and_writes_nothing(
    rm: ResultsManager,
) -> None:
    """While a commit is held, a queued write waits ``wait`` seconds, then raises
    ``StoreBusyError`` naming the store; the held write still lands."""
    group = group_of(rm)
    group.lanes, group.wait = 1, 0.2
    entered, release = threading.Event(), threading.Event()
    commit = group.commit

    def held(writes: Sequence[Any]) -> list[Any]:
        entered.set()
        release.wait(60)
        return commit(writes)

    group.commit = held  # type: ignore[method-assign]
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(rm.set, "gc/first", Item(index=1))
        assert entered.wait(60)
        second = pool.submit(rm.set, "gc/second", Item(index=2))
        with pytest.raises(StoreBusyError, match="other writers of this process"):
            second.result(timeout=60)
        release.set()
        assert first.result(timeout=60) is True
    assert rm.exists("gc/first") and not rm.exists("gc/second")
