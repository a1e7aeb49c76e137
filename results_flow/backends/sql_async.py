"""AsyncSqlBackend: the SQL backend on SQLAlchemy's asyncio engine (aiosqlite, asyncpg).

Same table, statements and rules as ``SqlBackend``; only the I/O is awaited, so the
event loop never blocks on the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from results_flow.backends.base import AsyncResultsBackend, chunked, unique
from results_flow.backends.locks import (
    ADVISORY_UNLOCK,
    TRY_ADVISORY_LOCK,
    held_in_thread,
    id_file_lock,
    sqlite_lock_dir,
)
from results_flow.backends.pg_bounds import PgBounds
from results_flow.backends.sql_schema import (
    CREATE_LOCK_KEY,
    DEFAULT_TABLE,
    DRIVER_ERRORS,
    RetryTransaction,
    Statements,
    apply_sqlite_settings,
    begin_sqlite,
    is_busy,
    mapped_error,
    record_from_row,
    records_table,
    row_values,
)
from results_flow.backends.urls import database_url, mask_url
from results_flow.errors import LockTimeoutError, ResultsFlowError, StoreBusyError
from results_flow.records import Record
from results_flow.settings import (
    BUSY_RETRY_SECONDS,
    LOCK_POLL_SECONDS,
    SQL_IDS_PER_STATEMENT,
    SQLITE_BUSY_TIMEOUT,
    STORE_LOCK_TIMEOUT,
)

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
        self.engine = self._create_engine()
        self._sql = Statements(self.table, self.engine.dialect)
        self._table_ready = False

    async def read(self, result_id: str) -> Record | None:
        async def query(conn: AsyncConnection) -> Record | None:
            row = (await conn.execute(self._sql.read, {"id": result_id})).first()
            return None if row is None else record_from_row(row)

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

    async def insert(self, result_id: str, record: Record) -> Record | None:
        async def write(conn: AsyncConnection) -> Record | None:
            if (
                await conn.execute(self._sql.insert, row_values(result_id, record))
            ).first() is not None:
                return None
            row = (await conn.execute(self._sql.read, {"id": result_id})).first()
            if row is None:  # deleted between our conflict and this read: try again
                raise RetryTransaction
            return record_from_row(row)

        return await self._run(write, write=True)

    async def upsert(self, result_id: str, record: Record) -> None:
        async def write(conn: AsyncConnection) -> None:
            await conn.execute(self._sql.upsert, row_values(result_id, record))

        await self._run(write, write=True)

    async def delete(self, result_id: str) -> bool:
        async def write(conn: AsyncConnection) -> bool:
            return (await conn.execute(self._sql.delete, {"id": result_id})).rowcount > 0

        return await self._run(write, write=True)

    async def clear(self) -> None:
        async def write(conn: AsyncConnection) -> None:
            await conn.execute(self._sql.clear)

        await self._run(write, write=True)

    async def close(self) -> None:
        await self.engine.dispose()

    def lock(
        self, result_id: str, timeout: float | None = None
    ) -> contextlib.AbstractAsyncContextManager[None]:
        wait = self.lock_timeout if timeout is None else timeout
        database = make_url(self.database_url)
        if database.get_backend_name() == "sqlite":
            path = database.database or ""
            return held_in_thread(
                lambda: id_file_lock(sqlite_lock_dir(path), result_id, wait, self.location)
            )
        return self._advisory_lock(result_id, wait)

    @contextlib.asynccontextmanager
    async def _advisory_lock(self, result_id: str, timeout: float) -> AsyncIterator[None]:
        """``SqlBackend``'s PostgreSQL session lock, awaited."""
        key = {"id": result_id}
        deadline = time.monotonic() + timeout
        try:
            conn = await self.engine.connect()
        except DRIVER_ERRORS as exc:
            raise mapped_error(exc, self.location) from exc
        try:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            while not await self._try_lock(conn, key):
                if time.monotonic() > deadline:
                    raise LockTimeoutError(
                        f"lock on {result_id!r} in {self.location} not acquired within {timeout}s"
                    )
                await asyncio.sleep(LOCK_POLL_SECONDS)
            try:
                yield
            finally:
                await conn.execute(ADVISORY_UNLOCK, key)
        finally:
            await conn.close()

    async def _try_lock(self, conn: AsyncConnection, key: dict[str, str]) -> bool:
        try:
            return bool((await conn.execute(TRY_ADVISORY_LOCK, key)).scalar_one())
        except DRIVER_ERRORS as exc:
            raise mapped_error(exc, self.location) from exc

    def _create_engine(self) -> AsyncEngine:
        # The same options as SqlBackend's engine (aiosqlite has its own thread).
        options: dict[str, Any] = dict(self._engine_options)
        if make_url(self.database_url).get_backend_name() == "sqlite":
            options.setdefault("connect_args", {"timeout": self.busy_timeout})
            engine = create_async_engine(self.database_url, **options)
            event.listen(
                engine.sync_engine,
                "connect",
                lambda dbapi, _: apply_sqlite_settings(dbapi, self.busy_timeout),
            )
            event.listen(engine.sync_engine, "begin", begin_sqlite)
            return engine
        # No pre-ping (a round trip per call); a dead pooled connection is retried once.
        options.setdefault("connect_args", self.bounds.asyncpg_connect_args())
        return create_async_engine(self._engine_url, **options)

    async def _ensure_table(self) -> None:
        if self._table_ready:
            return

        async def create(conn: AsyncConnection) -> None:
            if conn.dialect.name == "postgresql":
                await conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": CREATE_LOCK_KEY}
                )
            await conn.run_sync(self.table.metadata.create_all, checkfirst=True)

        await self._transaction(create, write=True)
        self._table_ready = True

    async def _run(self, work: Callable[[AsyncConnection], Awaitable[T]], *, write: bool) -> T:
        await self._ensure_table()
        return await self._transaction(work, write=write)

    async def _transaction(
        self, work: Callable[[AsyncConnection], Awaitable[T]], *, write: bool
    ) -> T:
        """One transaction; writes retried on SQLITE_BUSY until the deadline, and
        whenever ``work`` raises ``RetryTransaction``."""
        deadline = time.monotonic() + self.busy_timeout
        reconnected = False
        while True:
            worked = False
            try:
                async with self.engine.connect() as conn:
                    if write:
                        conn = await conn.execution_options(results_flow_write=True)
                    async with conn.begin():
                        result = await work(conn)
                        worked = True
                return result
            except RetryTransaction:
                continue
            except ResultsFlowError:
                raise  # our own errors (some are OSErrors) pass through unmapped
            except DRIVER_ERRORS as exc:
                dead = isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated
                if dead and not worked and not reconnected:
                    reconnected = True  # a connection that died in the pool: once more
                    continue
                if write and is_busy(exc) and time.monotonic() < deadline:
                    await asyncio.sleep(BUSY_RETRY_SECONDS)
                    continue
                error = mapped_error(exc, self.location)
                if isinstance(error, StoreBusyError):
                    error.add_note(f"gave up after {self.busy_timeout}s")
                raise error from exc
