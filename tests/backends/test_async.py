"""AsyncResultsManager: the same behaviour as coroutines, on every backend."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from results_flow import (
    AsyncResultsManager,
    InvalidResultsError,
    ResultConflictError,
    ResultExistsError,
    ResultNotFoundError,
    ResultsManager,
    SetBehavior,
)
from results_flow.backends.sql.async_store import AsyncSqlBackend
from tests.backends.models import Item, Person

JOHN = Person(name="John", age=30)


async def test_async_api_round_trip(store_url: str) -> None:
    async with AsyncResultsManager.from_url(store_url) as rm:
        assert await rm.set("people/john", JOHN) is True
        assert await rm.get("people/john") == JOHN
        assert await rm.get("people/john", Person) == JOHN
        assert await rm.exists("people/john")
        assert await rm.list_ids("people") == ["people/john"]
        with pytest.raises(ResultExistsError):
            await rm.set("people/john", JOHN)
        assert await rm.set("people/john", Item(index=1), SetBehavior.SKIP_IF_EXISTS) is False
        with pytest.raises(ResultConflictError):
            await rm.set("people/john", Item(index=1), SetBehavior.RAISE_IF_DIFFERENT)
        await asyncio.gather(*(rm.set(f"item/{i}", Item(index=i)) for i in range(20)))
        assert len(await rm.list_ids("item")) == 20
        assert await rm.exists_many(["item/3", "item/99"]) == {"item/3"}
        assert (await rm.get_many(["item/4"], Item))["item/4"] == Item(index=4)
        assert await rm.delete("item/3") and not await rm.exists("item/3")
        with pytest.raises(ResultNotFoundError):
            await rm.get("item/3")
        await rm.clear()
        assert await rm.list_ids() == []


async def test_sync_and_async_managers_see_the_same_store(shared_store_url: str) -> None:
    sync = ResultsManager.from_url(shared_store_url)
    sync.set("shared", JOHN)
    async with AsyncResultsManager.from_url(shared_store_url) as rm:
        assert await rm.get("shared") == JOHN
        await rm.set("from/async", Item(index=2))
    assert sync.get("from/async") == Item(index=2)
    sync.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_sql_stores_use_the_asyncio_engine(
    kind: str, tmp_path: object, request: pytest.FixtureRequest
) -> None:
    from tests.backends.conftest import url_for

    url = url_for(kind, tmp_path, request)  # type: ignore[arg-type]
    async with AsyncResultsManager.from_url(url) as rm:
        assert isinstance(rm.backend, AsyncSqlBackend)
        assert isinstance(rm.backend.engine, AsyncEngine)
        assert rm.backend.engine.dialect.driver in ("aiosqlite", "asyncpg")


async def test_event_loop_keeps_running_during_store_calls(store_url: str) -> None:
    """A ticker on the loop keeps ticking while 200 writes are awaited."""
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    async with AsyncResultsManager.from_url(store_url) as rm:
        task = asyncio.create_task(ticker())
        start = time.perf_counter()
        for i in range(200):
            await rm.set(f"t/{i}", Item(index=i))
        stop.set()
        await task
    assert ticks > 200, f"the loop ran only {ticks} times in {time.perf_counter() - start:.2f}s"


def test_one_async_manager_shared_by_threads_each_with_its_own_loop(
    shared_store_url: str,
) -> None:
    """Its SQL engine's pool belonged to the first loop: on SQLite the threads hung."""
    arm = AsyncResultsManager.from_url(shared_store_url)
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        async def fill() -> None:
            await asyncio.gather(
                *(arm.set(f"t/{k}/{i}", Person(name="t", age=i)) for i in range(20))
            )

        try:
            asyncio.run(asyncio.wait_for(fill(), timeout=120))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not any(t.is_alive() for t in threads) and errors == []
    assert len(ResultsManager.from_url(shared_store_url).list_ids("t")) == 80


def test_async_get_many_takes_a_damaged_record_as_one_bad_id(tmp_path: Path) -> None:
    async def check() -> None:
        async with AsyncResultsManager.from_url(str(tmp_path / "store")) as arm:
            await arm.set("a", JOHN)
            await arm.set("b", JOHN)
            (tmp_path / "store" / "b.json").write_text("{")
            assert await arm.get_many(["a", "b"], Person, on_invalid="skip") == {"a": JOHN}
            with pytest.raises(InvalidResultsError) as caught:
                await arm.get_many(["a", "b"], Person)
            assert list(caught.value.invalid) == ["b"] and caught.value.found == {"a": JOHN}

    asyncio.run(check())


def test_one_async_manager_over_loops_one_after_another(shared_store_url: str) -> None:
    """On PostgreSQL the second asyncio.run failed ("Event loop is closed": the pool kept
    the first loop's connections); an engine per loop must not grow with the runs."""
    arm = AsyncResultsManager.from_url(shared_store_url)
    threads = []
    for i in range(6):
        asyncio.run(arm.set(f"seq/{i}", Person(name="s", age=i)))
        assert asyncio.run(arm.get(f"seq/{i}", Person)).age == i
        threads.append(threading.active_count())
    if shared_store_url.startswith("sqlite"):  # no aiosqlite thread left per run
        assert threads[-1] <= threads[1], threads
