"""The backend interface: a small set of methods that speak in IDs and records.

Backends never see Pydantic models; the manager validates, in one place. IDs given
to a backend are already normalized by ``results_flow.ids``. Subclass
``ResultsBackend`` and implement the abstract methods; the batch methods have
correct defaults that a fast backend overrides with one round trip.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Self

import anyio.to_thread

from results_flow.backends.call_plans import adrive, delete_plan, drive, find_plan
from results_flow.backends.held import AsyncHeldLock, HeldLock, areplace_through, replace_through
from results_flow.backends.locks import held_in_thread
from results_flow.errors import StoreError, UnsupportedStoreUrlError
from results_flow.query import RecordQuery
from results_flow.records import Record, StoredValue
from results_flow.settings import RECORDS_PER_STEP


class ResultsBackend(ABC):
    """Where records live. ``insert`` and ``upsert`` are each atomic per ID."""

    #: A URL or path that names this store in messages (any password masked).
    location: str = ""

    @classmethod
    def from_url(cls, url: str) -> Self:
        """Open the store ``url`` names (the factory ``register_backend`` calls).

        Raises:
            UnsupportedStoreUrlError: this backend cannot be opened from a URL, or the
                URL is malformed.
        """
        from results_flow.urls import mask_url

        raise UnsupportedStoreUrlError(f"{cls.__name__} cannot be opened from {mask_url(url)!r}")

    @property
    def url(self) -> str | None:
        """A URL that reopens this store in another process, or None (memory, custom).

        It may hold a password: show ``location`` (or ``mask_url(url)``) instead.
        """
        return None

    @abstractmethod
    def read(self, result_id: str) -> Record | None:
        """The record stored under the ID, or None."""

    def read_data(self, result_id: str) -> StoredValue | None:
        """The stored type tag, namespace and data under the ID, or None: all that
        ``get`` validates. The default reads the whole record; a backend whose read of
        the times and metadata costs extra (SQL: four more columns, parsed) reads less.
        """
        return self.read(result_id)

    @abstractmethod
    def insert(self, result_id: str, record: Record) -> Record | None:
        """Store ``record`` unless the ID exists; one critical section.

        Returns:
            None when written; the record already stored (left untouched) otherwise.
        """

    @abstractmethod
    def upsert(self, result_id: str, record: Record) -> None:
        """Store ``record``, replacing any previous one but keeping its creation time."""

    @abstractmethod
    def delete(self, result_id: str) -> bool:
        """Remove the record; True when one was there."""

    @abstractmethod
    def list_ids(self, prefix: str | None = None) -> list[str]:
        """Sorted IDs equal to ``prefix`` or below it by whole segments (all if None)."""

    def exists(self, result_id: str) -> bool:
        """Whether a record is stored under the ID."""
        return self.read(result_id) is not None

    def read_many(self, result_ids: Sequence[str]) -> dict[str, Record]:
        """The stored records among ``result_ids``; missing IDs are left out."""
        found = {}
        for result_id in result_ids:
            record = self.read(result_id)
            if record is not None:
                found[result_id] = record
        return found

    def exists_many(self, result_ids: Sequence[str]) -> set[str]:
        """The IDs among ``result_ids`` that have a stored record."""
        return {result_id for result_id in result_ids if self.exists(result_id)}

    def find_ids(self, query: RecordQuery) -> list[str]:
        """Sorted IDs whose records ``query`` selects (see ``RecordQuery.matches``); a
        record that cannot be decoded matches no query that reads records.

        The default lists the prefix and reads the records in batches; a store with an
        index on the metadata overrides it.
        """
        return drive(find_plan(query, RECORDS_PER_STEP), self)

    def delete_many(self, result_ids: Sequence[str]) -> int:
        """Remove the records of ``result_ids``; how many were there. Not one atomic
        step: each record goes as ``delete`` would, a fast store batches them."""
        return drive(delete_plan(result_ids), self)

    def clear(self) -> None:
        """Remove every record."""
        for result_id in self.list_ids():
            self.delete(result_id)

    def replace_if_unchanged(self, result_id: str, record: Record, seen: Record) -> bool:
        """Store ``record`` in place of ``seen`` (read earlier) only if the ID still holds
        that very version (``Record.same_version``); True when written.

        This default reads and writes under the ID's lock (when the store offers one),
        through the held lock: a writer that holds the lock (a compute-once results_task)
        cannot come in between; a plain ``set`` that takes no lock still can. A store
        with an atomic conditional write overrides it (the SQL stores: the row is read
        ``FOR UPDATE`` in the write's own transaction).
        """
        if not self.offers_locks:
            return replace_through(self, result_id, record, seen)
        with self.lock(result_id) as held:
            return replace_through(held, result_id, record, seen)

    def unfit_reason(self, result_id: str, record: Record) -> str | None:
        """Why this store cannot hold ``record`` (a value over a length limit, a character
        it cannot keep), or None when it fits; copies between stores check it first."""
        return None

    def lock(
        self, result_id: str, timeout: float | None = None
    ) -> contextlib.AbstractContextManager[HeldLock]:
        """An exclusive per-ID lock across threads and processes that dies with its holder.

        ``timeout=None`` waits as long as the backend's own ``lock_timeout``. The block
        gets the ``HeldLock``; a write made for the lock goes through it (see
        ``results_flow.backends.held``).

        Raises:
            StoreError: this backend offers no such lock (see ``offers_locks``).
        """
        raise StoreError(no_locks_message(self))

    @property
    def offers_locks(self) -> bool:
        """Whether ``lock`` is implemented (compute-once needs it; a custom store may not)."""
        return type(self).lock is not ResultsBackend.lock

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release connections and handles; the backend may not be used afterwards."""

    def to_async(self) -> AsyncResultsBackend:
        """The asynchronous twin of this backend (a worker thread unless overridden)."""
        return ThreadedAsyncBackend(self)


class AsyncResultsBackend(ABC):
    """The same interface as coroutines, for ``AsyncResultsManager``."""

    location: str = ""

    @abstractmethod
    async def read(self, result_id: str) -> Record | None:
        """See ``ResultsBackend.read``."""

    async def read_data(self, result_id: str) -> StoredValue | None:
        """See ``ResultsBackend.read_data``."""
        return await self.read(result_id)

    @abstractmethod
    async def insert(self, result_id: str, record: Record) -> Record | None:
        """See ``ResultsBackend.insert``."""

    @abstractmethod
    async def upsert(self, result_id: str, record: Record) -> None:
        """See ``ResultsBackend.upsert``."""

    @abstractmethod
    async def delete(self, result_id: str) -> bool:
        """See ``ResultsBackend.delete``."""

    @abstractmethod
    async def list_ids(self, prefix: str | None = None) -> list[str]:
        """See ``ResultsBackend.list_ids``."""

    @abstractmethod
    async def exists(self, result_id: str) -> bool:
        """See ``ResultsBackend.exists``."""

    @abstractmethod
    async def read_many(self, result_ids: Sequence[str]) -> dict[str, Record]:
        """See ``ResultsBackend.read_many``."""

    @abstractmethod
    async def exists_many(self, result_ids: Sequence[str]) -> set[str]:
        """See ``ResultsBackend.exists_many``."""

    @abstractmethod
    async def clear(self) -> None:
        """See ``ResultsBackend.clear``."""

    async def find_ids(self, query: RecordQuery) -> list[str]:
        """See ``ResultsBackend.find_ids`` (the same default, on this interface's calls)."""
        return await adrive(find_plan(query, RECORDS_PER_STEP), self)

    async def delete_many(self, result_ids: Sequence[str]) -> int:
        """See ``ResultsBackend.delete_many``."""
        return await adrive(delete_plan(result_ids), self)

    async def replace_if_unchanged(self, result_id: str, record: Record, seen: Record) -> bool:
        """See ``ResultsBackend.replace_if_unchanged``. This default takes no lock (an
        async store's lock is optional): a writer may come in between the read and
        the write; the built-in async stores do better."""
        return await areplace_through(self, result_id, record, seen)

    @abstractmethod
    async def close(self) -> None:
        """See ``ResultsBackend.close``."""

    def lock(
        self, result_id: str, timeout: float | None = None
    ) -> contextlib.AbstractAsyncContextManager[AsyncHeldLock]:
        """See ``ResultsBackend.lock``; waiting never blocks the event loop.

        Raises:
            StoreError: this backend offers no such lock.
        """
        raise StoreError(no_locks_message(self))


class ThreadedAsyncBackend(AsyncResultsBackend):
    """Runs a synchronous backend's calls in worker threads, off the event loop."""

    def __init__(self, backend: ResultsBackend) -> None:
        self.backend = backend
        self.location = backend.location

    async def read(self, result_id: str) -> Record | None:
        return await anyio.to_thread.run_sync(self.backend.read, result_id)

    async def read_data(self, result_id: str) -> StoredValue | None:
        return await anyio.to_thread.run_sync(self.backend.read_data, result_id)

    async def insert(self, result_id: str, record: Record) -> Record | None:
        return await anyio.to_thread.run_sync(self.backend.insert, result_id, record)

    async def upsert(self, result_id: str, record: Record) -> None:
        await anyio.to_thread.run_sync(self.backend.upsert, result_id, record)

    async def delete(self, result_id: str) -> bool:
        return await anyio.to_thread.run_sync(self.backend.delete, result_id)

    async def list_ids(self, prefix: str | None = None) -> list[str]:
        return await anyio.to_thread.run_sync(self.backend.list_ids, prefix)

    async def exists(self, result_id: str) -> bool:
        return await anyio.to_thread.run_sync(self.backend.exists, result_id)

    async def read_many(self, result_ids: Sequence[str]) -> dict[str, Record]:
        return await anyio.to_thread.run_sync(self.backend.read_many, result_ids)

    async def exists_many(self, result_ids: Sequence[str]) -> set[str]:
        return await anyio.to_thread.run_sync(self.backend.exists_many, result_ids)

    async def clear(self) -> None:
        await anyio.to_thread.run_sync(self.backend.clear)

    async def find_ids(self, query: RecordQuery) -> list[str]:
        return await anyio.to_thread.run_sync(self.backend.find_ids, query)

    async def delete_many(self, result_ids: Sequence[str]) -> int:
        return await anyio.to_thread.run_sync(self.backend.delete_many, result_ids)

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self.backend.close)

    async def replace_if_unchanged(self, result_id: str, record: Record, seen: Record) -> bool:
        return await anyio.to_thread.run_sync(
            self.backend.replace_if_unchanged, result_id, record, seen
        )

    def lock(
        self, result_id: str, timeout: float | None = None
    ) -> contextlib.AbstractAsyncContextManager[AsyncHeldLock]:
        return async_held(self, lambda: self.backend.lock(result_id, timeout))


@contextlib.asynccontextmanager
async def async_held(
    backend: AsyncResultsBackend,
    open_lock: Callable[[], contextlib.AbstractContextManager[HeldLock]],
) -> AsyncIterator[AsyncHeldLock]:
    """Hold the synchronous lock ``open_lock()`` for an ``async with`` block (in a thread
    of its own, see ``held_in_thread``) and yield its handle for the async API."""
    async with held_in_thread(open_lock) as held:
        yield AsyncHeldLock(held, backend)


def no_locks_message(backend: ResultsBackend | AsyncResultsBackend) -> str:
    """Why compute-once cannot run on a store without per-ID locks, and what to do."""
    return (
        f"{type(backend).__name__} at {backend.location} offers no per-ID locks: implement "
        "its lock() to compute each result once across workers, or pass lock=False "
        "(racing workers may then compute the same result twice; one result is kept)"
    )


def chunked(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def unique(items: Iterable[str]) -> list[str]:
    """Items without repeats, first occurrence kept."""
    return list(dict.fromkeys(items))
