"""AsyncSqlBackend: the SQL backend on SQLAlchemy's asyncio engine (aiosqlite, asyncpg).

Same table, statements and rules as ``SqlBackend``; only the I/O is awaited, so the
event loop never blocks on the database. Reads run on the asyncio engine; one-row writes
and locks go through the sync twin (``SqlBackend`` on the same table) in worker threads,
so both APIs share one group commit per process and one fencing rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from results_flow.backends.base import AsyncResultsBackend, async_held, chunked, unique
from results_flow.backends.held import AsyncHeldLock
from results_flow.backends.sql.engine import (
    atransaction,
    make_engine,
    read_engine,
)
from results_flow.backends.sql.pg_bounds import PgBounds
from results_flow.backends.sql.statements import (
    DEFAULT_TABLE,
    Statements,
    create_records_table,
    record_from_row,
    records_table,
)
from results_flow.query import RecordQuery
from results_flow.records import Record, StoredData, StoredValue
from results_flow.settings import SQL_IDS_PER_STATEMENT, SQLITE_BUSY_TIMEOUT, STORE_LOCK_TIMEOUT
from results_flow.urls import database_url, mask_url

if TYPE_CHECKING:
    from results_flow.backends.sql.store import SqlBackend

T = TypeVar("T")


class AsyncSqlBackend(AsyncResultsBackend):
    """Stores records in a SQLite or PostgreSQL table without blocking the event loop."""

    def __init__(
        self,
        url: str,
        *,
        table: str = DEFAULT_TABLE,
        schema: str | None = None,
        busy_timeout: float = SQLITE_BUSY_TIMEOUT,
        lock_timeout: float = STORE_LOCK_TIMEOUT,
        connect_timeout: float | None = None,
        statement_timeout: float | None = None,
        engine_options: dict[str, Any] | None = None,
    ) -> None:
        #: The SQLAlchemy URL of the database (it may hold a password).
        self.database_url = database_url(url, "async")
        self._source_url = url
        self._locks: SqlBackend | None = None
        self.location = mask_url(self.database_url)
        self.busy_timeout = busy_timeout
        self.lock_timeout = lock_timeout
        self._engine_options = engine_options or {}
        self.bounds, self._engine_url = PgBounds.from_url(
            make_url(self.database_url),
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
        )
        self.table = records_table(table, schema)
        self._first_engine = self._new_engine()
        #: Engines by the event loop using them (see ``engine``).
        self._loop_engines: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[AsyncEngine, AsyncEngine]
        ] = weakref.WeakKeyDictionary()
        self._loop_guard = threading.Lock()
        self._sql = Statements(self.table, self._first_engine.dialect)
        self._table_ready = False

    @property
    def engine(self) -> AsyncEngine:
        """The engine of the running event loop (outside one, the first engine).

        An asyncio pool's connections (aiosqlite, asyncpg) belong to the loop that opened
        them: one manager shared by threads, each running its own loop, hung on SQLite.
        The first loop gets the first engine, each loop alive beside it an engine of its
        own, with the same settings.
        """
        return self._engines()[0]

    def _engines(self) -> tuple[AsyncEngine, AsyncEngine]:
        """The running loop's engine and its read engine."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return self._first_engine, read_engine(self._first_engine)
        with self._loop_guard:
            engines = self._loop_engines.get(loop)
            if engines is None:
                engines = self._loop_engines[loop] = self._free_engines()
        return engines

    def _free_engines(self) -> tuple[AsyncEngine, AsyncEngine]:
        """Engines for a loop new to this store: those of a loop that has closed (each
        ``asyncio.run`` closes one; engines stay as many as the loops running at once),
        else the first engine while no loop holds it, else a new one."""
        for other in list(self._loop_engines):
            if other.is_closed():
                engines = self._loop_engines.pop(other)
                if engines[0].dialect.name != "sqlite":
                    # asyncpg's connections die with their loop: let the pool go without
                    # closing them (that needs the closed loop). aiosqlite's, each on a
                    # thread of its own, serve the next loop as they are.
                    engines[0].sync_engine.dispose(close=False)
                return engines
        if any(engine is self._first_engine for engine, _ in self._loop_engines.values()):
            engine = self._new_engine()
        else:
            engine = self._first_engine
        return engine, read_engine(engine)

    def _new_engine(self) -> AsyncEngine:
        # The same engine settings as SqlBackend's (aiosqlite runs its own thread).
        return make_engine(
            self._engine_url,
            busy_timeout=self.busy_timeout,
            bounds=self.bounds,
            options=self._engine_options,
            async_=True,
        )

    async def read(self, result_id: str) -> Record | None:
        async def query(conn: AsyncConnection) -> Record | None:
            row = (await conn.execute(self._sql.read, {"id": result_id})).first()
            return None if row is None else record_from_row(row)

        return await self._run(query, write=False)

    async def read_data(self, result_id: str) -> StoredValue | None:
        async def query(conn: AsyncConnection) -> StoredValue | None:
            row = (await conn.execute(self._sql.read_data, {"id": result_id})).first()
            return None if row is None else StoredData._make(row)

        return await self._run(query, write=False)

    async def read_many(self, result_ids: Sequence[str]) -> dict[str, Record]:
        async def query(conn: AsyncConnection) -> dict[str, Record]:
            found = {}
            for batch in chunked(unique(result_ids), SQL_IDS_PER_STATEMENT):
                for row in await conn.execute(self._sql.read_many, self._sql.batch(batch)):
                    found[row[0]] = record_from_row(row)
            return found

        return await self._run(query, write=False)

    async def exists(self, result_id: str) -> bool:
        return bool(await self.exists_many([result_id]))

    async def exists_many(self, result_ids: Sequence[str]) -> set[str]:
        async def query(conn: AsyncConnection) -> set[str]:
            found: set[str] = set()
            for batch in chunked(unique(result_ids), SQL_IDS_PER_STATEMENT):
                found.update(
                    (await conn.execute(self._sql.exists_many, self._sql.batch(batch))).scalars()
                )
            return found

        return await self._run(query, write=False)

    async def list_ids(self, prefix: str | None = None) -> list[str]:
        async def query(conn: AsyncConnection) -> list[str]:
            return list((await conn.execute(self._sql.list_ids(prefix))).scalars())

        return await self._run(query, write=False)

    async def find_ids(self, query: RecordQuery) -> list[str]:
        statement = self._sql.find(query)

        async def rows(conn: AsyncConnection) -> list[Any]:
            return list(await conn.execute(statement))

        return self._sql.found_ids(query, await self._run(rows, write=False))

    async def delete_many(self, result_ids: Sequence[str]) -> int:
        async def write(conn: AsyncConnection) -> int:
            deleted = 0
            for batch in chunked(unique(result_ids), SQL_IDS_PER_STATEMENT):
                executed = await conn.execute(self._sql.delete_many, self._sql.batch(batch))
                deleted += executed.rowcount
            return deleted

        return await self._run(write, write=True) if result_ids else 0

    async def insert(self, result_id: str, record: Record) -> Record | None:
        return await self._write(lambda twin: twin.insert(result_id, record))

    async def upsert(self, result_id: str, record: Record) -> None:
        await self._write(lambda twin: twin.upsert(result_id, record))

    async def delete(self, result_id: str) -> bool:
        return await self._write(lambda twin: twin.delete(result_id))

    async def replace_if_unchanged(self, result_id: str, record: Record, seen: Record) -> bool:
        return await self._write(lambda twin: twin.replace_if_unchanged(result_id, record, seen))

    async def clear(self) -> None:
        async def write(conn: AsyncConnection) -> None:
            await conn.execute(self._sql.clear)

        await self._run(write, write=True)

    async def close(self) -> None:
        """Dispose of this loop's engine; the other loops' engines are dropped, and
        their connections closed as they are collected."""
        engine = self.engine
        with self._loop_guard:
            self._loop_engines.clear()
            locks, self._locks = self._locks, None
        await engine.dispose()
        if locks is not None:
            locks.close()

    def lock(
        self, result_id: str, timeout: float | None = None
    ) -> contextlib.AbstractAsyncContextManager[AsyncHeldLock]:
        # The sync store's lock, held in a thread of its own: one lock implementation
        # (and one fencing rule for the writes made under it) for both APIs, and its
        # sessions never come from this store's pool.
        locks = self._sync_twin()
        wait = self.lock_timeout if timeout is None else timeout
        return async_held(self, lambda: locks.lock(result_id, wait))

    def _sync_twin(self) -> SqlBackend:
        """The synchronous store over the same table, whose ``lock`` and one-row writes
        this store uses."""
        with self._loop_guard:
            if self._locks is None:
                from results_flow.backends.sql.store import SqlBackend

                self._locks = SqlBackend(
                    self._source_url,
                    table=self.table.name,
                    schema=self.table.schema,
                    busy_timeout=self.busy_timeout,
                    lock_timeout=self.lock_timeout,
                    connect_timeout=self.bounds.connect_timeout,
                    statement_timeout=self.bounds.statement_timeout,
                    engine_options=self._engine_options,
                )
            return self._locks

    async def _ensure_table(self) -> None:
        if self._table_ready:
            return

        async def create(conn: AsyncConnection) -> None:
            await conn.run_sync(create_records_table, self.table)

        await self._transaction(create, write=True)
        self._table_ready = True

    async def _write(self, write: Callable[[SqlBackend], T]) -> T:
        """A one-row write through the sync twin, in a worker thread: the writes of both
        APIs in this process share its group commit (``sql.group_commit``: one commit for
        the writes that arrive together, each acknowledged once durable) and its one
        writer, rather than an asyncio connection contending with it for SQLite's
        write lock. A thread hop costs microseconds; the commit it joins, an fsync."""
        twin = await anyio.to_thread.run_sync(self._sync_twin)
        return await anyio.to_thread.run_sync(write, twin)

    async def _run(self, work: Callable[[AsyncConnection], Awaitable[T]], *, write: bool) -> T:
        await self._ensure_table()
        return await self._transaction(work, write=write)

    async def _transaction(
        self, work: Callable[[AsyncConnection], Awaitable[T]], *, write: bool
    ) -> T:
        engine, reader = self._engines()
        return await atransaction(
            engine if write else reader,
            work,
            write=write,
            busy_timeout=self.busy_timeout,
            location=self.location,
        )
