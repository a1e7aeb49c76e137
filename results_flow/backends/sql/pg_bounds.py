"""Bounded waits for PostgreSQL: a connect timeout, a statement timeout, TCP keepalives,
and a client-side bound on every call on an open connection.

No store call may block forever, not even against a server that accepts TCP and then
never answers. Each bound has a default, may be set in the URL's query
(``postgresql://host/db?connect_timeout=5&statement_timeout=30``) and by keyword
(``PostgresBackend(url, connect_timeout=5, statement_timeout=30)``); a keyword wins
over the URL. Seconds throughout; ``statement_timeout=0`` means no statement timeout.

``statement_timeout`` is the server's bound: it never fires when the path to the server
stalls (a hung proxy or pooler whose kernel still acknowledges, so keepalives stay
quiet). The client bounds each call itself at ``client_timeout`` (the statement timeout
plus ``PG_CLIENT_MARGIN``): asyncpg by its ``command_timeout``, psycopg by ``WATCHDOG``,
which shuts down the socket of a connection whose call outlives its bound, so the call
fails at once as on a dropped connection (``StoreUnavailableError``).
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL

from results_flow.errors import UnsupportedStoreUrlError
from results_flow.settings import PG_CLIENT_MARGIN, PG_CONNECT_TIMEOUT, PG_STATEMENT_TIMEOUT

#: libpq's TCP keepalives: a silent peer is declared dead after about 60 s.
DEFAULT_KEEPALIVES: dict[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}

#: SQLSTATEs that mean the store could not answer (not that the request was wrong):
#: query_canceled (statement timeout), the admin_shutdown family, and class 08.
_UNAVAILABLE_STATES = ("57014", "57P01", "57P02", "57P03")


@dataclass(frozen=True)
class PgBounds:
    """The waits of one PostgreSQL store, in seconds."""

    connect_timeout: float = PG_CONNECT_TIMEOUT
    statement_timeout: float = PG_STATEMENT_TIMEOUT
    keepalives: tuple[tuple[str, int], ...] = tuple(DEFAULT_KEEPALIVES.items())

    @classmethod
    def from_url(
        cls,
        url: URL,
        *,
        connect_timeout: float | None = None,
        statement_timeout: float | None = None,
    ) -> tuple[PgBounds, URL]:
        """The bounds a URL's query and the keywords ask for, and the URL without them.

        Raises:
            UnsupportedStoreUrlError: a bound that is not a number of seconds >= 0.
        """
        query = dict(url.query)
        keys = ("connect_timeout", "statement_timeout", *DEFAULT_KEEPALIVES)
        given = {key: query.pop(key) for key in keys if key in query}
        keepalives = dict(DEFAULT_KEEPALIVES)
        for key in DEFAULT_KEEPALIVES:
            if key in given:
                keepalives[key] = int(_seconds(key, given[key]))
        bounds = cls(
            connect_timeout=_pick("connect_timeout", connect_timeout, given),
            statement_timeout=_pick("statement_timeout", statement_timeout, given),
            keepalives=tuple(keepalives.items()),
        )
        return bounds, url.set(query=query)

    def psycopg_connect_args(self) -> dict[str, Any]:
        """``connect_args`` for SQLAlchemy's psycopg dialect."""
        args: dict[str, Any] = dict(self.keepalives)
        if self.connect_timeout > 0:
            # libpq counts whole seconds (and treats 1 as 2); round up, never down to "none".
            args["connect_timeout"] = max(1, math.ceil(self.connect_timeout))
        # Times come back in ``datetime.UTC`` itself, which the read path keeps as it is;
        # in the server's zone each needed ``astimezone`` (0.4 s per 100k records read).
        args["options"] = f"-c statement_timeout={self.statement_ms} -c TimeZone=UTC"
        return args

    def asyncpg_connect_args(self) -> dict[str, Any]:
        """``connect_args`` for SQLAlchemy's asyncpg dialect (asyncpg has no keepalive
        settings; its ``command_timeout`` bounds each statement on the client too)."""
        server = {"statement_timeout": str(self.statement_ms), "TimeZone": "UTC"}
        args: dict[str, Any] = {"server_settings": server}
        if self.connect_timeout > 0:
            args["timeout"] = self.connect_timeout
        if self.client_timeout is not None:
            args["command_timeout"] = self.client_timeout
        return args

    @property
    def statement_ms(self) -> int:
        return math.ceil(self.statement_timeout * 1000)

    @property
    def client_timeout(self) -> float | None:
        """Seconds the client waits for any one call on an open connection: a little
        over the server's bound, so the server's clearer error wins; None when the
        statement timeout is off (statements may then run as long as they need)."""
        if self.statement_timeout <= 0:
            return None
        return self.statement_timeout + PG_CLIENT_MARGIN


