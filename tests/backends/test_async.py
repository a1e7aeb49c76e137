"""AsyncResultsManager: the same behaviour as coroutines, on every backend."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from results_flow import (
    AsyncResultsManager,
    ResultConflictError,
    ResultExistsError,
    ResultNotFoundError,
    ResultsManager,
    SetBehavior,
)
from results_flow.backends.sql_async import AsyncSqlBackend
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
