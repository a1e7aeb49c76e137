"""AsyncSqlBackend: the SQL backend on SQLAlchemy's asyncio engine (aiosqlite, asyncpg).

Same table, statements and rules as ``SqlBackend``; only the I/O is awaited, so the
event loop never blocks on the database.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from results_flow.backends.base import AsyncResultsBackend, chunked, unique
from results_flow.backends.pg_bounds import PgBounds
from results_flow.backends.sql_schema import (
    BATCH_SIZE,
    CREATE_LOCK_KEY,
    DEFAULT_TABLE,
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
from results_flow.records import Record

T = TypeVar("T")


class AsyncSqlBackend(AsyncResultsBackend):
    """Stores records in a SQLite or PostgreSQL table without blocking the event loop."""

    def __init__(
        self,
        url: str,
        *,
        table: str = DEFAULT_TABLE,
        schema: str | None = None,
        busy_timeout: float = 30.0,
        connect_timeout: float | None = None,
        statement_timeout: float | None = None,
    ) -> None:
        #: The SQLAlchemy URL of the database (it may hold a password).
        self.database_url = database_url(url, "async")
        self.location = mask_url(self.database_url)
        self.busy_timeout = busy_timeout
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
            for batch in chunked(unique(result_ids), BATCH_SIZE):
                for row in await conn.execute(self._sql.read_many, self._sql.batch(batch)):
                    found[row[0]] = record_from_row(row)
            return found

        return await self._run(query, write=False)

    async def exists(self, result_id: str) -> bool:
        return bool(await self.exists_many([result_id]))

    async def exists_many(self, result_ids: Sequence[str]) -> set[str]:
        async def query(conn: AsyncConnection) -> set[str]:
            found: set[str] = set()
            for batch in chunked(unique(result_ids), BATCH_SIZE):
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

    def _create_engine(self) -> AsyncEngine:
        if make_url(self.database_url).get_backend_name() == "sqlite":
            engine = create_async_engine(
                self.database_url, connect_args={"timeout": self.busy_timeout}
            )
            event.listen(
                engine.sync_engine,
                "connect",
                lambda dbapi, _: apply_sqlite_settings(dbapi, self.busy_timeout),
            )
            event.listen(engine.sync_engine, "begin", begin_sqlite)
            return engine
        # No pre-ping (a round trip per call); a dead pooled connection is retried once.
        return create_async_engine(
            self._engine_url, connect_args=self.bounds.asyncpg_connect_args()
        )

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
            except (sa.exc.SQLAlchemyError, OSError) as exc:
                dead = isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated
                if dead and not worked and not reconnected:
                    reconnected = True  # a connection that died in the pool: once more
                    continue
                if write and is_busy(exc) and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                    continue
                raise mapped_error(exc, self.location) from exc
