"""Compute-once locks on PostgreSQL: a session advisory lock on a connection of its own.

Lock sessions come from an engine of their own (a small pool, unbounded overflow),
never from the store's pool, so any number of holders that the server's
``max_connections`` allows can wait and compute while the store's reads and writes
still find a connection. A waiter blocks in ``pg_advisory_lock``, bounded by the
server's ``lock_timeout``; the server drops the lock when the holder's session dies.

A write made under a held lock (``insert``, ``upsert``, ``delete`` of the locked ID by
the holder) runs in the lock's own session: if that session is gone, the lock may
already belong to another worker, so the write is refused with ``LockLostError``
instead of racing the new holder. Release never raises a driver error; it raises
``LockLostError`` only when the lock was lost and the holder wrote nothing under it.

``apg_lock`` is the async store's lock: the same advisory lock on the same key, taken
by polling ``pg_try_advisory_lock`` on a pooled connection of the asyncio engine
(asyncpg's client-side statement bound would cut a blocking wait short).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import AsyncIterator, Callable, Mapping
from types import MappingProxyType, TracebackType
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from results_flow.backends.locks import lock_timed_out
from results_flow.backends.pg_bounds import PgBounds
from results_flow.backends.sql_engine import DRIVER_ERRORS, RetryTransaction, mapped_error
from results_flow.errors import LockLostError, LockTimeoutError
from results_flow.settings import LOCK_POLL_SECONDS

T = TypeVar("T")

#: The longest lock_timeout PostgreSQL accepts (an int of milliseconds, about 24 days).
_MAX_LOCK_MS = 2_147_483_647
_LOCK_TIMEOUT_STATE = "55P03"

_LOCK_SETTINGS = sa.text(
    "SELECT set_config('statement_timeout', '0', true), set_config('lock_timeout', :ms, true)"
)
# Session-level advisory locks on a 64-bit hash of the ID: the server drops them when
# the holder's session dies.
_LOCK = sa.text("SELECT pg_advisory_lock(hashtextextended(:id, 0))")
_TRY_LOCK = sa.text("SELECT pg_try_advisory_lock(hashtextextended(:id, 0))")
_UNLOCK = sa.text("SELECT pg_advisory_unlock(hashtextextended(:id, 0))")

#: The locks held in this context, by (store, ID): writes to a locked ID use its session.
_HELD: contextvars.ContextVar[Mapping[tuple[int, str], PgLock]] = contextvars.ContextVar(
    "results_flow_pg_locks", default=MappingProxyType({})
)


def lock_engine(url: str | sa.URL, bounds: PgBounds) -> Engine:
    """The engine that lock sessions come from: a few kept, any number more opened."""
    return sa.create_engine(
        url,
        pool_size=2,
        max_overflow=-1,
        connect_args=bounds.psycopg_connect_args(),
    )


def held_lock(store: object, result_id: str) -> PgLock | None:
    """The lock on ``result_id`` that this context holds in ``store``, if any."""
    held = _HELD.get()
    return held.get((id(store), result_id)) if held else None


class PgLock:
    """A session advisory lock on one ID, held for a ``with`` block.

    Raises (on entry):
        LockTimeoutError: not acquired within ``timeout`` seconds.
        StoreUnavailableError: the server cannot be reached.
    Raises (on exit):
        LockLostError: the lock's session ended while held and nothing was written
            under it, so another worker may have run the same block.
    """

    def __init__(
        self, engine: Engine, store: object, result_id: str, timeout: float, location: str
    ) -> None:
        self.engine = engine
        self.result_id = result_id
        self.timeout = timeout
        self.location = location
        self._key = (id(store), result_id)
        self._conn: Connection | None = None
        self._token: contextvars.Token[Mapping[tuple[int, str], PgLock]] | None = None
        self._lost = False
        self._wrote = False

    def __enter__(self) -> None:
        params = {"id": self.result_id}
        try:
            conn = self.engine.connect()
        except sa.exc.SQLAlchemyError as exc:
            raise mapped_error(exc, self.location) from exc
        try:
            with conn.begin():
                if self.timeout <= 0:
                    acquired = conn.execute(_TRY_LOCK, params).scalar_one()
                else:
                    ms = min(_MAX_LOCK_MS, max(1, round(self.timeout * 1000)))
                    conn.execute(_LOCK_SETTINGS, {"ms": str(ms)})
                    acquired = conn.execute(_LOCK, params).scalar_one() is not False
        except sa.exc.DBAPIError as exc:
            _close_quietly(conn)
            if _sqlstate(exc) == _LOCK_TIMEOUT_STATE:
                raise self._timeout_error() from exc
            raise mapped_error(exc, self.location) from exc
        except BaseException:
            _close_quietly(conn)
            raise
        if not acquired:
            _close_quietly(conn)
            raise self._timeout_error()
        self._conn = conn
        self._token = _HELD.set(MappingProxyType({**_HELD.get(), self._key: self}))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            try:
                _HELD.reset(self._token)
            except ValueError:  # exited in another context than entered: drop ours only
                held = dict(_HELD.get())
                held.pop(self._key, None)
                _HELD.set(MappingProxyType(held))
            self._token = None
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            with conn.begin():
                released = conn.execute(_UNLOCK, {"id": self.result_id}).scalar_one()
            if not released:
                self._lost = True
        except sa.exc.SQLAlchemyError:
            self._lost = True
        finally:
            _close_quietly(conn)
        if self._lost and exc is None and not self._wrote:
            raise LockLostError(
                f"lock on {self.result_id!r} in {self.location} was lost while held "
                "(its database session ended); another worker may have run the same work"
            )

    def run_write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one transaction in the lock's own session.

        Raises:
            LockLostError: the lock's session is gone; nothing was written.
            StoreError: any other driver failure, mapped by ``mapped_error``.
        """
        conn = self._conn
        if conn is None or self._lost:
            raise self._lost_error()
        while True:
            try:
                with conn.begin():
                    result = work(conn)
            except RetryTransaction:
                continue
            except sa.exc.DBAPIError as exc:
                if exc.connection_invalidated or conn.invalidated or _session_ended(exc):
                    self._lost = True
                    raise self._lost_error() from exc
                raise mapped_error(exc, self.location) from exc
            except sa.exc.SQLAlchemyError as exc:
                raise mapped_error(exc, self.location) from exc
            self._wrote = True
            return result

    def _lost_error(self) -> LockLostError:
        return LockLostError(
            f"lock on {self.result_id!r} in {self.location} was lost while held (its "
            "database session ended), so this write was refused: another worker may hold "
            "the lock and store this ID"
        )

    def _timeout_error(self) -> LockTimeoutError:
        return lock_timed_out(self.result_id, self.location, self.timeout)


