"""``SqliteRowRunner``: SQLite one-row reads and writes straight on the driver, per thread.

bench/store.py showed SQLAlchemy's per-call connection checkout, events and result
wrapping costing many times a one-row query (a ``get`` at 16.8x raw sqlite3, a durable
``set`` at 0.43x the raw rate). This runner runs the SQL that ``Statements`` compiled
for the SQLite dialect, so each statement is still defined once in SQLAlchemy Core, on
a plain sqlite3 connection per thread with the same PRAGMAs. A SELECT runs in
autocommit (one statement, one WAL snapshot; the statements of a batch read share one
read transaction); the writes of this process that commit at the same moment share
one ``BEGIN IMMEDIATE`` ... ``COMMIT`` (``sql.group_commit``: one fsync for the batch), which
rolls back on any error and is retried as every SQL write is (``sql.engine.Retry``). A
thread's connection is closed when the thread ends (a long-lived worker makes fresh
thread pools for every flow run, and kept connections ran it out of file descriptors),
and ``close()`` closes those still open. A forked child drops the inherited connections
at fork time.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa

from results_flow.backends.sql.engine import Retry, apply_sqlite_settings, mapped_error, retrying
from results_flow.backends.sql.group_commit import GroupCommit, Write, run_each
from results_flow.backends.sql.runner import CompiledTransaction, Row, RowTransaction
from results_flow.backends.sql.statements import CompiledStatement
from results_flow.errors import StoreUnavailableError

T = TypeVar("T")


class SqliteRowRunner:
    """``RowRunner`` on this thread's own sqlite3 connection to ``database``."""

    def __init__(
        self,
        database: str,
        statements: dict[str, CompiledStatement],
        *,
        busy_timeout: float,
        location: str,
    ) -> None:
        self.database = database
        self.statements = statements
        self.busy_timeout = busy_timeout
        self.location = location
        self._local = threading.local()
        # Open connections by holder token; a connection is closed by whoever removes it.
        # Reentrant: a thread-exit release may run while this thread holds the guard.
        self._opened: dict[int, sqlite3.Connection] = {}
        self._guard = threading.RLock()
        #: (device, inode) of the database file when the first connection opened it.
        self._file_id: tuple[int, int] | None = None
        self._group = GroupCommit(self._commit, wait=busy_timeout, location=location)
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forget_after_fork(ref()))

    def first(self, name: str, values: dict[str, Any]) -> Row | None:
        # Not through Retry: a read on a local file has no dead connection to retry, and
        # reads are never retried on SQLITE_BUSY (the connection's busy timeout waits).
        # Every get and exists runs this: the helpers are inlined (a third of the time a
        # get spent above raw sqlite3 was calls between them).
        statement = self.statements[name]
        holder: _ThreadConnection | None = getattr(self._local, "holder", None)
        conn = self._open().conn if holder is None else holder.conn
        try:
            return conn.execute(statement.sql, statement.params(values)).fetchone()  # type: ignore[no-any-return]
        except sqlite3.Error as exc:  # fetchone steps the statement too
            raise mapped_error(_wrapped(exc, statement.sql), self.location) from exc

    def rows(self, name: str, batches: Sequence[dict[str, Any]]) -> list[Row]:
        # Several statements share one read transaction: one WAL snapshot, as through Core.
        statement, conn = self.statements[name], self._connection()
        try:
            if len(batches) == 1:
                return _fetch_all(conn, statement, batches[0])
            _execute(conn, "BEGIN")
            try:
                return [row for values in batches for row in _fetch_all(conn, statement, values)]
            finally:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")  # a read: nothing to commit
        except sa.exc.StatementError as exc:
            raise mapped_error(exc, self.location) from exc

    def write(self, work: Callable[[RowTransaction], T]) -> T:
        # Writers of this process queue in the group, not in SQLite's busy handler (which
        # sleeps in steps of up to 100 ms: 8 threads writing at once ran 3x slower), and
        # those queued together share one commit.
        return self._group.write(work)

    def _commit(self, writes: Sequence[Write]) -> list[Any]:
        """``writes`` in one ``BEGIN IMMEDIATE`` ... ``COMMIT``, retried as ``Retry`` says."""

        def attempt(retry: Retry) -> list[Any]:
            conn = self._connection()
            _execute(conn, "BEGIN IMMEDIATE")
            try:
                rows = CompiledTransaction(functools.partial(_execute, conn), self.statements)
                outcomes = run_each(writes, rows)
                retry.worked = True
                _execute(conn, "COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            return outcomes

        outcomes = retrying(
            attempt, Retry(write=True, busy_timeout=self.busy_timeout, location=self.location)
        )
        self._check_file_kept()
        return outcomes

    def _check_file_kept(self) -> None:
        """After a commit: the database file is still the one the connections opened.

        Deleted or replaced under an open store, SQLite goes on writing to the old,
        unlinked file, and every write acknowledged after that was lost.

        Raises:
            StoreUnavailableError: the file was removed or replaced.
        """
        try:
            now = os.stat(self.database)
        except OSError:
            kept = False
        else:
            kept = (now.st_dev, now.st_ino) == self._file_id
        if not kept:
            raise StoreUnavailableError(
                f"{self.location}: the database file was removed or replaced while this "
                "store had it open; the last write went to the old file and is lost. "
                "Open the store again."
            )

    def close(self) -> None:
        """Close every connection this runner opened, in any thread."""
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
            raise mapped_error(_wrapped(exc, "connect"), self.location) from exc
        try:
            apply_sqlite_settings(conn, self.busy_timeout)
        except sqlite3.Error as exc:
            conn.close()
            raise mapped_error(_wrapped(exc, "PRAGMA"), self.location) from exc
        if self._file_id is None:
            with contextlib.suppress(OSError):  # gone already: the first write says so
                opened = os.stat(self.database)
                self._file_id = (opened.st_dev, opened.st_ino)
        holder = _ThreadConnection(conn)
        token = next(_tokens)
        with self._guard:
            self._opened[token] = conn
        self._local.holder = holder
        # The holder lives only in this thread's slot of the thread-local, which Python
        # drops when the thread ends: that is the moment to close the connection.
        weakref.finalize(holder, _release, weakref.ref(self), token)
        return holder


def _execute(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
    """Execute ``sql``; a driver error is wrapped as SQLAlchemy wraps it, so ``Retry``
    and ``mapped_error`` judge this path and the Core path alike."""
    try:
        return conn.execute(sql, params)
    except sqlite3.Error as exc:
        raise _wrapped(exc, sql, params) from exc


def _run(
    conn: sqlite3.Connection, statement: CompiledStatement, values: dict[str, Any]
) -> sqlite3.Cursor:
    return _execute(conn, statement.sql, statement.params(values))


def _fetch_all(
    conn: sqlite3.Connection, statement: CompiledStatement, values: dict[str, Any]
) -> list[Row]:
    cursor = _run(conn, statement, values)
    try:
        return cursor.fetchall()
    except sqlite3.Error as exc:  # rows are computed as they are fetched
        raise _wrapped(exc, statement.sql) from exc


def _wrapped(exc: sqlite3.Error, sql: str, params: tuple[Any, ...] = ()) -> sa.exc.StatementError:
    return sa.exc.DBAPIError.instance(sql, params, exc, sqlite3.Error)


_tokens = itertools.count()


class _ThreadConnection:
    """One thread's connection; garbage once its thread ends."""

    __slots__ = ("__weakref__", "conn")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn


def _release(ref: weakref.ref[SqliteRowRunner], token: int) -> None:
    """A thread ended: close its connection unless ``close()`` or a fork took it already."""
    runner = ref()
    if runner is None:
        return
    with runner._guard:
        conn = runner._opened.pop(token, None)
    if conn is not None:
        conn.close()


def _forget_after_fork(runner: SqliteRowRunner | None) -> None:
    """In a forked child: drop (without closing) the connections the parent opened."""
    if runner is not None:
        runner._guard = threading.RLock()
        runner._opened = {}
        runner._local = threading.local()
