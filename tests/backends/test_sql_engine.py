"""sql_engine: the one retry rule every SQL path follows, and the one busy policy of
SQLite's two write paths (the row runner on the driver, and SQLAlchemy Core)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from results_flow import SqliteBackend, StoreBusyError
from results_flow.backends.sql.engine import Retry, RetryTransaction
from results_flow.errors import StoreError, StoreUnavailableError
from results_flow.records import Record
from results_flow.settings import BUSY_RETRY_SECONDS


def driver_error(orig: Exception, *, invalidated: bool = False) -> sa.exc.DBAPIError:
    error = sa.exc.DBAPIError.instance("SELECT 1", (), orig, sqlite3.Error)
    assert isinstance(error, sa.exc.DBAPIError)
    error.connection_invalidated = invalidated
    return error


def busy() -> sa.exc.DBAPIError:
    orig = sqlite3.OperationalError("database is locked")
    orig.sqlite_errorcode = sqlite3.SQLITE_BUSY  # type: ignore[attr-defined]
    return driver_error(orig)


def test_retry_transaction_always_runs_again() -> None:
    retry = Retry(write=False, busy_timeout=0, location="x")
    assert retry.pause(RetryTransaction()) == 0.0
    assert retry.pause(RetryTransaction()) == 0.0


def test_a_dead_connection_is_retried_once_and_only_before_the_work_was_done() -> None:
    retry = Retry(write=False, busy_timeout=1, location="x")
    dead = driver_error(sqlite3.OperationalError("server closed"), invalidated=True)
    assert retry.pause(dead) == 0.0
    with pytest.raises(StoreUnavailableError, match="server closed"):
        retry.pause(dead)
    at_commit = Retry(write=True, busy_timeout=1, location="x")
    at_commit.worked = True  # the write may have landed: never sent twice
    with pytest.raises(StoreUnavailableError):
        at_commit.pause(dead)


def test_busy_retries_writes_until_the_deadline_and_never_reads() -> None:
    assert Retry(write=True, busy_timeout=60, location="x").pause(busy()) == BUSY_RETRY_SECONDS
    with pytest.raises(StoreBusyError) as late:
        Retry(write=True, busy_timeout=0, location="db").pause(busy())
    assert late.value.__notes__ == ["gave up after 0s"]
    with pytest.raises(StoreBusyError, match="db stayed locked"):
        Retry(write=False, busy_timeout=60, location="db").pause(busy())


def test_other_driver_errors_are_mapped_at_once() -> None:
    retry = Retry(write=True, busy_timeout=60, location="db")
    with pytest.raises(StoreError, match="db failed: no such table"):
        retry.pause(driver_error(sqlite3.DatabaseError("no such table")))


def record() -> Record:
    now = datetime.now(UTC)
    return Record(model_type="M", namespace="default", data="{}", created_at=now, updated_at=now)


def test_both_sqlite_write_paths_give_up_on_a_busy_database_alike(tmp_path: Path) -> None:
    """One-row writes (the driver runner) and clear (Core) follow one busy policy."""
    db = tmp_path / "busy.db"
    backend = SqliteBackend(db, busy_timeout=0.2)
    writes: dict[str, Callable[[], object]] = {
        "insert": lambda: backend.insert("a", record()),
        "upsert": lambda: backend.upsert("a", record()),
        "delete": lambda: backend.delete("a"),
        "clear": backend.clear,
    }
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        for name, write in writes.items():
            with pytest.raises(StoreBusyError, match="busy.db stayed locked") as info:
                write()
            assert info.value.__notes__ == ["gave up after 0.2s"], name
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert backend.insert("a", record()) is None
    backend.close()
