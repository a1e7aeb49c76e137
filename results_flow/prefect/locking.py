"""``StoreLockManager``: Prefect's lock manager on the store's own per-ID locks.

Prefect computes a cached task once across workers only under
``isolation_level="SERIALIZABLE"``, which needs a ``LockManager``; Prefect's own are
in-memory (one process) or on a local file system, and its only multi-machine one
needs Redis. This one takes each cache key's lock in a results_flow store instead:
PostgreSQL advisory locks, object-store leases, file and SQLite locks. They die with
their holder, so a killed worker never blocks the next run::

    locks = StoreLockManager("postgresql://db/results")
    policy = RESULT_ID.configure(isolation_level="SERIALIZABLE", lock_manager=locks)

    @task(cache_policy=policy, result_storage=ResultsStorage(store_url=...),
          result_serializer=PydanticSerializer())
    def expensive(x: int) -> Score: ...

Prefect may release a lock in another thread than the one that took it, and names a
holder (its transaction) rather than a thread: each held lock is a ``HeldLock`` kept
here by key and holder, released by whoever Prefect asks to.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from dataclasses import dataclass

import anyio.to_thread
from prefect.locking.protocol import LockManager

from results_flow.errors import InvalidResultIdError, LockTimeoutError
from results_flow.ids import normalize_id
from results_flow.manager import ResultsManager
from results_flow.prefect.stores import StoreRef
from results_flow.settings import STORE_LOCK_TIMEOUT

#: The ID folder of the locks Prefect takes on its cache keys.
LOCK_FOLDER = "prefect-locks"


@dataclass
class _Holding:
    holder: str
    lock: contextlib.AbstractContextManager[object]
    timer: threading.Timer | None


class StoreLockManager(LockManager):
    """A Prefect ``LockManager`` whose locks are a results_flow store's per-ID locks.

    Args:
        store: the store (a URL, a manager, or None for the default store).
    """

    def __init__(self, store: ResultsManager | str | None = None) -> None:
        self.store = StoreRef(store)
        self._guard = threading.Lock()
        self._held: dict[str, _Holding] = {}

    def __getstate__(self) -> dict[str, StoreRef]:
        return {"store": self.store}  # a copy in another process holds none of these locks

    def __setstate__(self, state: dict[str, StoreRef]) -> None:
        self.store = state["store"]
        self._guard = threading.Lock()
        self._held = {}

    def acquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        """Take ``key``'s lock for ``holder``; False when not acquired within the timeout.

        A lock held longer than ``hold_timeout`` is released, as Prefect's own lock
        managers do.
        """
        with self._guard:
            held = self._held.get(key)
            if held is not None and held.holder == holder:
                return True
        wait = STORE_LOCK_TIMEOUT if acquire_timeout is None else acquire_timeout
        lock = self.store.manager().lock(lock_id(key), wait)
        try:
            lock.__enter__()
        except LockTimeoutError:
            return False
        timer = None
        if hold_timeout is not None:
            timer = threading.Timer(hold_timeout, self._expire, (key, holder))
            timer.daemon = True
        with self._guard:
            self._held[key] = _Holding(holder, lock, timer)
        if timer is not None:
            timer.start()
        return True

    async def aacquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        """``acquire_lock`` without blocking the event loop."""
        return await anyio.to_thread.run_sync(
            self.acquire_lock, key, holder, acquire_timeout, hold_timeout
        )

    def release_lock(self, key: str, holder: str) -> None:
        """Release ``key``'s lock held by ``holder``.

        Raises:
            ValueError: ``holder`` does not hold the lock (as Prefect's managers say).
        """
        with self._guard:
            held = self._held.get(key)
            if held is None or held.holder != holder:
                raise ValueError(f"No lock held by {holder} for transaction with key {key}")
            del self._held[key]
        if held.timer is not None:
            held.timer.cancel()
        held.lock.__exit__(None, None, None)

    def is_locked(self, key: str) -> bool:
        """Whether any worker (here or elsewhere) holds ``key``'s lock now."""
        with self._guard:
            if key in self._held:
                return True
        try:
            with self.store.manager().lock(lock_id(key), 0):
                return False
        except LockTimeoutError:
            return True

    def is_lock_holder(self, key: str, holder: str) -> bool:
        """Whether ``holder`` holds ``key``'s lock through this manager."""
        with self._guard:
            held = self._held.get(key)
            return held is not None and held.holder == holder

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """Wait until ``key``'s lock is free; False when still held after ``timeout``."""
        wait = STORE_LOCK_TIMEOUT if timeout is None else timeout
        try:
            with self.store.manager().lock(lock_id(key), wait):
                return True
        except LockTimeoutError:
            return False

    async def await_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """``wait_for_lock`` without blocking the event loop."""
        return await anyio.to_thread.run_sync(self.wait_for_lock, key, timeout)

    def _expire(self, key: str, holder: str) -> None:
        with contextlib.suppress(ValueError):
            self.release_lock(key, holder)


def lock_id(key: str) -> str:
    """The store ID whose lock stands for Prefect's cache ``key``: the key itself under
    ``prefect-locks/`` when it is a valid ID, else a hash of it."""
    try:
        return normalize_id(f"{LOCK_FOLDER}/{key}")
    except InvalidResultIdError:
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{LOCK_FOLDER}/{digest}"
