"""Compute-once locks on PostgreSQL: session advisory locks, a few sessions per process.

A process keeps at most ``PG_LOCK_SESSIONS`` lock sessions per database (``LockSessions``,
shared by every store object on the same URL, the async store's included), and each
session holds any number of advisory locks, so held locks cost a bounded number of
connections however many threads hold them. Lock sessions never come from a store's
pool, and idle timeouts (``idle_session_timeout``, ``idle_in_transaction_session_timeout``)
are off in them: a holder computing for an hour keeps its lock.

Session advisory locks are re-entrant within a session, so this process first excludes
its own threads per ID (a gate), then the ID's session tries
``pg_try_advisory_lock(hashtextextended(id, 0))``; a busy lock is tried again after a
pause that doubles up to ``PG_LOCK_POLL_MAX_SECONDS``, so a waiter never blocks a
session. Each session runs one statement at a time (a mutex), each bounded on the
client (``sql.pg_bounds.WATCHDOG``).

``PgLock`` yields ``PgHeldLock``: writes made for the lock run in the session that holds
it. A session that ended (terminated, cut by the watchdog, a dropped network) has lost
every lock it held: each of their writes is refused with ``LockLostError`` and nothing is
written, and the next lock on that slot opens a new session. Release never raises a
driver error; it raises ``LockLostError`` only when the lock was lost and the holder
wrote nothing under it.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

from results_flow.backends.held import HeldLock
from results_flow.backends.locks import id_hash, lock_timed_out
from results_flow.backends.sql.engine import Retry, mapped_error, retrying
from results_flow.backends.sql.pg_bounds import WATCHDOG, PgBounds
from results_flow.backends.sql.plans import delete_plan, insert_plan, run_plan, upsert_plan
from results_flow.backends.sql.runner import RowTransaction
from results_flow.errors import LockLostError, StoreUnavailableError
from results_flow.records import Record
from results_flow.settings import LOCK_POLL_SECONDS, PG_LOCK_POLL_MAX_SECONDS, PG_LOCK_SESSIONS

if TYPE_CHECKING:
    from results_flow.backends.sql.pg_runner import PsycopgRowRunner
    from results_flow.backends.sql.store import SqlBackend

T = TypeVar("T")

_TRY_LOCK = "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))"
_UNLOCK = "SELECT pg_advisory_unlock(hashtextextended(%s, 0))"
#: Idle timeouts off for this session (only those the server knows: 14+ has both).
_NO_IDLE_TIMEOUTS = (
    "SELECT set_config(name, '0', false) FROM pg_settings"
    " WHERE name IN ('idle_session_timeout', 'idle_in_transaction_session_timeout')"
)


class SessionEnded(Exception):
    """The lock session is gone, and with it every lock it held."""


class LockSession:
    """One PostgreSQL session of this process; it holds many advisory locks."""

    def __init__(self, conn: psycopg.Connection[Any], client_timeout: float | None) -> None:
        self.conn = conn
        self.client_timeout = client_timeout
        self.mutex = threading.Lock()
        self.alive = True

    def run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``work`` on this session, one caller at a time, bounded on the client.

        Raises:
            SessionEnded: the session is gone (it stays so; its locks are lost).
            sqlalchemy.exc.DBAPIError: any other driver error, wrapped for ``Retry``.
        """
        with self.mutex:
            if not self.alive:
                raise SessionEnded
            try:
                with WATCHDOG.bounded(self, self.conn, self.client_timeout):
                    return work(self.conn)
            except psycopg.Error as exc:
                if self.conn.closed or self.conn.broken:
                    self._end()
                    raise SessionEnded from exc
                raise sa.exc.DBAPIError.instance(None, None, exc, psycopg.Error) from exc

    def end(self) -> None:
        """Close the session: the server drops every lock it holds."""
        with self.mutex:
            self._end()

    def _end(self) -> None:
        self.alive = False
        with contextlib.suppress(psycopg.Error):
            self.conn.close()


