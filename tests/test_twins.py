"""The sync and async twins stay twins: AsyncResultsManager offers every public method
of ResultsManager with the same parameters, the async backends honour the sync ones'
options, both lock the same IDs, and both map the same driver errors."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from results_flow import AsyncResultsManager, ResultsManager, SqliteBackend
from results_flow.backends.memory import MemoryBackend
from results_flow.backends.sql.async_store import AsyncSqlBackend
from results_flow.backends.sql.engine import transaction
from results_flow.backends.sql.store import SqlBackend
from results_flow.errors import LockTimeoutError, StoreUnavailableError


def public_members(cls: type) -> dict[str, Any]:
    return {name: member for name, member in vars(cls).items() if not name.startswith("_")}


def parameters(member: Any) -> list[tuple[str, Any, Any]]:
    """Name, kind and default of each parameter after ``self``/``cls`` (annotations may
    differ: the async side takes async backends too)."""
    function = member.__func__ if isinstance(member, classmethod) else member
    if isinstance(member, property):
        function = member.fget
    params = list(inspect.signature(function).parameters.values())[1:]
    return [(p.name, p.kind, p.default) for p in params]


def test_async_manager_offers_every_public_method_of_the_sync_one() -> None:
    sync, async_ = public_members(ResultsManager), public_members(AsyncResultsManager)
    assert sorted(set(sync) - set(async_)) == []
    for name, member in sync.items():
        assert type(async_[name]) is type(member), name
        assert parameters(async_[name]) == parameters(member), name


def test_async_manager_methods_that_do_io_are_coroutines() -> None:
    for name, member in public_members(AsyncResultsManager).items():
        if name in {"from_url", "backend", "lock"}:
            continue
        assert inspect.iscoroutinefunction(member), name


def test_async_sql_backend_takes_the_sync_backends_options() -> None:
    sync = parameters(SqlBackend.__init__)
    assert parameters(AsyncSqlBackend.__init__) == sync


def test_to_async_keeps_every_option(tmp_path: Path) -> None:
    backend = SqliteBackend(
        tmp_path / "r.db",
        table="other",
        busy_timeout=3.0,
        lock_timeout=7.0,
        engine_options={"pool_recycle": 123},
    )
    twin = backend.to_async()
    assert isinstance(twin, AsyncSqlBackend)
    assert (twin.table.name, twin.busy_timeout, twin.lock_timeout) == ("other", 3.0, 7.0)
    assert twin.engine.pool._recycle == backend.engine.pool._recycle == 123
    backend.close()
    asyncio.run(twin.close())


def test_sync_and_async_defaults_are_the_same(tmp_path: Path) -> None:
    backend = SqliteBackend(tmp_path / "r.db")
    twin = backend.to_async()
    assert isinstance(twin, AsyncSqlBackend)
    plain = AsyncSqlBackend(f"sqlite:///{tmp_path / 'r.db'}")
    assert (twin.busy_timeout, twin.lock_timeout) == (backend.busy_timeout, backend.lock_timeout)
    assert (plain.busy_timeout, plain.lock_timeout) == (backend.busy_timeout, backend.lock_timeout)
    backend.close()
    asyncio.run(twin.close())
    asyncio.run(plain.close())


# --- lock(): the async manager's lock excludes the sync manager's, on every store ----


@pytest.fixture(params=["memory", "file", "sqlite", "postgres"])
def twin_managers(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[ResultsManager, AsyncResultsManager]]:
    if request.param == "memory":
        backend = MemoryBackend()
        yield ResultsManager(backend=backend), AsyncResultsManager(backend=backend)
        return
    url = {
        "file": lambda: f"file://{tmp_path / 'files'}",
        "sqlite": lambda: f"sqlite:///{tmp_path / 'results.db'}",
        "postgres": lambda: str(request.getfixturevalue("postgres_url")),
    }[request.param]()
    sync = ResultsManager.from_url(url)
    yield sync, AsyncResultsManager.from_url(url)
    sync.close()


async def test_async_lock_excludes_the_sync_lock(
    twin_managers: tuple[ResultsManager, AsyncResultsManager],
) -> None:
    sync, rm = twin_managers
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    try:
        async with rm.lock("jobs/a"):
            with pytest.raises(LockTimeoutError):
                await asyncio.to_thread(lambda: sync.lock("jobs/a", timeout=0).__enter__())
            with sync.lock("jobs/b", timeout=0):  # other IDs stay free
                pass
        with sync.lock("jobs/a", timeout=0), pytest.raises(LockTimeoutError):  # released on exit
            async with rm.lock("jobs/a", timeout=0):
                pass
    finally:
        ticker.cancel()
        await rm.close()
    assert ticks > 0  # the event loop kept running while the locks were taken


async def test_a_cancelled_waiter_leaves_the_lock_free(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'results.db'}"
    sync, rm = ResultsManager.from_url(url), AsyncResultsManager.from_url(url)
    with sync.lock("x"):
        waiter = asyncio.create_task(rm.lock("x", timeout=600).__aenter__())
        await asyncio.sleep(0.2)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    async with rm.lock("x", timeout=600):
        pass
    await rm.close()
    sync.close()


# --- the sync and async write retries map the same driver errors --------------------


def test_sync_write_maps_oserror_like_the_async_one(tmp_path: Path) -> None:
    backend = SqliteBackend(tmp_path / "r.db")

    def unreachable(conn: sa.Connection) -> None:
        raise ConnectionRefusedError("server gone")

    with pytest.raises(StoreUnavailableError, match="server gone"):
        transaction(backend.engine, unreachable, busy_timeout=1, location="x")
    backend.close()


async def test_async_write_maps_oserror(tmp_path: Path) -> None:
    backend = AsyncSqlBackend(f"sqlite:///{tmp_path / 'r.db'}")

    async def unreachable(conn: object) -> None:
        raise ConnectionRefusedError("server gone")

    with pytest.raises(StoreUnavailableError, match="server gone"):
        await backend._run(unreachable, write=True)
    await backend.close()


async def test_our_own_oserrors_pass_through_both_retries_unmapped(tmp_path: Path) -> None:
    backend, twin = (
        SqliteBackend(tmp_path / "r.db"),
        AsyncSqlBackend(f"sqlite:///{tmp_path / 'a.db'}"),
    )

    def sync_work(conn: sa.Connection) -> None:
        raise LockTimeoutError("ours")

    async def async_work(conn: object) -> None:
        raise LockTimeoutError("ours")

    with pytest.raises(LockTimeoutError):
        transaction(backend.engine, sync_work, busy_timeout=1, location="x")
    with pytest.raises(LockTimeoutError):
        await twin._run(async_work, write=True)
    backend.close()
    await twin.close()
