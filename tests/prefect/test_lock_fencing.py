"""The compute-once sequence writes through its held lock, in sync and async tasks alike:
a lock lost while the body computes refuses the late write (LockLostError) and keeps
what the worker that took the lock over stored; a store without per-ID locks fails once,
before anything runs, with one message that says what to do."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence

import pytest
import sqlalchemy as sa
from prefect import flow
from pydantic import BaseModel

from results_flow import ResultsManager, SetBehavior
from results_flow.backends.base import ResultsBackend
from results_flow.backends.memory import MemoryBackend
from results_flow.backends.registry import register_backend
from results_flow.errors import LockLostError, ResultsTaskError
from results_flow.prefect import results_map, results_task
from results_flow.records import Record
from tests.prefect.conftest import CallLog


class Answer(BaseModel):
    value: int
    by: str


def _terminate_lock_sessions(url: str) -> int:
    """End every session that holds an advisory lock in the store's database, as a
    server restart or a dropped connection would; the number of sessions ended."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.begin() as conn:
            return len(
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(l.pid) FROM pg_locks l "
                        "JOIN pg_stat_activity a ON a.pid = l.pid "
                        "WHERE l.locktype = 'advisory' AND a.datname = current_database() "
                        "AND l.pid <> pg_backend_pid()"
                    )
                ).all()
            )
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_lock_lost_mid_compute_refuses_the_late_write(postgres_url: str, kind: str) -> None:
    rm = ResultsManager.from_url(postgres_url)
    # Another worker: the same database through lock sessions of its own (threads of one
    # process on one store wait for each other in the process first).
    other = ResultsManager.from_url(f"{postgres_url}?connect_timeout=9")

    def take_over(rid: str) -> None:
        # The holder's session dies; another worker takes the ID and stores its result.
        assert _terminate_lock_sessions(postgres_url) >= 1
        with other.lock(rid, timeout=30) as held:
            other.set(rid, Answer(value=2, by="other"), SetBehavior.OVERWRITE, lock=held)

    if kind == "sync":

        @results_task(manager=rm, refresh=True, id="fenced/{n}")
        def answer(n: int) -> Answer:
            take_over(f"fenced/{n}")
            return Answer(value=n, by="late holder")

    else:

        @results_task(manager=rm, refresh=True, id="fenced/{n}")
        async def answer(n: int) -> Answer:
            await asyncio.to_thread(take_over, f"fenced/{n}")
            return Answer(value=n, by="late holder")

    @flow(name="fenced")
    def fenced() -> Answer:
        return answer(1)

    @flow(name="fenced")
    async def afenced() -> Answer:
        return await answer(1)

    with pytest.raises(LockLostError, match="was lost"):
        fenced() if kind == "sync" else asyncio.run(afenced())
    stored = rm.get("fenced/1", Answer)
    assert stored == Answer(value=2, by="other")  # the late holder replaced nothing
    rm.close()
    other.close()


class NoLocks(ResultsBackend):
    """A store written from the custom-store contract alone: no ``lock``."""

    def __init__(self) -> None:
        self.inner = MemoryBackend("no-locks")
        self.location = "nolocks://test"

    @classmethod
    def from_url(cls, url: str) -> NoLocks:
        return _SHARED

    def read(self, result_id: str) -> Record | None:
        return self.inner.read(result_id)

    def insert(self, result_id: str, record: Record) -> Record | None:
        return self.inner.insert(result_id, record)

    def upsert(self, result_id: str, record: Record) -> None:
        self.inner.upsert(result_id, record)

    def delete(self, result_id: str) -> bool:
        return self.inner.delete(result_id)

    def list_ids(self, prefix: str | None = None) -> list[str]:
        return self.inner.list_ids(prefix)

    def read_many(self, result_ids: Sequence[str]) -> dict[str, Record]:
        return self.inner.read_many(result_ids)


_SHARED = NoLocks()


@pytest.fixture
def no_locks_url() -> Iterator[str]:
    register_backend("nolocks", NoLocks)
    yield "nolocks://test"
    _SHARED.inner.clear()


def test_a_store_without_locks_given_as_manager_fails_at_decoration() -> None:
    rm = ResultsManager(backend=NoLocks())
    with pytest.raises(ResultsTaskError, match="offers no per-ID locks.*lock=False"):

        @results_task(manager=rm)
        def double(n: int) -> Answer:
            return Answer(value=2 * n, by="double")

    @results_task(manager=rm, lock=False)
    def triple(n: int) -> Answer:
        return Answer(value=3 * n, by="triple")

    assert triple.fn(2) == Answer(value=6, by="triple")


def test_results_map_on_a_store_without_locks_fails_once_before_submitting(
    no_locks_url: str, calls: CallLog
) -> None:
    @results_task(manager=no_locks_url)
    def double(n: int) -> Answer:
        calls.path.open("a").write(f"{n}\n")
        return Answer(value=2 * n, by="double")

    @flow
    def fill() -> None:
        results_map(double, range(30))

    with pytest.raises(ResultsTaskError, match="offers no per-ID locks"):
        fill()
    assert calls.lines() == []  # nothing ran: one error, not thirty

    @results_task(manager=no_locks_url, lock=False)
    def halve(n: int) -> Answer:
        return Answer(value=n // 2, by="halve")

    @flow
    def fill_unlocked() -> int:
        return results_map(halve, range(30)).computed

    assert fill_unlocked() == 30
    with contextlib.suppress(Exception):
        _SHARED.inner.clear()
