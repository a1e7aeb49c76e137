"""Which store a results_task or block talks to: one manager per store URL per process.

A task shipped to another process (process pools, Dask workers) cannot take its
manager along, since engines and file handles do not pickle; it takes the store's
URL instead (``StoreRef``) and opens the store there once.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from results_flow.errors import ResultsTaskError
from results_flow.manager import ResultsManager
from results_flow.settings import default_store_url
from results_flow.urls import mask_url

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


class StoreRef:
    """A picklable handle on a store: a manager here, its URL in other processes.

    ``StoreRef()`` means the default store (``RESULTS_FLOW_STORE``), looked up where
    the task runs.
    """

    def __init__(self, store: ResultsManager | str | None = None) -> None:
        self._manager = store if isinstance(store, ResultsManager) else None
        self._url = store if isinstance(store, str) else None
        self._unreachable: str | None = None  # why a copy in another process has no store

    def manager(self) -> ResultsManager:
        """The manager to use in this process.

        Raises:
            UnsupportedStoreUrlError: the URL (or ``RESULTS_FLOW_STORE``) is malformed.
            StoreUnavailableError: the store cannot be opened or reached.
            ResultsTaskError: this is a copy, in another process, of a store that
                cannot be reopened there.
        """
        if self._manager is not None:
            return self._manager
        if self._unreachable is not None:
            raise ResultsTaskError(self._unreachable)
        return manager_for_url(self._url or default_store_url())

    def opened(self) -> bool:
        """Whether this handle holds an open manager (given one, not a URL)."""
        return self._manager is not None

    def describe(self) -> str:
        """The store's location for messages."""
        if self._manager is not None:
            return self._manager.backend.location
        return mask_url(self._url or f"{default_store_url()} (default)")

    def portable_url(self) -> str | None:
        """The URL that reopens this store in another process (None: the default store).

        Raises:
            ResultsTaskError: the store cannot be reopened elsewhere (memory://, a custom
                table).
        """
        if self._manager is None:
            return self._url
        url = self._manager.backend.url
        if url is None:
            raise ResultsTaskError(
                f"the store {self._manager.backend.location} cannot be reopened in another "
                "process (a memory:// store or a custom table); run the flow with a thread "
                "pool, or give the task a file://, sqlite:/// or postgresql:// store"
            )
        return url

    def __getstate__(self) -> dict[str, Any]:
        # Never fail here: a flow that merely mentions a memory:// task (in its globals)
        # is pickled with it when another task goes to Dask. Such a copy fails when used.
        try:
            return {"url": self.portable_url(), "unreachable": None}
        except ResultsTaskError as exc:
            return {"url": None, "unreachable": str(exc)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._manager = None
        self._url = state["url"]
        self._unreachable = state.get("unreachable")
