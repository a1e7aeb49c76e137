"""Every store's lock yields a handle that writes go through, the same way in both APIs:
``set``/``delete`` with ``lock=`` write the locked ID under the usual SetBehavior rules,
a handle never writes another ID, and the lock is free again when the block ends."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from results_flow import AsyncResultsManager, ResultsManager, SetBehavior
from results_flow.backends.held import AsyncHeldLock, HeldLock
from results_flow.errors import LockTimeoutError, ResultExistsError


class Note(BaseModel):
    text: str


def test_sync_lock_handle_writes_its_own_id(store_url: str) -> None:
    rm = ResultsManager.from_url(store_url)
    if not rm.backend.offers_locks:
        rm.close()
        pytest.skip("a custom store written to the contract alone has no lock()")
    try:
        with rm.lock("jobs/a", timeout=30) as held:
            assert isinstance(held, HeldLock)
            assert held.result_id == "jobs/a"
            assert rm.set("jobs/a", Note(text="one"), lock=held)
            with pytest.raises(ResultExistsError):
                rm.set("jobs/a", Note(text="two"), lock=held)
            assert rm.set("jobs/a", Note(text="two"), SetBehavior.OVERWRITE, lock=held)
            with pytest.raises(ValueError, match="writes only its own ID"):
                rm.set("jobs/b", Note(text="elsewhere"), lock=held)
            assert not rm.exists("jobs/b")
            held.check()  # still held
        assert rm.get("jobs/a", Note) == Note(text="two")
        with rm.lock(["jobs", "a"], timeout=0) as again:  # free once the block ended
            assert rm.delete("jobs/a", lock=again)
        assert not rm.exists("jobs/a")
    finally:
        rm.close()


async def test_async_lock_handle_writes_its_own_id(store_url: str) -> None:
    if store_url.startswith("memory://"):
        pytest.skip("a memory store lives in one manager: the async twin is another store")
    rm, sync = AsyncResultsManager.from_url(store_url), ResultsManager.from_url(store_url)
    if not sync.backend.offers_locks:
        await rm.close()
        sync.close()
        pytest.skip("a custom store written to the contract alone has no lock()")
    try:
        async with rm.lock("jobs/a", timeout=30) as held:
            assert isinstance(held, AsyncHeldLock)
            with pytest.raises(LockTimeoutError):  # the sync API sees the same lock
                await asyncio.to_thread(lambda: sync.lock("jobs/a", timeout=0).__enter__())
            assert await rm.set("jobs/a", Note(text="one"), lock=held)
            with pytest.raises(ResultExistsError):
                await rm.set("jobs/a", Note(text="two"), lock=held)
            assert await rm.set("jobs/a", Note(text="two"), SetBehavior.OVERWRITE, lock=held)
            with pytest.raises(ValueError, match="writes only its own ID"):
                await rm.set("jobs/b", Note(text="elsewhere"), lock=held)
            assert not await rm.exists("jobs/b")
        assert sync.get("jobs/a", Note) == Note(text="two")
        async with rm.lock("jobs/a", timeout=0) as again:
            assert await rm.delete("jobs/a", lock=again)
        assert not sync.exists("jobs/a")
    finally:
        await rm.close()
        sync.close()
