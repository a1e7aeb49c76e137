"""SQLite one-row reads and writes straight on the driver, per thread.

bench/store.py showed SQLAlchemy's per-call connection checkout, events and result
wrapping costing many times a one-row query (a ``get`` at 16.8x raw sqlite3, a durable
``set`` at 0.43x the raw rate). These calls run the SQL that ``Statements`` compiled
for the SQLite dialect, so each statement is still defined once in SQLAlchemy Core, on
a plain sqlite3 connection per thread with the same PRAGMAs. A SELECT runs in
autocommit (one statement, one WAL snapshot); a write is one ``BEGIN IMMEDIATE`` ...
``COMMIT`` that rolls back on any error. A thread's connection is closed when the
thread ends (a long-lived worker makes fresh thread pools for every flow run, and kept
connections ran it out of file descriptors), and ``close()`` closes those still open.
A forked child drops the inherited connections at fork time.
"""

from __future__ import annotations

import contextlib
import itertools
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
from results_flow.errors import StoreBusyError

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
        # Open connections by holder token; a connection is closed by whoever removes it.
        # Reentrant: a thread-exit release may run while this thread holds the guard.
        self._opened: dict[int, sqlite3.Connection] = {}
        self._guard = threading.RLock()
        # This process's writers queue here rather than in SQLite's busy handler, which
        # sleeps in steps of up to 100 ms: 8 threads writing at once ran 3x slower.
        self._writer = threading.Lock()
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

        Writers of this process take turns on a lock first; the connection's busy
        timeout makes BEGIN IMMEDIATE wait for other processes' writers.

        Raises:
            StoreBusyError: still locked by other writers after the busy timeout.
            StoreError: any other driver failure.
        """
        conn = self._connection()
        if not self._writer.acquire(timeout=self.busy_timeout):
            raise StoreBusyError(
                f"{self.location} stayed locked by other writers of this process for "
                f"{self.busy_timeout}s"
            )
        try:
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
        finally:
            self._writer.release()
        return result

    def close(self) -> None:
        """Close every connection this object opened, in any thread."""
        with self._guard:
            opened, self._opened = self._opened, {}
        self._local = threading.local()
        for conn in opened.values():
            conn.close()

    def _connection(self) -> sqlite3.Connection:
        holder: _ThreadConnection | None = getattr(self._local, "holder", None)
        if holder is None:
            holder = self._open()
        return holder.conn

    def _open(self) -> _ThreadConnection:
        """Open this thread's connection, to be closed when the thread ends.

        Raises:
            StoreUnavailableError: the database file cannot be opened.
        """
        try:
            conn = sqlite3.connect(
                self.database, timeout=self.busy_timeout, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise self._mapped(exc, "connect", ()) from exc
        try:
            apply_sqlite_settings(conn, self.busy_timeout)
        except sqlite3.Error as exc:
            conn.close()
            raise self._mapped(exc, "PRAGMA", ()) from exc
        holder = _ThreadConnection(conn)
        token = next(_tokens)
        with self._guard:
            self._opened[token] = conn
        self._local.holder = holder
        # The holder lives only in this thread's slot of the thread-local, which Python
        # drops when the thread ends: that is the moment to close the connection.
        weakref.finalize(holder, _release, weakref.ref(self), token)
        return holder

    def _mapped(self, exc: sqlite3.Error, sql: str, params: tuple[Any, ...]) -> Exception:
        wrapped = sa.exc.DBAPIError.instance(sql, params, exc, sqlite3.Error)
        return mapped_error(wrapped, self.location)


_tokens = itertools.count()


class _ThreadConnection:
    """One thread's connection; garbage once its thread ends."""

    __slots__ = ("__weakref__", "conn")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn


def _release(ref: weakref.ref[SqliteDirect], token: int) -> None:
    """A thread ended: close its connection unless ``close()`` or a fork took it already."""
    direct = ref()
    if direct is None:
        return
    with direct._guard:
        conn = direct._opened.pop(token, None)
    if conn is not None:
        conn.close()


def _forget_after_fork(direct: SqliteDirect | None) -> None:
    """In a forked child: drop (without closing) the connections the parent opened."""
    if direct is not None:
        direct._guard = threading.RLock()
        direct._writer = threading.Lock()
        direct._opened = {}
        direct._local = threading.local()
