"""Which backend a store URL opens: one table, ``{scheme: factory}``.

- built in: ``file://``, ``sqlite:///``, ``postgresql://`` (``postgres://``), ``memory://``,
  ``s3://`` (``gs://``, ``az://``);
- ``register_backend(scheme, factory)`` adds one from Python;
- another package adds one through the ``results_flow.backends`` entry-point group
  (``s3 = "my_pkg.store:S3Backend"``), loaded the first time an unknown scheme is seen.

A factory is a ``ResultsBackend`` class (its ``from_url`` is called), any callable
taking the URL, or a lazy ``"module:Attr"`` string imported only when its scheme is
used, so an optional backend costs nothing until then. URLs themselves are read and
masked in ``results_flow.urls``.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from results_flow.errors import StoreUnavailableError, UnsupportedStoreUrlError
from results_flow.urls import (
    checked_text,
    database_url,
    file_path,
    is_sqlite_path,
    local_store_path,
    mask_url,
    scheme_of,
    sqlite_path,
)

if TYPE_CHECKING:
    from results_flow.backends.base import AsyncResultsBackend, ResultsBackend

#: The entry-point group through which another package adds a URL scheme.
ENTRY_POINT_GROUP = "results_flow.backends"

BackendFactory: TypeAlias = "Callable[[str], ResultsBackend] | str"

_lock = threading.Lock()
_factories: dict[str, BackendFactory] = {}
_extras: dict[str, str] = {}


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


def backend_from_url(url: str | os.PathLike[str]) -> ResultsBackend:
    """Open the backend a store URL (or a bare path) names.

    Raises:
        UnsupportedStoreUrlError: empty or malformed URL, or an unknown scheme.
        StoreUnavailableError: the store cannot be opened or reached, or its backend's
            optional dependency is not installed.
    """
    text = checked_text(url)
    scheme = scheme_of(text)
    if scheme is None:
        if is_sqlite_path(text):
            from results_flow.backends.sql.store import SqliteBackend

            return SqliteBackend(text)
        from results_flow.backends.file.store import FileBackend

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
    text = checked_text(url)
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
        from results_flow.backends.file.store import INTERNAL_DIR

        folder = path.expanduser()
        return None if (folder / INTERNAL_DIR).is_dir() else folder
    return None if path.expanduser().is_file() else path


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


register_backend("file", "results_flow.backends.file.store:FileBackend")
register_backend("sqlite", "results_flow.backends.sql.store:SqliteBackend")
register_backend(("postgresql", "postgres"), "results_flow.backends.sql.store:PostgresBackend")
register_backend("memory", "results_flow.backends.memory:MemoryBackend")
register_backend(
    ("s3", "gs", "az"), "results_flow.backends.object_store.store:ObjectStoreBackend", extra="s3"
)