@contextlib.asynccontextmanager
async def apg_lock(
    engine: AsyncEngine, result_id: str, timeout: float, location: str
) -> AsyncIterator[None]:
    """``PgLock``'s advisory lock for the async store, held for an ``async with`` block.

    Raises:
        LockTimeoutError: not acquired within ``timeout`` seconds.
        StoreUnavailableError: the server cannot be reached.
    """
    params = {"id": result_id}
    deadline = time.monotonic() + timeout
    try:
        conn = await engine.connect()
    except DRIVER_ERRORS as exc:
        raise mapped_error(exc, location) from exc
    try:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        while not await _try_lock(conn, params, location):
            if time.monotonic() > deadline:
                raise lock_timed_out(result_id, location, timeout)
            await asyncio.sleep(LOCK_POLL_SECONDS)
        try:
            yield
        finally:
            await conn.execute(_UNLOCK, params)
    finally:
        await conn.close()


async def _try_lock(conn: AsyncConnection, params: dict[str, str], location: str) -> bool:
    try:
        return bool((await conn.execute(_TRY_LOCK, params)).scalar_one())
    except DRIVER_ERRORS as exc:
        raise mapped_error(exc, location) from exc


def _session_ended(exc: BaseException) -> bool:
    """Whether the server ended the session (terminated backend, shutdown, lost link)."""
    state = _sqlstate(exc)
    return isinstance(state, str) and (state.startswith("57P") or state.startswith("08"))


def _sqlstate(exc: BaseException) -> Any:
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None)


def _close_quietly(conn: Connection) -> None:
    """Return a lock session to its pool (a dead one is discarded), never raising."""
    try:
        conn.close()
    except sa.exc.SQLAlchemyError:
        conn.invalidate()