@dataclass
class _Gate:
    """This process's exclusion of one ID: one holder or waiter at a time."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0


class LockSessions:
    """This process's lock sessions on one database, and its per-ID gates."""

    def __init__(self, url: sa.URL, bounds: PgBounds, location: str, size: int) -> None:
        _, params = PGDialect_psycopg().create_connect_args(url)  # type: ignore[no-untyped-call]
        self._params: dict[str, Any] = {**params, **bounds.psycopg_connect_args()}
        self.client_timeout = bounds.client_timeout
        self.location = location
        self.size = size
        self.users = 0
        self._reset()

    def _reset(self) -> None:
        """Fresh state (also in a forked child, which must never use the parent's sessions)."""
        self._guard = threading.Lock()
        self._slots: list[LockSession | None] = [None] * self.size
        self._openers = [threading.Lock() for _ in range(self.size)]
        self._gates: dict[str, _Gate] = {}

    def session_for(self, result_id: str) -> LockSession:
        """The live session that locks ``result_id`` (a new one replaces one that ended).

        Raises:
            StoreUnavailableError: a new session could not be opened.
        """
        slot = id_hash(result_id) % self.size
        session = self._slots[slot]
        if session is not None and session.alive:
            return session
        with self._openers[slot]:
            session = self._slots[slot]
            if session is None or not session.alive:
                session = self._slots[slot] = LockSession(self._connect(), self.client_timeout)
            return session

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(**self._params, autocommit=True)
        except psycopg.Error as exc:
            raise StoreUnavailableError(
                f"cannot open a lock session on {self.location}: {exc}"
            ) from exc
        try:
            with WATCHDOG.bounded(conn, conn, self.client_timeout):
                conn.execute(_NO_IDLE_TIMEOUTS)
        except psycopg.Error as exc:
            with contextlib.suppress(psycopg.Error):
                conn.close()
            raise StoreUnavailableError(
                f"cannot open a lock session on {self.location}: {exc}"
            ) from exc
        return conn

    @contextlib.contextmanager
    def gate(self, result_id: str, deadline: float, timeout: float) -> Iterator[None]:
        """Hold this process's gate of ``result_id`` (no other thread of it waits or
        holds the same ID in a session meanwhile).

        Raises:
            LockTimeoutError: not passed by ``deadline``.
        """
        with self._guard:
            gate = self._gates.setdefault(result_id, _Gate())
            gate.users += 1
        try:
            wait = min(max(0.0, deadline - time.monotonic()), threading.TIMEOUT_MAX)
            if not gate.lock.acquire(timeout=wait):
                raise lock_timed_out(result_id, self.location, timeout)
            try:
                yield
            finally:
                gate.lock.release()
        finally:
            with self._guard:
                gate.users -= 1
                if gate.users == 0 and self._gates.get(result_id) is gate:
                    del self._gates[result_id]

    def close(self) -> None:
        """End every session (their locks go with them)."""
        with self._guard:
            slots, self._slots = self._slots, [None] * self.size
        for session in slots:
            if session is not None:
                session.end()


#: This process's lock sessions, by database URL and connect arguments.
_SESSIONS: dict[str, LockSessions] = {}
_SESSIONS_GUARD = threading.Lock()
#: Sessions a forked child inherited: kept referenced, never closed (closing one would
#: end the parent's session, and its locks, on the shared socket).
_INHERITED: list[list[LockSession | None]] = []


def open_lock_sessions(url: sa.URL, bounds: PgBounds, location: str) -> LockSessions:
    """This process's ``LockSessions`` on ``url``, with one more user (each user calls
    ``close_lock_sessions`` once)."""
    key = f"{url.render_as_string(hide_password=False)} {bounds!r}"
    with _SESSIONS_GUARD:
        sessions = _SESSIONS.get(key)
        if sessions is None:
            sessions = _SESSIONS[key] = LockSessions(url, bounds, location, PG_LOCK_SESSIONS)
        sessions.users += 1
        return sessions


def close_lock_sessions(sessions: LockSessions) -> None:
    """One user fewer; the last one ends the sessions."""
    with _SESSIONS_GUARD:
        sessions.users -= 1
        if sessions.users > 0:
            return
        for key, value in list(_SESSIONS.items()):
            if value is sessions:
                del _SESSIONS[key]
    sessions.close()


def _forget_after_fork() -> None:
    global _SESSIONS_GUARD
    _SESSIONS_GUARD = threading.Lock()
    for sessions in _SESSIONS.values():
        _INHERITED.append(sessions._slots)
        sessions._reset()


os.register_at_fork(after_in_child=_forget_after_fork)


