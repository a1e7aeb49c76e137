"""SQL engines and transactions: how results_flow connects, retries and maps errors.

Every SQL path (the sync and async record stores, the row runners, the data layer's
``DatabaseDataManager``) opens its engine with ``make_engine`` and runs its
transactions through ``transaction`` or ``atransaction``, so there is one set of
SQLite settings, one retry rule (``Retry``) and one driver-error mapping
(``mapped_error``).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, TypeVar, overload

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from results_flow.backends.descriptors import NO_DESCRIPTORS_HINT, out_of_descriptors
from results_flow.backends.sql.pg_bounds import PgBounds, bound_psycopg_pool, is_unavailable
from results_flow.errors import (
    ResultsFlowError,
    StoreBusyError,
    StoreError,
    StoreUnavailableError,
)
from results_flow.settings import BUSY_RETRY_SECONDS

T = TypeVar("T")

#: Applied to every new SQLite connection (diskcache's habit: settings are data).
SQLITE_PRAGMAS: dict[str, str] = {
    "journal_mode": "wal",
    "synchronous": "full",
    "foreign_keys": "on",
}


@overload
def make_engine(
    url: str | sa.URL,
    *,
    busy_timeout: float,
    bounds: PgBounds | None = ...,
    options: Mapping[str, Any] | None = ...,
    async_: Literal[False] = ...,
) -> Engine: ...


@overload
def make_engine(
    url: str | sa.URL,
    *,
    busy_timeout: float,
    bounds: PgBounds | None = ...,
    options: Mapping[str, Any] | None = ...,
    async_: Literal[True],
) -> AsyncEngine: ...


def make_engine(
    url: str | sa.URL,
    *,
    busy_timeout: float,
    bounds: PgBounds | None = None,
    options: Mapping[str, Any] | None = None,
    async_: bool = False,
) -> Engine | AsyncEngine:
    """An engine on ``url`` (a SQLAlchemy URL with its driver) with results_flow's settings.

    SQLite: ``SQLITE_PRAGMAS`` and ``busy_timeout`` on every new connection, and writes
    that begin with ``BEGIN IMMEDIATE`` (``begin_sqlite``). PostgreSQL: ``bounds`` reach
    the driver as connect arguments, and a psycopg pool's calls are bounded on the client
    too (``sql.pg_bounds.bound_psycopg_pool``). No pre-ping unless ``options`` ask for it: it cost a
    round trip per call, and ``Retry`` reconnects once instead. ``options`` are
    ``create_engine``'s keywords; their ``connect_args`` win over these.
    """
    options = dict(options or {})
    sqlite_url = make_url(url).get_backend_name() == "sqlite"
    connect_args: dict[str, Any] = {}
    if sqlite_url:
        connect_args["timeout"] = busy_timeout
        if not async_:  # pooled connections move between threads (aiosqlite has its own)
            connect_args["check_same_thread"] = False
    elif bounds is not None:
        connect_args = bounds.asyncpg_connect_args() if async_ else bounds.psycopg_connect_args()
    options["connect_args"] = {**connect_args, **options.get("connect_args", {})}
    engine = create_async_engine(url, **options) if async_ else sa.create_engine(url, **options)
    if sqlite_url:
        sync_engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
        event.listen(
            sync_engine, "connect", lambda dbapi, _: apply_sqlite_settings(dbapi, busy_timeout)
        )
        event.listen(sync_engine, "begin", begin_sqlite)
    elif bounds is not None and isinstance(engine, Engine) and engine.dialect.driver == "psycopg":
        bound_psycopg_pool(engine, bounds)
    return engine


def apply_sqlite_settings(dbapi_connection: Any, busy_timeout: float) -> None:
    """Run on every new SQLite connection: PRAGMAs, and manual transactions so that
    ``begin_sqlite`` can say ``BEGIN IMMEDIATE`` for writes."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        for name, value in SQLITE_PRAGMAS.items():
            cursor.execute(f"PRAGMA {name} = {value}")
    finally:
        cursor.close()


def begin_sqlite(conn: Connection) -> None:
    """The ``begin`` hook: writes take the write lock up front (no upgrade deadlocks).

    BEGIN goes straight to a DBAPI cursor: through ``exec_driver_sql`` it cost about as
    much as the query it opens. A driver error is wrapped as SQLAlchemy wraps it, so the
    busy retry and ``mapped_error`` see the same ``OperationalError``.
    """
    write = conn.get_execution_options().get("results_flow_write", False)
    statement = "BEGIN IMMEDIATE" if write else "BEGIN"
    dbapi_error = conn.dialect.loaded_dbapi.Error
    cursor = conn.connection.cursor()
    try:
        cursor.execute(statement)
    except dbapi_error as exc:
        raise sa.exc.DBAPIError.instance(statement, None, exc, dbapi_error) from exc
    finally:
        cursor.close()


@overload
def read_engine(engine: Engine) -> Engine: ...
@overload
def read_engine(engine: AsyncEngine) -> AsyncEngine: ...
def read_engine(engine: Engine | AsyncEngine) -> Engine | AsyncEngine:
    """The engine for reads: on PostgreSQL a read is one autocommit statement (no BEGIN
    and ROLLBACK round trips); SQLite reads keep their transaction (one WAL snapshot)."""
    if engine.dialect.name == "sqlite":
        return engine
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def is_busy(exc: BaseException) -> bool:
    """Whether a driver error means SQLite was locked by another writer."""
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "database is locked" in str(orig or exc)


