"""SqlBackend: records in one SQL table through SQLAlchemy 2 Core (SQLite, PostgreSQL).

The engine comes from ``sql.engine.make_engine``; every transaction runs and retries
as ``sql.engine.transaction`` says. One-row reads and writes go through a row runner
(``sql.runner``): straight on the driver for sqlite3 and psycopg, else SQLAlchemy Core;
batches and listings go through Core. A forked child drops the parent's pooled connections.
``SqliteBackend`` and ``PostgresBackend`` build this class.

PostgreSQL: every wait is bounded (``sql.pg_bounds``); a single read is one autocommit
statement (no pre-ping, no BEGIN/ROLLBACK) and is retried once on a connection that
died in the pool; per-ID locks are a few sessions of their own per process
(``sql.pg_lock``), and writes made for a lock go through the handle it yields.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.engine import Connection, Engine, make_url

from results_flow.backends.base import AsyncResultsBackend, ResultsBackend, chunked, unique
from results_flow.backends.held import HeldLock, held_by
from results_flow.backends.locks import sqlite_id_lock
from results_flow.backends.sql.engine import make_engine, read_engine, transaction
from results_flow.backends.sql.pg_bounds import PgBounds
from results_flow.backends.sql.plans import (
    delete_plan,
    insert_plan,
    replace_plan,
    run_plan,
    upsert_plan,
)
from results_flow.backends.sql.runner import (
    CoreRowRunner,
    RowRunner,
)
from results_flow.backends.sql.sqlite_runner import SqliteRowRunner
from results_flow.backends.sql.statements import (
    DEFAULT_TABLE,
    Statements,
    compiled_statements,
    create_records_table,
    record_from_row,
    records_table,
    row_values,
)
from results_flow.errors import (
    StoreError,
    StoreUnavailableError,
    UnsupportedStoreUrlError,
)
from results_flow.query import RecordQuery
from results_flow.records import Record, StoredData, StoredValue
from results_flow.settings import SQL_IDS_PER_STATEMENT, SQLITE_BUSY_TIMEOUT, STORE_LOCK_TIMEOUT
from results_flow.urls import database_url, mask_url, sqlite_path

if TYPE_CHECKING:
    from results_flow.backends.sql.pg_lock import LockSessions
    from results_flow.backends.sql.pg_runner import PsycopgRowRunner

T = TypeVar("T")


class SqlBackend(ResultsBackend):
    """Stores records in a table of a SQLite or PostgreSQL database."""

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
        self.database_url = database_url(url, "sync")
        self.location = mask_url(self.database_url)
        self.busy_timeout = busy_timeout
        self.lock_timeout = lock_timeout
        self.table = records_table(table, schema)
        # PostgreSQL: the bounds leave the URL's query (libpq would refuse some) and
        # reach the driver as connect arguments.
        self.bounds, self._engine_url = PgBounds.from_url(
            make_url(self.database_url),
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
        )
        self._engine_options = engine_options or {}
        self._engine = make_engine(
            self._engine_url,
            busy_timeout=busy_timeout,
            bounds=self.bounds,
            options=self._engine_options,
        )
        self._read_engine = read_engine(self._engine)
        self._locks: LockSessions | None = None
        self._pg_rows: PsycopgRowRunner | None = None
        self._locks_guard = threading.Lock()
        # A forked child gets a fresh pool, never the parent's connections (checked at
        # fork time: os.getpid() on every call cost as much as a read).
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _dispose_after_fork(ref()))
        self._sql = Statements(self.table, self._engine.dialect)
        self._run_write(lambda conn: create_records_table(conn, self.table))
        self._rows = self._row_runner()

    @classmethod
    def from_url(cls, url: str) -> SqlBackend:
        """A store in the default table of the database ``url`` names."""
        return cls(url)

    @property
    def url(self) -> str | None:
        """The database URL when the store uses the default table, else None: a URL
        cannot say which table to use."""
        if self.table.name != DEFAULT_TABLE or self.table.schema is not None:
            return None
        return self.database_url

    @property
    def engine(self) -> Engine:
        """This process's engine (a forked child gets a fresh pool)."""
        return self._engine

    @property
    def is_sqlite(self) -> bool:
        return self._sql.dialect_name == "sqlite"

    def read(self, result_id: str) -> Record | None:
        row = self._rows.first("read", {"id": result_id})
        return None if row is None else record_from_row(row)

    def read_data(self, result_id: str) -> StoredValue | None:
        row = self._rows.first("read_data", {"id": result_id})
        return None if row is None else StoredData._make(row)

    def read_many(self, result_ids: Sequence[str]) -> dict[str, Record]:
        batches = self._batches(result_ids)
        rows = self._rows.rows("read_many", batches) if batches else []
        return {row[0]: record_from_row(row) for row in rows}

    def exists(self, result_id: str) -> bool:
        # Not exists_many([id]): one precompiled statement, no batch parameter.
        return self._rows.first("exists", {"id": result_id}) is not None

    def exists_many(self, result_ids: Sequence[str]) -> set[str]:
        batches = self._batches(result_ids)
        return {row[0] for row in self._rows.rows("exists_many", batches)} if batches else set()

    def list_ids(self, prefix: str | None = None) -> list[str]:
        return self._run_read(lambda c: list(c.execute(self._sql.list_ids(prefix)).scalars()))

    def find_ids(self, query: RecordQuery) -> list[str]:
        statement = self._sql.find(query)
        rows = self._run_read(lambda c: list(c.execute(statement)))
        return self._sql.found_ids(query, rows)

    def delete_many(self, result_ids: Sequence[str]) -> int:
        batches = self._batches(result_ids)
        if not batches:
            return 0
        statement = self._sql.delete_many
        return self._run_write(lambda c: sum(c.execute(statement, b).rowcount for b in batches))

    def insert(self, result_id: str, record: Record) -> Record | None:
        return self._rows.write(lambda rows: run_plan(insert_plan(result_id, record), rows))

    def upsert(self, result_id: str, record: Record) -> None:
        self._rows.write(lambda rows: run_plan(upsert_plan(result_id, record), rows))

    def delete(self, result_id: str) -> bool:
        return self._rows.write(lambda rows: run_plan(delete_plan(result_id), rows))

    def replace_if_unchanged(self, result_id: str, record: Record, seen: Record) -> bool:
        return self._rows.write(lambda rows: run_plan(replace_plan(result_id, record, seen), rows))

    def clear(self) -> None:
        self._run_write(lambda c: c.execute(self._sql.clear))

    def unfit_reason(self, result_id: str, record: Record) -> str | None:
        if self.is_sqlite:  # SQLite keeps any length and NUL
            return None
        for name, value in row_values(result_id, record).items():
            if not isinstance(value, str):
                continue
            if "\x00" in value:
                return f"its {name} holds a NUL character, which PostgreSQL text cannot keep"
            limit = getattr(self.table.c[name].type, "length", None)
            if limit is not None and len(value) > limit:
                return f"its {name} is {len(value)} characters long; this table keeps {limit}"
        return None

    def lock(
        self, result_id: str, timeout: float | None = None
    ) -> contextlib.AbstractContextManager[HeldLock]:
        wait = self.lock_timeout if timeout is None else timeout
        if self.is_sqlite:
            path = self._engine.url.database or ""
            return held_by(self, result_id, sqlite_id_lock(path, result_id, wait, self.location))
        if self._pg_rows is None:  # the sync PostgreSQL store always runs on psycopg
            raise StoreError(f"{self.location}: PostgreSQL locks need the psycopg driver")
        from results_flow.backends.sql.pg_lock import PgLock

        return PgLock(self, self._lock_sessions(), self._pg_rows, result_id, wait)

    def close(self) -> None:
        self._rows.close()
        self._engine.dispose()
        with self._locks_guard:
            locks, self._locks = self._locks, None
        if locks is not None:
            from results_flow.backends.sql.pg_lock import close_lock_sessions

            close_lock_sessions(locks)

    def to_async(self) -> AsyncResultsBackend:
        from results_flow.backends.sql.async_store import AsyncSqlBackend

        return AsyncSqlBackend(
            self.database_url,
            table=self.table.name,
            schema=self.table.schema,
            busy_timeout=self.busy_timeout,
            lock_timeout=self.lock_timeout,
            engine_options=self._engine_options,
            connect_timeout=self.bounds.connect_timeout,
            statement_timeout=self.bounds.statement_timeout,
        )

    def _row_runner(self) -> RowRunner:
        """Straight on the driver for sqlite3 and psycopg; else through SQLAlchemy Core."""
        driver = self._engine.dialect.driver
        if driver == "pysqlite":
            return SqliteRowRunner(
                self._engine.url.database or "",
                compiled_statements(self._sql, self._engine.dialect),
                busy_timeout=self.busy_timeout,
                location=self.location,
            )
        engine, timeout, location = self._engine, self.busy_timeout, self.location
        if driver == "psycopg":
            from results_flow.backends.sql.pg_runner import PsycopgRowRunner  # an optional extra

            self._pg_rows = PsycopgRowRunner(engine, self._sql, location=location)
            return self._pg_rows
        return CoreRowRunner(engine, self._sql, busy_timeout=timeout, location=location)

    def _batches(self, result_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The parameters of the batch reads of ``result_ids``: one per statement."""
        return [self._sql.batch(b) for b in chunked(unique(result_ids), SQL_IDS_PER_STATEMENT)]

    def _lock_sessions(self) -> LockSessions:
        """This process's lock sessions on this database (shared by every store on it)."""
        with self._locks_guard:
            if self._locks is None:
                from results_flow.backends.sql.pg_lock import open_lock_sessions

                self._locks = open_lock_sessions(self._engine_url, self.bounds, self.location)
            return self._locks

    def _run_read(self, work: Callable[[Connection], T]) -> T:
        return transaction(
            self._read_engine,
            work,
            write=False,
            busy_timeout=self.busy_timeout,
            location=self.location,
        )

    def _run_write(self, work: Callable[[Connection], T]) -> T:
        return transaction(
            self._engine, work, busy_timeout=self.busy_timeout, location=self.location
        )


def _dispose_after_fork(backend: SqlBackend | None) -> None:
    """In a forked child: let go of the parent's pooled connections without closing them."""
    if backend is not None:
        backend.engine.dispose(close=False)  # lock sessions: see pg_lock._forget_after_fork


class SqliteBackend(SqlBackend):
    """A ``SqlBackend`` on the SQLite file at ``path`` (its folder is created)."""

    def __init__(self, path: str | os.PathLike[str], **options: Any) -> None:
        database = Path(path).expanduser().resolve()
        try:
            database.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file where a folder should be, no permission, ...
            raise StoreUnavailableError(
                f"cannot create the folder of the SQLite store {database}: {exc}"
            ) from exc
        self.path = database
        super().__init__(f"sqlite:///{database}", **options)

    @classmethod
    def from_url(cls, url: str) -> SqliteBackend:
        """A store in the SQLite file of a ``sqlite:///path`` URL."""
        return cls(sqlite_path(url))


class PostgresBackend(SqlBackend):
    """A ``SqlBackend`` on a PostgreSQL database (``postgresql://user@host/db``)."""

    def __init__(self, url: str, **options: Any) -> None:
        if make_url(database_url(url)).get_backend_name() != "postgresql":
            raise UnsupportedStoreUrlError(f"{mask_url(url)} is not a postgresql:// URL")
        super().__init__(url, **options)

    @classmethod
    def from_url(cls, url: str) -> PostgresBackend:
        """A store in the default table of a ``postgresql://`` (or ``postgres://``) URL."""
        return cls(url)
