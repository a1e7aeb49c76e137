"""Row runners: how ``SqlBackend`` runs its one-row statements (read, exists, insert,
upsert, delete), by name.

A runner fetches one row or the rows of a batch read, or runs one write transaction;
``SqlBackend`` does not know which runner it has. ``CoreRowRunner`` goes through
SQLAlchemy Core; the driver runners (``sql.sqlite_runner``, ``sql.pg_runner``) run the same
statements, compiled once, straight on the driver, because SQLAlchemy's per-call work
cost many times a one-row query (and its row wrapping and SQLite time parsing a third
of a 100k-ID batch read). Every runner retries and maps errors as ``sql.engine.Retry``
says.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from sqlalchemy.engine import Connection, Engine

from results_flow.backends.sql.engine import read_engine, transaction
from results_flow.backends.sql.statements import (
    CompiledStatement,
    Statements,
)

T = TypeVar("T")

#: A row as the driver returns it, in ``Statements.columns`` order.
Row = Sequence[Any]


class RowTransaction(Protocol):
    """One-row statements inside a write transaction."""

    def first(self, name: str, values: dict[str, Any]) -> Row | None:
        """The first row the statement ``name`` returns, or None."""
        ...

    def count(self, name: str, values: dict[str, Any]) -> int:
        """Run the statement ``name``; the number of rows it changed."""
        ...


class RowRunner(Protocol):
    """Runs the one-row statements of one store."""

    def first(self, name: str, values: dict[str, Any]) -> Row | None:
        """The first row of the SELECT ``name``, read outside any write transaction.

        Raises:
            StoreError: the driver failed; mapped by ``sql.engine.mapped_error``.
        """
        ...

    def rows(self, name: str, batches: Sequence[dict[str, Any]]) -> list[Row]:
        """Every row of the SELECT ``name`` run once for each of ``batches`` (a batch
        read: ``BATCH`` statements), in one read outside any write transaction.

        Raises:
            StoreError: the driver failed; mapped by ``sql.engine.mapped_error``.
        """
        ...

    def write(self, work: Callable[[RowTransaction], T]) -> T:
        """``work`` in one write transaction, retried as ``sql.engine.Retry`` says.

        Raises:
            StoreError: the driver failed; mapped by ``sql.engine.mapped_error``.
        """
        ...

    def close(self) -> None:
        """Close the connections the runner opened itself."""
        ...


class CoreTransaction:
    """``RowTransaction`` on a SQLAlchemy connection."""

    def __init__(self, conn: Connection, statements: Statements) -> None:
        self.conn = conn
        self.statements = statements

    def first(self, name: str, values: dict[str, Any]) -> Row | None:
        return self.conn.execute(getattr(self.statements, name), values).first()

    def count(self, name: str, values: dict[str, Any]) -> int:
        return self.conn.execute(getattr(self.statements, name), values).rowcount


class CompiledTransaction:
    """``RowTransaction`` of a driver runner: the compiled statements run through
    ``execute(sql, params)``, which returns the driver's cursor."""

    def __init__(
        self,
        execute: Callable[[str, tuple[Any, ...]], Any],
        statements: dict[str, CompiledStatement],
    ) -> None:
        self.execute = execute
        self.statements = statements

    def first(self, name: str, values: dict[str, Any]) -> Row | None:
        statement = self.statements[name]
        return self.execute(statement.sql, statement.params(values)).fetchone()  # type: ignore[no-any-return]

    def count(self, name: str, values: dict[str, Any]) -> int:
        statement = self.statements[name]
        return self.execute(statement.sql, statement.params(values)).rowcount  # type: ignore[no-any-return]


class CoreRowRunner:
    """``RowRunner`` through SQLAlchemy Core, on pooled connections of ``engine``."""

    def __init__(
        self, engine: Engine, statements: Statements, *, busy_timeout: float, location: str
    ) -> None:
        self.engine = engine
        self.read_engine = read_engine(engine)
        self.statements = statements
        self.busy_timeout = busy_timeout
        self.location = location

    def first(self, name: str, values: dict[str, Any]) -> Row | None:
        statement = getattr(self.statements, name)
        return transaction(
            self.read_engine,
            lambda conn: conn.execute(statement, values).first(),
            write=False,
            busy_timeout=self.busy_timeout,
            location=self.location,
        )

    def rows(self, name: str, batches: Sequence[dict[str, Any]]) -> list[Row]:
        statement = getattr(self.statements, name)
        return transaction(
            self.read_engine,
            lambda conn: [row for values in batches for row in conn.execute(statement, values)],
            write=False,
            busy_timeout=self.busy_timeout,
            location=self.location,
        )

    def write(self, work: Callable[[RowTransaction], T]) -> T:
        return transaction(
            self.engine,
            lambda conn: work(CoreTransaction(conn, self.statements)),
            busy_timeout=self.busy_timeout,
            location=self.location,
        )

    def close(self) -> None:
        """Nothing of its own: the engine's owner disposes it."""
