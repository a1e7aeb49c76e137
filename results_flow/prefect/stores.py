"""Which store a results_task or block talks to: one manager per store URL per process.

A task shipped to another process (process pools, Dask workers) cannot take its
manager along, since engines and file handles do not pickle; it takes the store's
URL instead (``StoreRef``) and opens the store there once.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from results_flow.backends.file import FileBackend
from results_flow.backends.sql import SqlBackend
from results_flow.backends.sql_schema import DEFAULT_TABLE
from results_flow.backends.urls import SCHEMES
from results_flow.errors import ResultsTaskError, UnsupportedStoreUrlError
from results_flow.manager import ResultsManager
from results_flow.settings import default_store_url

_lock = threading.Lock()
_managers: dict[tuple[int, str], ResultsManager] = {}


def manager_for_url(url: str) -> ResultsManager:
    """The manager of ``url`` in this process, opened on first use.

    Raises:
        UnsupportedStoreUrlError: unknown scheme or malformed URL.
        StoreUnavailableError: the store cannot be opened or reached.
    """
    key = (os.getpid(), url)
    with _lock:
        manager = _managers.get(key)
        if manager is None:
            manager = ResultsManager.from_url(url)
            _managers[key] = manager
        return manager


def url_of(manager: ResultsManager) -> str | None:
    """A URL that reopens ``manager``'s store in another process, or None (memory, custom)."""
    backend = manager.backend
    if isinstance(backend, SqlBackend):
        if backend.table.name != DEFAULT_TABLE or backend.table.schema is not None:
            return None
        return backend.url
    if isinstance(backend, FileBackend):
        return f"file://{backend.root}"
    return None


class StoreRef:
    """A picklable handle on a store: a manager here, its URL in other processes.

    ``StoreRef()`` means the default store (``RESULTS_FLOW_STORE``), looked up where
    the task runs.
    """

    def __init__(self, store: ResultsManager | str | None = None) -> None:
        self._manager = store if isinstance(store, ResultsManager) else None
        self._url = store if isinstance(store, str) else None

    def manager(self) -> ResultsManager:
        """The manager to use in this process.

        Raises:
            UnsupportedStoreUrlError: the URL (or ``RESULTS_FLOW_STORE``) is malformed.
            StoreUnavailableError: the store cannot be opened or reached.
        """
        if self._manager is not None:
            return self._manager
        return manager_for_url(self._url or default_store_url())

    def describe(self) -> str:
        """The store's location for messages."""
        if self._manager is not None:
            return self._manager.backend.location
        return self._url or f"{default_store_url()} (default)"

    def __getstate__(self) -> dict[str, Any]:
        if self._manager is None:
            return {"url": self._url}
        url = url_of(self._manager)
        if url is None:
            raise ResultsTaskError(
                f"the store {self._manager.backend.location} cannot be reopened in another "
                "process (a memory:// store or a custom table); run the flow with a thread "
                "pool, or give the task a file://, sqlite:/// or postgresql:// store"
            )
        return {"url": url}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._manager = None
        self._url = state["url"]


def check_store_url(url: str) -> str:
    """``url`` if it names a store that can keep results across processes, without
    opening it.

    Raises:
        UnsupportedStoreUrlError: empty, malformed, an unknown scheme, or ``memory://``.
    """
    if not isinstance(url, str) or not url.strip():
        raise UnsupportedStoreUrlError(f"store URL must be a non-empty string, got {url!r}")
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url  # a bare path: a FileBackend folder
    base = scheme.split("+", 1)[0].lower()
    if base not in SCHEMES:
        raise UnsupportedStoreUrlError(
            f"unknown store URL scheme {scheme!r} in {safe_text(url)!r}; use one of "
            "file://, sqlite:///, postgresql://"
        )
    if base == "memory":
        raise UnsupportedStoreUrlError(
            f"{url!r}: a memory:// store lives in one process and cannot keep Prefect results"
        )
    if base == "file" and not rest.strip("/"):
        raise UnsupportedStoreUrlError(f"{url!r}: give file:// a folder (file:///path/to/store)")
    if base in ("sqlite", "postgresql", "postgres"):
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise UnsupportedStoreUrlError(
                f"malformed database URL {safe_text(url)!r}: {exc}"
            ) from exc
        if base == "sqlite" and parsed.database in (None, "", ":memory:"):
            raise UnsupportedStoreUrlError(
                f"{url!r}: give SQLite a file (sqlite:///path/results.db)"
            )
        if base != "sqlite" and not parsed.database:
            raise UnsupportedStoreUrlError(
                f"{safe_text(url)!r}: name the database (postgresql://host/db)"
            )
    return url


def safe_text(url: str) -> str:
    """A store URL fit for messages: a database password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url
