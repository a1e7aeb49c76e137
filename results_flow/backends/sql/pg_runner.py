"""``PsycopgRowRunner``: PostgreSQL one-row reads and writes straight on a pooled psycopg
connection.

bench/store.py put a ``get`` through SQLAlchemy Core at 3.5x a raw psycopg SELECT: the
per-call connection wrapper, events, isolation switches and result wrapping cost more
than the round trip. This runner takes a connection from the store's own pool (the
same bounded pool, connect arguments and ``sql.pg_bounds`` timeouts), runs the SQL that
``Statements`` compiled for psycopg in autocommit (one statement, no BEGIN/ROLLBACK;
a batch read runs its statements one after another on that connection), and gives the
connection back. A write is BEGIN, its statements and COMMIT on such a connection, as a
raw psycopg transaction is (through Core, ``set`` ran at 0.56x the rate of a raw
INSERT ... ON CONFLICT with commit); writes of this process that commit at the same
moment share it (``sql.group_commit``). A connection that died in the pool is invalidated
and the call runs once more, as ``sql.engine.Retry`` says for every SQL path (a write
only when it failed before COMMIT).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.engine import Engine

from results_flow.backends.sql.engine import Retry, retrying
from results_flow.backends.sql.group_commit import GroupCommit, Write, run_each
from results_flow.backends.sql.pg_bounds import WATCHDOG
from results_flow.backends.sql.runner import CompiledTransaction, Row, RowTransaction
from results_flow.backends.sql.statements import Statements, compiled_statements
from results_flow.errors import StoreUnavailableError
from results_flow.settings import PG_GROUP_COMMIT_LANES

T = TypeVar("T")


class PsycopgRowRunner:
    """``RowRunner`` on the psycopg connections of ``engine``'s pool."""

    def __init__(self, engine: Engine, statements: Statements, *, location: str) -> None:
        self.engine = engine
        # Positional ``%s`` parameters: the tuple ``CompiledStatement.params`` makes.
        positional = PGDialect_psycopg(paramstyle="format")  # type: ignore[no-untyped-call]
        self.statements = compiled_statements(statements, positional)
        self.location = location
        # The statement bounds (pg_bounds) bound each batch; a write waits for no other
        # bound. Several batches at once (see PG_GROUP_COMMIT_LANES).
        self._group = GroupCommit(
            self._commit, wait=None, location=location, lanes=PG_GROUP_COMMIT_LANES
        )

    def first(self, name: str, values: dict[str, Any]) -> Row | None:
        statement = self.statements[name]
        params = statement.params(values)
        return self._read(
            statement.sql, lambda conn: conn.execute(statement.sql, params).fetchone()
        )

    def rows(self, name: str, batches: Sequence[dict[str, Any]]) -> list[Row]:
        statement = self.statements[name]
        params = [statement.params(values) for values in batches]
        return self._read(
            statement.sql,
            lambda conn: [row for p in params for row in conn.execute(statement.sql, p).fetchall()],
        )

    def write(self, work: Callable[[RowTransaction], T]) -> T:
        return self._group.write(work)

    def _commit(self, writes: Sequence[Write]) -> list[Any]:
        """``writes`` in one transaction on a pooled connection, retried as ``Retry`` says."""

        def attempt(retry: Retry) -> list[Any]:
            return self._autocommit(
                "BEGIN ... COMMIT", lambda conn: self.transaction_on(conn, writes, retry)
            )

        return retrying(attempt, Retry(write=True, busy_timeout=0.0, location=self.location))

    def transaction_on(
        self, conn: psycopg.Connection[Any], writes: Sequence[Write], retry: Retry
    ) -> list[Any]:
        """``writes`` between BEGIN and COMMIT on ``conn``, an autocommit connection (a
        pooled one, or a lock session), rolled back on any error; once they are done only
        COMMIT is left, which ``retry`` never runs again. Their outcomes, in order."""
        with conn.transaction():
            outcomes = run_each(writes, CompiledTransaction(conn.execute, self.statements))
            retry.worked = True
        return outcomes

    def close(self) -> None:
        """Nothing of its own: the connections belong to the engine's pool."""

    def _read(self, sql: str, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        # PostgreSQL is never busy as SQLite is: no busy timeout (row locks wait on the server).
        retry = Retry(write=False, busy_timeout=0.0, location=self.location)
        return retrying(lambda _: self._autocommit(sql, work), retry)

    def _autocommit(self, sql: str, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``work`` (autocommit SELECTs of ``sql``, or a transaction it opens itself) on a
        pooled connection in autocommit.

        Raises:
            sqlalchemy.exc.DBAPIError: the driver failed, wrapped as SQLAlchemy wraps
                it, ``connection_invalidated`` when the connection was dead.
        """
        try:
            pooled = self.engine.raw_connection()
        except psycopg.Error as exc:  # the pool hands out the driver's connect errors raw
            raise sa.exc.DBAPIError.instance(None, None, exc, psycopg.Error) from exc
        conn: psycopg.Connection[Any] = pooled.driver_connection  # type: ignore[assignment]
        try:
            conn.autocommit = True
            return work(conn)
        except psycopg.Error as exc:
            dead = conn.closed or conn.broken  # SQLAlchemy's psycopg dialect asks the same
            if dead:
                pooled.invalidate(exc)
            bound = WATCHDOG.cut_after(conn)
            if bound is not None:  # the path stalled: say so, and do not wait again
                raise StoreUnavailableError(
                    f"{self.location} did not answer within {bound:g}s (the client-side "
                    "bound: statement_timeout + PG_CLIENT_MARGIN); the connection was cut"
                ) from exc
            raise sa.exc.DBAPIError.instance(
                sql, None, exc, psycopg.Error, connection_invalidated=dead
            ) from exc
        finally:
            _give_back(pooled, conn)


def _give_back(pooled: Any, conn: psycopg.Connection[Any]) -> None:
    """Return a connection to the pool as the pool's other users expect it: out of
    autocommit (they run transactions), or discarded when it cannot be switched back."""
    try:
        if not conn.closed:
            conn.autocommit = False
    except psycopg.Error as exc:
        pooled.invalidate(exc)
    pooled.close()
