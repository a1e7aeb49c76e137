"""Bounded waits for PostgreSQL: a connect timeout, a statement timeout, TCP keepalives.

No store call may block forever, not even against a server that accepts TCP and then
never answers. Each bound has a default, may be set in the URL's query
(``postgresql://host/db?connect_timeout=5&statement_timeout=30``) and by keyword
(``PostgresBackend(url, connect_timeout=5, statement_timeout=30)``); a keyword wins
over the URL. Seconds throughout; ``statement_timeout=0`` means no statement timeout.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import URL

from results_flow.errors import UnsupportedStoreUrlError
from results_flow.settings import PG_CONNECT_TIMEOUT, PG_STATEMENT_TIMEOUT

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
        if self.statement_timeout > 0:
            # A little over the server's bound, so the server's clearer error wins.
            args["command_timeout"] = self.statement_timeout + self.connect_timeout
        return args

    @property
    def statement_ms(self) -> int:
        return math.ceil(self.statement_timeout * 1000)


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