class Watchdog:
    """Cuts the connection of a psycopg call that outlives its client-side bound.

    A call is armed with a deadline before it starts and disarmed when it ends; one
    thread per process wakes at the earliest deadline and shuts down the socket of
    each connection still armed past its own, which ends the blocked call with the
    driver's "connection lost" error (psycopg has no client-side timeout of its own).
    Arming costs a dictionary entry under a lock; the thread wakes only for deadlines.
    """

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._armed: dict[int, tuple[float, Any, float]] = {}
        self._wake: float | None = None
        self._thread: threading.Thread | None = None
        #: Connections cut, with the bound they outlived (the error names it).
        self._cut: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

    def arm(self, key: object, conn: Any, seconds: float) -> None:
        """Cut ``conn`` unless ``disarm(key)`` comes within ``seconds``."""
        deadline = time.monotonic() + seconds
        with self._cond:
            self._armed[id(key)] = (deadline, conn, seconds)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="results-flow-pg-watchdog", daemon=True
                )
                self._thread.start()
            if self._wake is None or deadline < self._wake:
                self._cond.notify()

    def disarm(self, key: object) -> None:
        with self._cond:
            self._armed.pop(id(key), None)

    @contextlib.contextmanager
    def bounded(self, key: object, conn: Any, seconds: float | None) -> Iterator[None]:
        """Arm for the ``with`` block (no bound when ``seconds`` is None)."""
        if seconds is None:
            yield
            return
        self.arm(key, conn, seconds)
        try:
            yield
        finally:
            self.disarm(key)

    def _watch(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for key, (deadline, conn, seconds) in list(self._armed.items()):
                    if deadline <= now:
                        del self._armed[key]
                        self._cut[conn] = seconds
                        _cut(conn)  # under the lock: its call cannot end and rearm meanwhile
                self._wake = min((d for d, _, _ in self._armed.values()), default=None)
                self._cond.wait(None if self._wake is None else self._wake - now)

    def cut_after(self, conn: Any) -> float | None:
        """The bound in seconds whose passing made this watchdog cut ``conn``, or None."""
        with self._cond:
            return self._cut.get(conn)


#: The process's one watchdog.
WATCHDOG = Watchdog()


def _cut(conn: Any) -> None:
    """Shut down the socket of a psycopg connection (a copy of its descriptor: libpq
    keeps its own and sees the end of the stream); nothing if it is already closed."""
    import psycopg

    try:
        fd = conn.pgconn.socket
    except psycopg.Error:
        return  # closed: nothing to cut
    with contextlib.suppress(OSError):
        sock = socket.socket(fileno=os.dup(fd))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()


def bound_psycopg_pool(engine: sa.Engine, bounds: PgBounds) -> None:
    """Arm every connection of ``engine``'s pool from checkout to checkin (each
    statement renews its deadline), so no call on a store connection outlives
    ``bounds.client_timeout``."""
    seconds = bounds.client_timeout
    if seconds is None:
        return

    def checkout(dbapi_connection: Any, *_: Any) -> None:
        WATCHDOG.arm(dbapi_connection, dbapi_connection, seconds)

    def renew(conn: sa.Connection, *_: Any) -> None:
        dbapi_connection = conn.connection.dbapi_connection
        WATCHDOG.arm(dbapi_connection, dbapi_connection, seconds)

    def release(dbapi_connection: Any, *_: Any) -> None:
        if dbapi_connection is not None:  # None: invalidated, disarmed then
            WATCHDOG.disarm(dbapi_connection)

    event.listen(engine, "checkout", checkout)
    event.listen(engine, "before_cursor_execute", renew)
    event.listen(engine, "checkin", release)
    event.listen(engine, "invalidate", release)


def is_unavailable(exc: BaseException) -> bool:
    """Whether a driver error means the server did not answer in time or went away."""
    orig = getattr(exc, "orig", None) or exc
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if not isinstance(state, str):
        return False
    return state in _UNAVAILABLE_STATES or state.startswith("08")


def _pick(key: str, keyword: float | None, given: Mapping[str, object]) -> float:
    if keyword is not None:
        return _seconds(key, keyword)
    if key in given:
        return _seconds(key, given[key])
    defaults = {
        "connect_timeout": PG_CONNECT_TIMEOUT,
        "statement_timeout": PG_STATEMENT_TIMEOUT,
    }
    return defaults[key]


def _seconds(key: str, value: object) -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise UnsupportedStoreUrlError(
            f"PostgreSQL {key} must be a number of seconds >= 0, got {value!r}"
        )
    return seconds
