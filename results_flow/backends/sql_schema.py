"""What the sync and async SQL backends share: the table, the statements, the
SQLite settings, the row decoding and the driver-error mapping.

One table, the ID as primary key. Conflicts are settled by the database with the
dialect's ``INSERT ... ON CONFLICT``; never by a read followed by a write. On
PostgreSQL the ID column uses the "C" collation so ordering and prefix ranges are
bytewise, exactly as on SQLite and in Python.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect, Engine

from results_flow.backends.pg_bounds import is_unavailable
from results_flow.errors import (
    CorruptRecordError,
    ResultsFlowError,
    StoreBusyError,
    StoreError,
    StoreUnavailableError,
)
from results_flow.ids import MAX_ID_BYTES, prefix_upper_bound
from results_flow.records import Record, parse_time
from results_flow.settings import BUSY_RETRY_SECONDS

T = TypeVar("T")

DEFAULT_TABLE = "results_flow_records"
#: Applied to every new SQLite connection (diskcache's habit: settings are data).
SQLITE_PRAGMAS: dict[str, str] = {
    "journal_mode": "wal",
    "synchronous": "full",
    "foreign_keys": "on",
}
#: Serializes CREATE TABLE across processes on PostgreSQL (an arbitrary constant key).
CREATE_LOCK_KEY = 0x52464C4F57  # "RFLOW"


def records_table(name: str = DEFAULT_TABLE, schema: str | None = None) -> sa.Table:
    """The records table; one per store."""
    id_type = sa.String(MAX_ID_BYTES).with_variant(
        sa.String(MAX_ID_BYTES, collation="C"), "postgresql"
    )
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("id", id_type, primary_key=True),
        sa.Column("model_type", sa.String(255), nullable=False),
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("metadata", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        schema=schema,
    )


class Statements:
    """The SQL of every backend operation, built once per table and dialect."""

    def __init__(self, table: sa.Table, dialect: Dialect) -> None:
        self.table = table
        self.dialect_name = dialect.name
        c = table.c
        self.columns = (
            c.id,
            c.model_type,
            c.namespace,
            c.data,
            c.metadata,
            c.created_at,
            c.updated_at,
        )
        self.read = sa.select(*self.columns).where(c.id == sa.bindparam("id"))
        self.exists = sa.select(c.id).where(c.id == sa.bindparam("id"))
        # Batches bind their IDs as ONE parameter (an array, or JSON text for SQLite):
        # an expanding IN renders and binds a parameter per ID, which cost PostgreSQL
        # more than running the query. ``batch`` makes the parameters.
        if dialect.name == "postgresql":
            in_batch = c.id == sa.any_(sa.bindparam("ids", type_=postgresql.ARRAY(sa.Text)))
        else:
            listed = sa.func.json_each(sa.bindparam("ids", type_=sa.Text)).table_valued("value")
            in_batch = c.id.in_(sa.select(listed.c.value))
        self.read_many = sa.select(*self.columns).where(in_batch)
        self.exists_many = sa.select(c.id).where(in_batch)
        self.delete = sa.delete(table).where(c.id == sa.bindparam("id"))
        self.clear = sa.delete(table)
        insert = postgresql.insert(table) if dialect.name == "postgresql" else sqlite.insert(table)
        # RETURNING says whether the row went in; rowcount is not reliable for every driver.
        self.insert = insert.on_conflict_do_nothing(index_elements=[c.id]).returning(c.id)
        self.upsert = insert.on_conflict_do_update(
            index_elements=[c.id],
            set_={
                name: insert.excluded[name]
                for name in ("model_type", "namespace", "data", "metadata", "updated_at")
            },
        )

    def batch(self, result_ids: Sequence[str]) -> dict[str, list[str] | str]:
        """The parameters of ``read_many`` and ``exists_many`` for ``result_ids``."""
        ids = list(result_ids)
        return {"ids": ids if self.dialect_name == "postgresql" else json.dumps(ids)}

    def list_ids(self, prefix: str | None) -> sa.Select[str]:
        """IDs equal to ``prefix`` or below it by whole segments, sorted."""
        c = self.table.c
        query = sa.select(c.id).order_by(c.id)
        if prefix is None:
            return query
        below = sa.and_(c.id >= prefix + "/", c.id < prefix_upper_bound(prefix))
        return query.where(sa.or_(c.id == prefix, below))


#: The bind names of a full row, in ``row_values`` order.
ROW_KEYS = ("id", "model_type", "namespace", "data", "metadata", "created_at", "updated_at")


def row_values(result_id: str, record: Record) -> dict[str, Any]:
    """The bind values that store ``record`` under ``result_id``."""
    return {
        "id": result_id,
        "model_type": record.model_type,
        "namespace": record.namespace,
        "data": record.data,
        "metadata": json.dumps(record.metadata, ensure_ascii=False),
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


def record_from_row(row: Sequence[Any]) -> Record:
    """A ``Record`` from a row of ``Statements.columns``.

    Raises:
        CorruptRecordError: the row's metadata is not a JSON object, or a time is not
            a time (a row written by hand or by another program); names the ID.
    """
    result_id, model_type, namespace, data, metadata, created_at, updated_at = row
    try:
        decoded = {} if metadata == "{}" else json.loads(metadata)
        if not isinstance(decoded, dict):
            raise TypeError(f"metadata is a JSON {type(decoded).__name__}, not an object")
        return Record(
            model_type=model_type,
            namespace=namespace,
            data=data,
            created_at=parse_time(created_at),
            updated_at=parse_time(updated_at),
            metadata=decoded,
        )
    except (TypeError, ValueError) as exc:
        raise CorruptRecordError(
            f"the row of result ID {result_id!r} is a damaged results_flow record: {exc}"
        ) from exc


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
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError | OSError):
        return StoreUnavailableError(f"cannot reach or open {location}: {_first_line(exc)}")
    return StoreError(f"database operation on {location} failed: {_first_line(exc)}")


class RetryTransaction(Exception):
    """Raised inside ``write_transaction``'s work to run the transaction again."""


def write_transaction(
    engine: Engine, work: Callable[[Connection], T], *, busy_timeout: float, location: str
) -> T:
    """Run ``work`` in one write transaction (``BEGIN IMMEDIATE`` on SQLite).

    Retried while SQLite reports SQLITE_BUSY, until ``busy_timeout`` seconds have
    passed, whenever ``work`` raises ``RetryTransaction``, and once when a pooled
    connection turns out dead before ``work`` finished (the server rolled it back; a
    failure at COMMIT is never retried, as the write may have landed).

    Raises:
        StoreBusyError: still busy at the deadline.
        StoreError: any other driver failure, mapped by ``mapped_error``.
    """
    deadline = time.monotonic() + busy_timeout
    reconnected = False
    while True:
        worked = False
        try:
            with engine.connect() as conn:
                conn = conn.execution_options(results_flow_write=True)
                with conn.begin():
                    result = work(conn)
                    worked = True
            return result
        except RetryTransaction:
            continue
        except ResultsFlowError:
            raise  # our own errors (some are OSErrors) pass through unmapped
        except DRIVER_ERRORS as exc:
            dead = isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated
            if dead and not worked and not reconnected:
                reconnected = True  # a connection that died in the pool: once more
                continue
            if is_busy(exc) and time.monotonic() < deadline:
                time.sleep(BUSY_RETRY_SECONDS)
                continue
            error = mapped_error(exc, location)
            if isinstance(error, StoreBusyError):
                error.add_note(f"gave up after {busy_timeout}s")
            raise error from exc


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
