"""Store URLs to backends: ``file://``, ``sqlite:///``, ``postgresql://``, ``memory://``.

A bare path (no scheme) means a ``FileBackend`` on that folder.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from results_flow.backends.base import AsyncResultsBackend, ResultsBackend, ThreadedAsyncBackend
from results_flow.backends.file import FileBackend
from results_flow.backends.memory import MemoryBackend
from results_flow.backends.sql import PostgresBackend, SqliteBackend
from results_flow.errors import UnsupportedStoreUrlError

SCHEMES = ("file", "sqlite", "postgresql", "postgres", "memory")


def backend_from_url(url: str) -> ResultsBackend:
    """Open the backend a store URL names.

    Raises:
        UnsupportedStoreUrlError: empty URL or unknown scheme.
        StoreUnavailableError: the store cannot be opened or reached.
    """
    if not isinstance(url, str) or not url.strip():
        raise UnsupportedStoreUrlError(f"store URL must be a non-empty string, got {url!r}")
    scheme, _, rest = url.partition("://")
    if not rest and "://" not in url:
        return FileBackend(url)
    base = scheme.split("+", 1)[0].lower()
    if base == "file":
        return FileBackend(unquote(urlsplit(url).path) or rest)
    if base == "sqlite":
        path = rest[1:] if rest.startswith("/") else rest
        if not path or path == ":memory:":
            raise UnsupportedStoreUrlError(
                f"{url!r}: give SQLite a file (sqlite:///path/results.db); use memory:// for memory"
            )
        return SqliteBackend(unquote(path))
    if base in ("postgresql", "postgres"):
        return PostgresBackend("postgresql" + url[len(scheme) :])
    if base == "memory":
        return MemoryBackend(rest)
    raise UnsupportedStoreUrlError(
        f"unknown store URL scheme {scheme!r} in {url!r}; use one of "
        + ", ".join(f"{s}://" for s in SCHEMES if s != "postgres")
    )


def async_backend_from_url(url: str) -> AsyncResultsBackend:
    """The asynchronous backend a store URL names: SQL on the asyncio engine, files
    and memory through worker threads.

    Raises:
        UnsupportedStoreUrlError: empty URL or unknown scheme.
        StoreUnavailableError: the store cannot be opened or reached.
    """
    backend = backend_from_url(url)  # checks the URL; creates the folder, file or table
    async_backend = backend.to_async()
    if not isinstance(async_backend, ThreadedAsyncBackend):
        backend.close()  # the async twin has its own engine
    return async_backend
