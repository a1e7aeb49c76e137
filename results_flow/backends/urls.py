"""Store URLs: the one place that reads them, masks them and maps them to backends.

A URL's scheme picks a backend from one table, ``{scheme: factory}``:

- built in: ``file://``, ``sqlite:///``, ``postgresql://`` (``postgres://``), ``memory://``;
- ``register_backend(scheme, factory)`` adds one from Python;
- another package adds one through the ``results_flow.backends`` entry-point group
  (``s3 = "my_pkg.store:S3Backend"``), loaded the first time an unknown scheme is seen.

A factory is a ``ResultsBackend`` class (its ``from_url`` is called), any callable
taking the URL, or a lazy ``"module:Attr"`` string imported only when its scheme is
used, so an optional backend costs nothing until then.

A bare path (no ``://``) is a ``FileBackend`` folder, except a path ending in
``.db``, ``.sqlite`` or ``.sqlite3`` that is not an existing folder: that is a SQLite
file. ``mask_url`` is the only function that makes a URL fit for messages: it hides
the password and every query value but those of ``SHOWN_QUERY_KEYS``.
"""

from __future__ import annotations

import importlib
import os
import re
import threading
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeAlias
from urllib.parse import unquote, urlsplit

from results_flow.errors import StoreUnavailableError, UnsupportedStoreUrlError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from results_flow.backends.base import AsyncResultsBackend, ResultsBackend

#: The entry-point group through which another package adds a URL scheme.
ENTRY_POINT_GROUP = "results_flow.backends"

#: Bare paths with these suffixes open SQLite, not a folder store.
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")

BackendFactory: TypeAlias = "Callable[[str], ResultsBackend] | str"

_lock = threading.Lock()
_factories: dict[str, BackendFactory] = {}
_extras: dict[str, str] = {}

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


def register_backend(
    scheme: str | Iterable[str], factory: BackendFactory, *, extra: str | None = None
) -> None:
    """Make ``scheme://`` URLs open ``factory``.

    Args:
        scheme: a URL scheme such as ``"s3"`` (or several); a ``+driver`` suffix in a
            URL is ignored when it is looked up.
        factory: a backend class (its ``from_url`` is used), a callable taking the URL,
            or ``"module:Attr"``, imported the first time the scheme is used.
        extra: the ``results-flow[extra]`` that installs what ``factory`` needs, named
            in the error when its import fails.
    """
    schemes = [scheme] if isinstance(scheme, str) else list(scheme)
    with _lock:
        for name in schemes:
            key = name.lower()
            _factories[key] = factory
            if extra is not None:
                _extras[key] = extra


def registered_schemes() -> list[str]:
    """The schemes a URL may use, entry points included, sorted."""
    _load_entry_points()
    return sorted(_factories)


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


def backend_from_url(url: str | os.PathLike[str]) -> ResultsBackend:
    """Open the backend a store URL (or a bare path) names.

    Raises:
        UnsupportedStoreUrlError: empty or malformed URL, or an unknown scheme.
        StoreUnavailableError: the store cannot be opened or reached, or its backend's
            optional dependency is not installed.
    """
    text = _checked_text(url)
    scheme = scheme_of(text)
    if scheme is None:
        if _is_sqlite_path(text):
            from results_flow.backends.sql import SqliteBackend

            return SqliteBackend(text)
        from results_flow.backends.file import FileBackend

        return FileBackend(text)
    factory = _factory(scheme, text)
    opener = getattr(factory, "from_url", factory)
    backend: ResultsBackend = opener(text)
    return backend


def async_backend_from_url(url: str | os.PathLike[str]) -> AsyncResultsBackend:
    """The asynchronous backend a store URL names: SQL on the asyncio engine, files
    and memory through worker threads.

    Raises:
        UnsupportedStoreUrlError: empty URL or unknown scheme.
        StoreUnavailableError: the store cannot be opened or reached.
    """
    from results_flow.backends.base import ThreadedAsyncBackend

    backend = backend_from_url(url)  # checks the URL; creates the folder, file or table
    async_backend = backend.to_async()
    if not isinstance(async_backend, ThreadedAsyncBackend):
        backend.close()  # the async twin has its own engine
    return async_backend


