"""AsyncSqlBackend: the SQL backend on SQLAlchemy's asyncio engine (aiosqlite, asyncpg).

Same table, statements and rules as ``SqlBackend``; only the I/O is awaited, so the
event loop never blocks on the database.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from results_flow.backends.base import AsyncResultsBackend, chunked, unique
from results_flow.backends.locks import held_in_thread, sqlite_id_lock
from results_flow.backends.pg_bounds import PgBounds
from results_flow.backends.pg_lock import apg_lock
from results_flow.backends.sql_engine import (
    RetryTransaction,
    atransaction,
    make_engine,
    read_engine,
)
from results_flow.backends.sql_statements import (
    DEFAULT_TABLE,
    Statements,
    create_records_table,
    record_from_row,
    records_table,
    row_values,
)
from results_flow.backends.urls import database_url, mask_url
from results_flow.records import Record
from results_flow.settings import SQL_IDS_PER_STATEMENT, SQLITE_BUSY_TIMEOUT, STORE_LOCK_TIMEOUT

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
        # The same engine settings as SqlBackend's (aiosqlite runs its own thread).
        self.engine = make_engine(
            self._engine_url,
            busy_timeout=busy_timeout,
            bounds=self.bounds,
            options=self._engine_options,
            async_=True,
        )
        self._read_engine = read_engine(self.engine)
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
            return held_in_thread(lambda: sqlite_id_lock(path, result_id, wait, self.location))
        return apg_lock(self.engine, result_id, wait, self.location)

    async def _ensure_table(self) -> None:
        if self._table_ready:
            return

        async def create(conn: AsyncConnection) -> None:
            await conn.run_sync(create_records_table, self.table)

        await self._transaction(create, write=True)
        self._table_ready = True

    async def _run(self, work: Callable[[AsyncConnection], Awaitable[T]], *, write: bool) -> T:
        await self._ensure_table()
        return await self._transaction(work, write=write)

    async def _transaction(
        self, work: Callable[[AsyncConnection], Awaitable[T]], *, write: bool
    ) -> T:
        return await atransaction(
            self.engine if write else self._read_engine,
            work,
            write=write,
            busy_timeout=self.busy_timeout,
            location=self.location,
        )
