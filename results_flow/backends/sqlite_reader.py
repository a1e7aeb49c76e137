"""Single-ID SQLite reads on a per-thread sqlite3 connection.

bench/store.py showed SQLAlchemy's per-call connection checkout, transaction events and
result wrapping costing many times the query itself for a one-row lookup. These reads
run the SQL that ``Statements`` compiled for the dialect (one definition of each
statement) on a plain sqlite3 connection per thread, with the same PRAGMAs. Each
SELECT runs in autocommit: one statement, one consistent WAL snapshot, no transaction
left open.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from typing import Any

import sqlalchemy as sa

from results_flow.backends.sql_schema import apply_sqlite_settings, mapped_error


class SqliteReader:
    """Runs one-row SELECTs on this thread's own sqlite3 connection."""

    def __init__(self, database: str, busy_timeout: float, location: str) -> None:
        self.database = database
        self.busy_timeout = busy_timeout
        self.location = location
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        # A forked child must not reuse the parent's connections; os.getpid() per read
        # would cost more than the read itself, so forget them at fork time instead.
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forget_after_fork(ref()))

    def first(self, sql: str, params: tuple[Any, ...]) -> Any:
        """The first row of ``sql`` (a tuple) or None.

        Raises:
            StoreError: the driver failed; mapped as every SQL error is.
        """
        try:
            return self._connection().execute(sql, params).fetchone()
        except sqlite3.Error as exc:
            wrapped = sa.exc.DBAPIError.instance(sql, params, exc, sqlite3.Error)
            raise mapped_error(wrapped, self.location) from exc

    def close(self) -> None:
        """Close every connection this reader opened, in any thread."""
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


def _forget_after_fork(reader: SqliteReader | None) -> None:
    """In a forked child: drop (without closing) the connections the parent opened."""
    if reader is not None:
        reader._local = threading.local()
        reader._opened = []
        reader._guard = threading.Lock()