def check_store_url(url: str) -> str:
    """``url`` if it names a store that can keep results across processes, without
    opening it.

    Raises:
        UnsupportedStoreUrlError: empty, malformed, an unknown scheme, or ``memory://``.
    """
    text = _checked_text(url)
    scheme = scheme_of(text)
    if scheme is None:
        return text  # a bare path: a folder or a SQLite file
    if scheme == "memory":
        raise UnsupportedStoreUrlError(
            f"{mask_url(text)!r}: a memory:// store lives in one process and cannot keep "
            "Prefect results"
        )
    if scheme == "file":
        file_path(text)
    elif scheme == "sqlite":
        sqlite_path(text)
    elif scheme in ("postgresql", "postgres"):
        database_url(text, "sync")
    else:
        _factory(scheme, text)  # a known scheme; its backend checks the rest when opened
    return text


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
    if scheme is None and _is_sqlite_path(url):
        return "sqlite", Path(url)
    if scheme is None or scheme == "file":
        return "folder", Path(url if scheme is None else file_path(url))
    if scheme == "sqlite":
        return "sqlite", Path(sqlite_path(url))
    return None


def missing_local_store(url: str) -> Path | None:
    """The path of a file or SQLite store (URL or bare path) when nothing is there; else
    None, also for URLs that are not local or not valid (opening them names the problem)."""
    if not isinstance(url, str) or not url.strip():
        return None
    try:
        local = local_store_path(url)
    except UnsupportedStoreUrlError:
        return None
    if local is None:
        return None
    kind, path = local
    if kind == "folder":
        from results_flow.backends.file import INTERNAL_DIR

        folder = path.expanduser()
        return None if (folder / INTERNAL_DIR).is_dir() else folder
    return None if path.expanduser().is_file() else path


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


def _checked_text(url: object) -> str:
    if isinstance(url, os.PathLike):
        url = os.fspath(url)
    if not isinstance(url, str) or not url.strip():
        shown = mask_url(url) if isinstance(url, str) else type(url).__name__
        raise UnsupportedStoreUrlError(f"store URL must be a non-empty string, got {shown!r}")
    return url


def _is_sqlite_path(path: str) -> bool:
    return path.lower().endswith(SQLITE_SUFFIXES) and not Path(path).expanduser().is_dir()


def _factory(scheme: str, url: str) -> Callable[[str], ResultsBackend]:
    """The factory for ``scheme``, imported if it was given as ``"module:Attr"``.

    Raises:
        UnsupportedStoreUrlError: no backend serves ``scheme``.
        StoreUnavailableError: the backend's module (or its dependency) cannot be imported.
    """
    factory = _factories.get(scheme)
    if factory is None:
        _load_entry_points()
        factory = _factories.get(scheme)
    if factory is None:
        raise UnsupportedStoreUrlError(
            f"unknown store URL scheme {url.partition('://')[0]!r} in {mask_url(url)!r}; "
            "use one of " + ", ".join(f"{s}://" for s in sorted(_factories) if s != "postgres")
        )
    if isinstance(factory, str):
        factory = _import_factory(scheme, factory)
        with _lock:
            _factories[scheme] = factory
    return factory


def _import_factory(scheme: str, target: str) -> Callable[[str], ResultsBackend]:
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        extra = _extras.get(scheme)
        hint = (
            f"pip install 'results-flow[{extra}]'"
            if extra
            else f"install the package that provides {module_name}"
        )
        raise StoreUnavailableError(
            f"{scheme}:// stores need {exc.name or module_name}, which is not installed: {hint}"
        ) from exc
    try:
        factory: Callable[[str], ResultsBackend] = getattr(module, attribute)
    except AttributeError as exc:
        raise StoreUnavailableError(
            f"{scheme}:// stores: {module_name} has no {attribute!r} (registered as {target!r})"
        ) from exc
    return factory


def _load_entry_points() -> None:
    """Register the schemes other packages declare; a scheme registered in Python wins.

    Called when a scheme is not in the table yet, so a package installed while the
    process runs is found too.
    """
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        with _lock:
            _factories.setdefault(entry_point.name.lower(), entry_point.value)


register_backend("file", "results_flow.backends.file:FileBackend")
register_backend("sqlite", "results_flow.backends.sql:SqliteBackend")
register_backend(("postgresql", "postgres"), "results_flow.backends.sql:PostgresBackend")
register_backend("memory", "results_flow.backends.memory:MemoryBackend")
register_backend(
    ("s3", "gs", "az"), "results_flow.backends.object_store:ObjectStoreBackend", extra="s3"
)
