"""Store URLs: the one place that parses and masks them (a leaf: it imports no backend;
``results_flow.backends.registry`` maps a URL's scheme to its backend).

A bare path (no ``://``) is a folder store, except a path ending in ``.db``,
``.sqlite`` or ``.sqlite3`` that is not an existing folder: that is a SQLite file.
``mask_url`` is the only function that makes a URL fit for messages: it hides the
password and every query value but those of ``SHOWN_QUERY_KEYS``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import unquote, urlsplit

from results_flow.errors import UnsupportedStoreUrlError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

#: Bare paths with these suffixes open SQLite, not a folder store.
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")

# Schemes whose URLs never carry credentials: their path may hold an "@".
_LOCAL_SCHEMES = ("file", "sqlite", "memory")

#: Query keys whose values are shown in messages: settings known to hold no secret.
#: Every other key's value (``aws_secret_access_key``, ``client_secret``, ``sas_token``,
#: ``password``, a key never seen before ...) is shown as ``***``.
SHOWN_QUERY_KEYS = frozenset(
    {
        # object stores (obstore settings and client options, with their aws_ forms)
        "endpoint",
        "aws_endpoint",
        "aws_endpoint_url",
        "region",
        "aws_region",
        "aws_default_region",
        "bucket",
        "allow_http",
        "allow_invalid_certificates",
        "skip_signature",
        "virtual_hosted_style_request",
        "connect_timeout",
        "read_timeout",
        "pool_idle_timeout",
        "timeout",
        # results_flow's own, PostgreSQL's and SQLite's harmless settings
        "concurrency",
        "lease_ttl",
        "sslmode",
        "application_name",
        "target_session_attrs",
        "mode",
        "cache",
        "immutable",
        "uri",
        "check_same_thread",
    }
)


def mask_url(url: object) -> str:
    """A store URL fit for messages, logs and reprs: any password shown as ``***``.

    Works on URLs that do not parse (unknown scheme, bad driver name, unescaped ``@``
    in the password, non-numeric port): everything between ``user:`` and the last
    ``@`` of the authority is hidden, as are secrets passed as query parameters.
    """
    if not isinstance(url, str | os.PathLike):
        render = getattr(url, "render_as_string", None)  # a SQLAlchemy URL
        url = render(hide_password=True) if callable(render) else str(url)
    text = os.fspath(url) if isinstance(url, os.PathLike) else url
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    if scheme.split("+", 1)[0].lower() in _LOCAL_SCHEMES:
        end = min((i for i in (rest.find(c) for c in "/?#") if i != -1), default=len(rest))
    else:  # a password may hold "/", "?" or "#" unescaped: mask up to the last "@"
        end = len(rest)
    at = rest.rfind("@", 0, end)
    query_from = 0
    if at != -1:
        user, colon, _ = rest[:at].partition(":")
        if colon:
            rest = f"{user}:***{rest[at:]}"
            query_from = len(user) + 5  # just after the "@"
    after = rest[query_from:]
    cut = min((i for i in (after.find("?"), after.find("#")) if i != -1), default=len(after))
    return scheme + sep + rest[:query_from] + after[:cut] + _masked_query(after[cut:])


def _masked_query(tail: str) -> str:
    """A URL's ``?query#fragment`` with every query value ``***`` but those of
    ``SHOWN_QUERY_KEYS`` (unless the value holds a user: an ``@``), and any fragment
    ``***``."""
    query, hash_, fragment = tail.partition("#")
    shown = []
    for item in re.split(r"([?&;])", query):
        key, equals, value = item.partition("=")
        if equals and (
            unquote(key).strip().lower() not in SHOWN_QUERY_KEYS or "@" in unquote(value)
        ):
            item = f"{key}=***"
        shown.append(item)
    return "".join(shown) + hash_ + ("***" if fragment else "")


def scheme_of(url: str) -> str | None:
    """The lower-case scheme of ``url`` without its ``+driver``, or None for a bare path."""
    scheme, sep, _ = url.partition("://")
    return scheme.split("+", 1)[0].lower() if sep else None


def is_store_url(location: object) -> bool:
    """Whether ``location`` is a string with a scheme (``x://``), not a bare path."""
    return isinstance(location, str) and "://" in location


def file_path(url: str) -> str:
    """The folder a ``file://`` URL names.

    Raises:
        UnsupportedStoreUrlError: no folder in the URL.
    """
    _refuse_authority(url, "file", "file:///path/to/store")
    rest = url.partition("://")[2]
    path = unquote(urlsplit(url).path) or rest
    if not path.strip("/"):
        raise UnsupportedStoreUrlError(
            f"{mask_url(url)!r}: give file:// a folder (file:///path/to/store)"
        )
    return path


def sqlite_path(url: str) -> str:
    """The database file a ``sqlite:///`` URL names.

    Raises:
        UnsupportedStoreUrlError: no file, or ``:memory:``.
    """
    _refuse_authority(url, "SQLite", "sqlite:///path/results.db")
    rest = url.partition("://")[2]
    path = unquote(rest[1:] if rest.startswith("/") else rest).split("?", 1)[0]
    if not path or path == ":memory:":
        raise UnsupportedStoreUrlError(
            f"{mask_url(url)!r}: give SQLite a file (sqlite:///path/results.db); "
            "use memory:// for memory"
        )
    return path


def database_url(url: str | URL, mode: Literal["sync", "async"] = "sync") -> str:
    """The SQLAlchemy URL of a SQLite or PostgreSQL store, with the driver results_flow
    uses: psycopg 3 (sync) or asyncpg (async) for PostgreSQL, aiosqlite for async SQLite.

    Raises:
        UnsupportedStoreUrlError: unparseable, a non-numeric port, an unescaped ``@``
            in the password, no database named, or not SQLite or PostgreSQL.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    shown = mask_url(url)
    try:
        parsed = make_url(url)
    except ValueError:  # int(port)
        raise UnsupportedStoreUrlError(
            f"malformed database URL {shown!r}: the port must be a number"
        ) from None
    except ArgumentError:
        raise UnsupportedStoreUrlError(
            f"malformed database URL {shown!r}: expected dialect[+driver]://user:password@host/db"
        ) from None
    if parsed.host and "@" in parsed.host:
        raise UnsupportedStoreUrlError(
            f"malformed database URL {shown!r}: escape '@' in the password as %40"
        )
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        if not parsed.database:
            raise UnsupportedStoreUrlError(f"{shown!r}: name the database (postgresql://host/db)")
        driver = "postgresql+asyncpg" if mode == "async" else "postgresql+psycopg"
    elif backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise UnsupportedStoreUrlError(
                f"{shown!r}: give SQLite a file (sqlite:///path/results.db)"
            )
        driver = "sqlite+aiosqlite" if mode == "async" else "sqlite"
    else:
        raise UnsupportedStoreUrlError(f"{shown}: SQL stores support sqlite and postgresql")
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def local_store_path(url: str) -> tuple[Literal["sqlite", "folder"], Path] | None:
    """Where a SQLite or file store (URL or bare path) keeps its records on this
    machine: its database file or its folder, as written (``~`` not expanded); None
    for any other store.

    Raises:
        UnsupportedStoreUrlError: a ``file://`` or ``sqlite://`` URL that names no path.
    """
    scheme = scheme_of(url)
    if scheme is None and is_sqlite_path(url):
        return "sqlite", Path(url)
    if scheme is None or scheme == "file":
        return "folder", Path(url if scheme is None else file_path(url))
    if scheme == "sqlite":
        return "sqlite", Path(sqlite_path(url))
    return None


def _refuse_authority(url: str, kind: str, example: str) -> None:
    """A local store's URL names no user, password or other host: one that did was
    quietly read as a path (a folder named after the password) or as this machine.

    Raises:
        UnsupportedStoreUrlError: the URL has a user, a password or a host.
    """
    authority = url.partition("://")[2].partition("/")[0]
    if "@" in authority or authority not in ("", "localhost"):
        raise UnsupportedStoreUrlError(
            f"{mask_url(url)!r}: a {kind} store is a local path and its URL takes no "
            f"user, password or host ({example})"
        )


def checked_text(url: object) -> str:
    if isinstance(url, os.PathLike):
        url = os.fspath(url)
    if not isinstance(url, str) or not url.strip():
        shown = mask_url(url) if isinstance(url, str) else type(url).__name__
        raise UnsupportedStoreUrlError(f"store URL must be a non-empty string, got {shown!r}")
    return url


def is_sqlite_path(path: str) -> bool:
    return path.lower().endswith(SQLITE_SUFFIXES) and not Path(path).expanduser().is_dir()