class PgLock:
    """A session advisory lock on one ID, held for a ``with`` block; yields its handle.

    Raises (on entry):
        LockTimeoutError: not acquired within ``timeout`` seconds.
        StoreUnavailableError: the server cannot be reached.
    Raises (on exit):
        LockLostError: the lock's session ended while held and nothing was written
            under it, so another worker may have run the same block.
    """

    def __init__(
        self,
        backend: SqlBackend,
        sessions: LockSessions,
        rows: PsycopgRowRunner,
        result_id: str,
        timeout: float,
    ) -> None:
        self.backend = backend
        self.sessions = sessions
        self.rows = rows
        self.result_id = result_id
        self.timeout = timeout
        self.location = backend.location
        self._stack = contextlib.ExitStack()
        self._held: PgHeldLock | None = None

    def __enter__(self) -> PgHeldLock:
        deadline = time.monotonic() + self.timeout
        with contextlib.ExitStack() as stack:
            stack.enter_context(self.sessions.gate(self.result_id, deadline, self.timeout))
            session = self._acquire(deadline)
            self._stack = stack.pop_all()
        self._held = PgHeldLock(self.backend, self.result_id, session, self.rows)
        return self._held

    def _acquire(self, deadline: float) -> LockSession:
        pause = LOCK_POLL_SECONDS
        reopened = False
        while True:
            session = self.sessions.session_for(self.result_id)
            try:
                acquired = session.run(lambda c: _scalar(c, _TRY_LOCK, self.result_id))
            except SessionEnded:
                # Found dead at this try (it ended while idle): a new session tries at
                # least once, even with timeout=0.
                if reopened and time.monotonic() >= deadline:
                    raise StoreUnavailableError(
                        f"the lock session on {self.location} ended while trying to lock "
                        f"{self.result_id!r}"
                    ) from None
                reopened = True
                continue
            except sa.exc.DBAPIError as exc:
                raise mapped_error(exc, self.location) from exc
            if acquired:
                return session
            left = deadline - time.monotonic()
            if left <= 0:
                raise lock_timed_out(self.result_id, self.location, self.timeout)
            time.sleep(min(pause, left))
            pause = min(pause * 2, PG_LOCK_POLL_MAX_SECONDS)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        held, self._held = self._held, None
        try:
            if held is not None:
                held.release(failed=exc is not None)
        finally:
            self._stack.close()  # the gate: the next thread of this process may try


class PgHeldLock(HeldLock):
    """A PostgreSQL advisory lock while held: writes run in the session holding it."""

    fences_writes = True

    def __init__(
        self, backend: SqlBackend, result_id: str, session: LockSession, rows: PsycopgRowRunner
    ) -> None:
        super().__init__(backend, result_id)
        self.session = session
        self.rows = rows
        self._released = False
        self._wrote = False

    def lost_reason(self) -> str | None:
        if self._released:
            return "it was released"
        if not self.session.alive:
            return "its database session ended"
        return None

    def _insert(self, result_id: str, record: Record) -> Record | None:
        return self._write(lambda rows: run_plan(insert_plan(result_id, record), rows))

    def _upsert(self, result_id: str, record: Record) -> None:
        self._write(lambda rows: run_plan(upsert_plan(result_id, record), rows))

    def _delete(self, result_id: str) -> bool:
        return self._write(lambda rows: run_plan(delete_plan(result_id), rows))

    def _write(self, work: Callable[[RowTransaction], T]) -> T:
        """``work`` in one transaction in the lock's session, retried as ``Retry`` says.

        Raises:
            LockLostError: the session is gone (or the lock released); nothing written.
            StoreError: any other driver failure, mapped by ``mapped_error``.
        """
        self.check()

        def attempt(retry: Retry) -> T:
            outcomes = self.session.run(lambda c: self.rows.transaction_on(c, [work], retry))
            outcome: T = outcomes[0]
            return outcome

        try:
            result = retrying(attempt, Retry(write=True, busy_timeout=0.0, location=self.location))
        except SessionEnded as exc:
            raise self.lost_error("its database session ended") from exc
        self._wrote = True
        return result

    def release(self, *, failed: bool) -> None:
        """Unlock; raise ``LockLostError`` when the lock was lost and nothing was
        written under it (unless the block ``failed``: its error wins)."""
        if self._released:
            return
        try:
            released = self.session.run(lambda c: _scalar(c, _UNLOCK, self.result_id))
        except SessionEnded:
            released = False
        except sa.exc.DBAPIError:
            # The session lives but could not unlock: end it, or the lock would outlive us.
            self.session.end()
            released = False
        self._released = True
        if not released and not failed and not self._wrote:
            raise LockLostError(
                f"lock on {self.result_id!r} in {self.location} was lost while held (its "
                "database session ended); another worker may have run the same work"
            )


def _scalar(conn: psycopg.Connection[Any], sql: str, result_id: str) -> Any:
    row = conn.execute(sql, (result_id,)).fetchone()
    return None if row is None else row[0]