#: The errors a SQL store maps to results_flow's own, sync and async alike: SQLAlchemy's,
#: and OSError, which some drivers (asyncpg) raise unwrapped when a server is unreachable.
DRIVER_ERRORS: tuple[type[Exception], ...] = (sa.exc.SQLAlchemyError, OSError)


def mapped_error(exc: BaseException, location: str) -> StoreError:
    """The results_flow error for a driver error raised against ``location``."""
    if is_busy(exc):
        return StoreBusyError(f"{location} stayed locked by other writers: {_first_line(exc)}")
    if is_unavailable(exc):
        return StoreUnavailableError(f"{location} did not answer in time: {_first_line(exc)}")
    if isinstance(exc, TimeoutError):  # asyncpg's command_timeout: the client-side bound
        return StoreUnavailableError(
            f"{location} did not answer within the client-side bound "
            "(statement_timeout + PG_CLIENT_MARGIN)"
        )
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError | OSError):
        why = _first_line(exc)
        if out_of_descriptors():
            why += f"; {NO_DESCRIPTORS_HINT}"
        return StoreUnavailableError(f"cannot reach or open {location}: {why}")
    return StoreError(f"database operation on {location} failed: {_first_line(exc)}")


class RetryTransaction(Exception):
    """Raised inside a transaction's work to run the transaction again."""


#: What ``Retry.pause`` judges; anything else (our own errors first) passes through.
_JUDGED: tuple[type[Exception], ...] = (RetryTransaction, *DRIVER_ERRORS)


class Retry:
    """When a failed SQL transaction runs again: the one rule of every SQL path.

    Again whenever the work raises ``RetryTransaction``; once when a pooled connection
    turns out dead before the work was done (the server rolled it back; a failure at
    COMMIT is never retried, as the write may have landed); and, for writes, while
    SQLite reports SQLITE_BUSY, until ``busy_timeout`` seconds have passed.
    """

    def __init__(self, *, write: bool, busy_timeout: float, location: str) -> None:
        self.write = write
        self.busy_timeout = busy_timeout
        self.location = location
        self.deadline = time.monotonic() + busy_timeout
        self.reconnected = False
        #: Set by an attempt once its work is done and only COMMIT is left.
        self.worked = False

    def pause(self, exc: Exception) -> float:
        """Seconds to wait before the next attempt, after ``exc`` ended this one.

        Raises:
            StoreBusyError: still busy at the deadline.
            StoreError: ``exc`` mapped by ``mapped_error``, when it is not run again.
        """
        worked, self.worked = self.worked, False
        if isinstance(exc, RetryTransaction):
            return 0.0
        dead = isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated
        if dead and not worked and not self.reconnected:
            self.reconnected = True  # a connection that died in the pool: once more
            return 0.0
        if self.write and is_busy(exc) and time.monotonic() < self.deadline:
            return BUSY_RETRY_SECONDS
        error = mapped_error(exc, self.location)
        if isinstance(error, StoreBusyError):
            error.add_note(f"gave up after {self.busy_timeout}s")
        raise error from exc


def retrying(attempt: Callable[[Retry], T], retry: Retry) -> T:
    """``attempt(retry)`` until it succeeds or ``retry`` gives up.

    Raises:
        StoreError: as ``Retry.pause``; results_flow's own errors pass through unmapped.
    """
    while True:
        try:
            return attempt(retry)
        except ResultsFlowError:
            raise  # our own errors (some are OSErrors) pass through unmapped
        except _JUDGED as exc:
            time.sleep(retry.pause(exc))


def transaction(
    engine: Engine,
    work: Callable[[Connection], T],
    *,
    busy_timeout: float,
    location: str,
    write: bool = True,
) -> T:
    """Run ``work`` in one transaction (a write starts with ``BEGIN IMMEDIATE`` on
    SQLite), committed, or rolled back on any error, and retried as ``Retry`` says.

    Raises:
        StoreBusyError: still busy at the deadline.
        StoreError: any other driver failure, mapped by ``mapped_error``.
    """

    def attempt(retry: Retry) -> T:
        with engine.connect() as conn:
            if write:
                conn = conn.execution_options(results_flow_write=True)
            with conn.begin():
                result = work(conn)
                retry.worked = True
        return result

    return retrying(attempt, Retry(write=write, busy_timeout=busy_timeout, location=location))


async def atransaction(
    engine: AsyncEngine,
    work: Callable[[AsyncConnection], Awaitable[T]],
    *,
    busy_timeout: float,
    location: str,
    write: bool = True,
) -> T:
    """``transaction`` on an asyncio engine: the same transaction, rule and errors."""
    retry = Retry(write=write, busy_timeout=busy_timeout, location=location)
    while True:
        try:
            async with engine.connect() as conn:
                if write:
                    conn = await conn.execution_options(results_flow_write=True)
                async with conn.begin():
                    result = await work(conn)
                    retry.worked = True
            return result
        except ResultsFlowError:
            raise  # our own errors (some are OSErrors) pass through unmapped
        except _JUDGED as exc:
            await asyncio.sleep(retry.pause(exc))


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
