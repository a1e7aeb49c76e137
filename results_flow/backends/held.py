"""A per-ID lock while it is held: the handle ``lock(id)`` yields, and writes go through it.

Every store's ``lock(id)`` yields a ``HeldLock``. A write made for a lock (the result a
compute-once holder stores) goes through the handle, never around it, so the handle
alone decides whether the lock still protects it:

- locks that die only with their holder's process (OS file locks of the file and SQLite
  stores, the memory store's thread locks) cannot be lost while the holder runs: the
  handle writes through the backend as it is;
- locks that can be lost while the holder runs (a PostgreSQL session that ended, an
  object-store lease taken over after its TTL) set ``fences_writes`` and override
  ``_insert``/``_upsert``/``_delete``: the write happens only while the lock is provably
  still held (in the lock's own session, or conditional on the lease), else it is
  refused with ``LockLostError`` and nothing is written.

``AsyncHeldLock`` is the same handle for ``async with``: it runs a fenced sync handle's
writes in a worker thread and any other write on the async backend, so the fencing
rule is written once, in the sync handle.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

import anyio.to_thread

from results_flow.errors import LockLostError
from results_flow.records import Record

if TYPE_CHECKING:
    from results_flow.backends.base import AsyncResultsBackend, ResultsBackend


class RecordWriter(Protocol):
    """What a write policy writes through: a backend, or a held lock on the ID."""

    location: str

    def insert(self, result_id: str, record: Record) -> Record | None: ...

    def upsert(self, result_id: str, record: Record) -> None: ...


class AsyncRecordWriter(Protocol):
    """``RecordWriter`` for the async API."""

    location: str

    async def insert(self, result_id: str, record: Record) -> Record | None: ...

    async def upsert(self, result_id: str, record: Record) -> None: ...


class Readable(Protocol):
    """A store or held lock that reads and upserts records."""

    def read(self, result_id: str) -> Record | None: ...

    def upsert(self, result_id: str, record: Record) -> None: ...


class AsyncReadable(Protocol):
    """``Readable`` for the async API."""

    async def read(self, result_id: str) -> Record | None: ...

    async def upsert(self, result_id: str, record: Record) -> None: ...


def replace_through(store: Readable, result_id: str, record: Record, seen: Record) -> bool:
    """``replace_if_unchanged`` through ``store`` (a backend, or a lock held on the ID):
    read, and write only if the ID still holds ``seen`` (``Record.same_version``)."""
    current = store.read(result_id)
    if current is None or not current.same_version(seen):
        return False
    store.upsert(result_id, record)
    return True


async def areplace_through(
    store: AsyncReadable, result_id: str, record: Record, seen: Record
) -> bool:
    """``replace_through`` on the async API (the same rule)."""
    current = await store.read(result_id)
    if current is None or not current.same_version(seen):
        return False
    await store.upsert(result_id, record)
    return True


class HeldLock:
    """A held per-ID lock; ``insert``/``upsert``/``delete`` of its ID go through it.

    This base class is the handle of locks that die only with their holder's process:
    while the holder runs, the lock is held, so a write through it is a plain backend
    write. Stores whose locks can be lost meanwhile subclass it (``fences_writes``).
    """

    #: Whether writes must go through this handle's own path (a lock session, a lease
    #: check) rather than the backend's: True for locks that can be lost while held.
    fences_writes = False

    def __init__(self, backend: ResultsBackend, result_id: str) -> None:
        self.backend = backend
        self.result_id = result_id
        self.location = backend.location

    def lost_reason(self) -> str | None:
        """Why the lock is known to be lost, or None while it is (as far as known) held."""
        return None

    def check(self) -> None:
        """Raise ``LockLostError`` when the lock is known to be lost."""
        reason = self.lost_reason()
        if reason is not None:
            raise self.lost_error(reason)

    def lost_error(self, reason: str) -> LockLostError:
        """The error of a write refused because the lock was lost."""
        return LockLostError(
            f"lock on {self.result_id!r} in {self.location} was lost while held ({reason}), "
            "so this write was refused: another worker may hold the lock and store this ID"
        )

    def read(self, result_id: str) -> Record | None:
        """The record stored under the locked ID, or None."""
        self._own(result_id)
        return self.backend.read(result_id)

    def insert(self, result_id: str, record: Record) -> Record | None:
        """``ResultsBackend.insert`` of the locked ID, refused once the lock is lost."""
        self._own(result_id)
        self.check()
        return self._insert(result_id, record)

    def upsert(self, result_id: str, record: Record) -> None:
        """``ResultsBackend.upsert`` of the locked ID, refused once the lock is lost."""
        self._own(result_id)
        self.check()
        self._upsert(result_id, record)

    def delete(self, result_id: str) -> bool:
        """``ResultsBackend.delete`` of the locked ID, refused once the lock is lost."""
        self._own(result_id)
        self.check()
        return self._delete(result_id)

    def replace_if_unchanged(self, result_id: str, record: Record, seen: Record) -> bool:
        """``ResultsBackend.replace_if_unchanged`` of the locked ID, under this lock:
        refused once the lock is lost."""
        return replace_through(self, result_id, record, seen)

    # How a write reaches the store once it is known to be the lock's own: a plain backend
    # write here; a fenced handle writes in its lock session, or conditional on its lease.

    def _insert(self, result_id: str, record: Record) -> Record | None:
        return self.backend.insert(result_id, record)

    def _upsert(self, result_id: str, record: Record) -> None:
        self.backend.upsert(result_id, record)

    def _delete(self, result_id: str) -> bool:
        return self.backend.delete(result_id)

    def _own(self, result_id: str) -> None:
        if result_id != self.result_id:
            raise ValueError(
                f"the lock on {self.result_id!r} cannot write {result_id!r}: a held lock "
                "writes only its own ID"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.result_id!r} in {self.location})"


@contextlib.contextmanager
def held_by(
    backend: ResultsBackend, result_id: str, lock: contextlib.AbstractContextManager[object]
) -> Iterator[HeldLock]:
    """Hold ``lock`` (one that dies only with this process) and yield its ``HeldLock``."""
    with lock:
        yield HeldLock(backend, result_id)


class AsyncHeldLock:
    """A held lock in the async API: the sync handle's rule, writes off the event loop."""

    def __init__(self, held: HeldLock, backend: AsyncResultsBackend) -> None:
        self.held = held
        self.backend = backend
        self.result_id = held.result_id
        self.location = backend.location

    def lost_reason(self) -> str | None:
        """See ``HeldLock.lost_reason``."""
        return self.held.lost_reason()

    def check(self) -> None:
        """See ``HeldLock.check``."""
        self.held.check()

    async def read(self, result_id: str) -> Record | None:
        """See ``HeldLock.read``."""
        self.held._own(result_id)
        return await self.backend.read(result_id)

    async def insert(self, result_id: str, record: Record) -> Record | None:
        """See ``HeldLock.insert``."""
        if self.held.fences_writes:
            return await anyio.to_thread.run_sync(self.held.insert, result_id, record)
        self.held._own(result_id)
        self.held.check()
        return await self.backend.insert(result_id, record)

    async def upsert(self, result_id: str, record: Record) -> None:
        """See ``HeldLock.upsert``."""
        if self.held.fences_writes:
            await anyio.to_thread.run_sync(self.held.upsert, result_id, record)
            return
        self.held._own(result_id)
        self.held.check()
        await self.backend.upsert(result_id, record)

    async def replace_if_unchanged(self, result_id: str, record: Record, seen: Record) -> bool:
        """See ``HeldLock.replace_if_unchanged``."""
        return await areplace_through(self, result_id, record, seen)

    async def delete(self, result_id: str) -> bool:
        """See ``HeldLock.delete``."""
        if self.held.fences_writes:
            return await anyio.to_thread.run_sync(self.held.delete, result_id)
        self.held._own(result_id)
        self.held.check()
        return await self.backend.delete(result_id)

    def __repr__(self) -> str:
        return f"Async{self.held!r}"
