"""SQLite one-row reads and writes straight on the driver, per thread.

bench/store.py showed SQLAlchemy's per-call connection checkout, events and result
wrapping costing many times a one-row query (a ``get`` at 16.8x raw sqlite3, a durable
``set`` at 0.43x the raw rate). These calls run the SQL that ``Statements`` compiled
for the SQLite dialect, so each statement is still defined once in SQLAlchemy Core, on
a plain sqlite3 connection per thread with the same PRAGMAs. A SELECT runs in
autocommit (one statement, one WAL snapshot); a write is one ``BEGIN IMMEDIATE`` ...
``COMMIT`` that rolls back on any error. A forked child drops the inherited
connections at fork time.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler

from results_flow.backends.sql_schema import apply_sqlite_settings, mapped_error

T = TypeVar("T")


class CompiledStatement:
    """A Core statement compiled for SQLite: its SQL and how to order its parameters."""

    def __init__(
        self,
        statement: sa.ClauseElement,
        table: sa.Table,
        dialect: Dialect,
        keys: Sequence[str] = (),
    ) -> None:
        compiled = cast(
            SQLCompiler, statement.compile(dialect=dialect, column_keys=list(keys) or None)
        )
        self.sql = str(compiled)
        self.names = tuple(compiled.positiontup or ())
        # The column types' own conversions (datetimes to SQLAlchemy's SQLite text format),
        # so rows written here and through Core look the same.
        self.processors = tuple(table.c[name].type.bind_processor(dialect) for name in self.names)
        self.by_id_only = self.names == ("id",) and self.processors == (None,)

    def params(self, values: dict[str, Any]) -> tuple[Any, ...]:
        """The positional parameters for ``values``."""
        if self.by_id_only:  # the one-ID lookups behind every get and exists
            return (values["id"],)
        return tuple(
            values[name] if convert is None else convert(values[name])
            for name, convert in zip(self.names, self.processors, strict=True)
        )


class SqliteDirect:
    """Runs one-row statements on this thread's own sqlite3 connection."""

    def __init__(self, database: str, busy_timeout: float, location: str) -> None:
        self.database = database
        self.busy_timeout = busy_timeout
        self.location = location
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forget_after_fork(ref()))

    def first(self, statement: CompiledStatement, values: dict[str, Any]) -> Any:
        """The first row of a SELECT (a tuple) or None.

        Raises:
            StoreError: the driver failed; mapped as every SQL error is.
        """
        params = statement.params(values)
        try:
            return self._connection().execute(statement.sql, params).fetchone()
        except sqlite3.Error as exc:
            raise self._mapped(exc, statement.sql, params) from exc

    def transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in one ``BEGIN IMMEDIATE`` transaction, committed or rolled back.

        The connection's busy timeout makes BEGIN IMMEDIATE wait for other writers.

        Raises:
            StoreBusyError: still locked by other writers after the busy timeout.
            StoreError: any other driver failure.
        """
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._mapped(exc, "BEGIN IMMEDIATE", ()) from exc
        try:
            result = work(conn)
            conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self._mapped(exc, "write", ()) from exc
            raise
        return result

    def close(self) -> None:
        """Close every connection this object opened, in any thread."""
        with self._guard:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.database, timeout=self.busy_timeout, check_same_thread=False
            )
            apply_sqlite_settings(conn, self.busy_timeout)
            self._local.conn = conn
            with self._guard:
                self._opened.append(conn)
        return conn

    def _mapped(self, exc: sqlite3.Error, sql: str, params: tuple[Any, ...]) -> Exception:
        wrapped = sa.exc.DBAPIError.instance(sql, params, exc, sqlite3.Error)
        return mapped_error(wrapped, self.location)


def _forget_after_fork(direct: SqliteDirect | None) -> None:
    """In a forked child: drop (without closing) the connections the parent opened."""
    if direct is not None:
        direct._local = threading.local()
        direct._opened = []
        direct._guard = threading.Lock()
