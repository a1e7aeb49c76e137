"""MemoryBackend: records in a dict, for tests and throwaway runs (one process only)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence

from results_flow.backends.base import ResultsBackend
from results_flow.backends.held import HeldLock
from results_flow.errors import LockTimeoutError
from results_flow.ids import is_under
from results_flow.records import Record
from results_flow.settings import STORE_LOCK_TIMEOUT


class MemoryBackend(ResultsBackend):
    """Keeps records in this process's memory; thread-safe, gone when the process ends."""

    def __init__(self, name: str = "", lock_timeout: float = STORE_LOCK_TIMEOUT) -> None:
        self.location = f"memory://{name}"
        self.lock_timeout = lock_timeout
        self._records: dict[str, Record] = {}
        self._guard = threading.Lock()
        self._id_locks: dict[str, threading.Lock] = {}

    @classmethod
    def from_url(cls, url: str) -> MemoryBackend:
        """A new, empty store; ``memory://name`` only names it in messages."""
        return cls(url.partition("://")[2])

    def read(self, result_id: str) -> Record | None:
        return self._records.get(result_id)

    def insert(self, result_id: str, record: Record) -> Record | None:
        with self._guard:
            existing = self._records.get(result_id)
            if existing is None:
                self._records[result_id] = record
            return existing

    def upsert(self, result_id: str, record: Record) -> None:
        with self._guard:
            previous = self._records.get(result_id)
            self._records[result_id] = record if previous is None else record.replacing(previous)

    def delete(self, result_id: str) -> bool:
        with self._guard:
            return self._records.pop(result_id, None) is not None

    def list_ids(self, prefix: str | None = None) -> list[str]:
        with self._guard:
            ids = list(self._records)
        return sorted(i for i in ids if prefix is None or is_under(i, prefix))

    def read_many(self, result_ids: Sequence[str]) -> dict[str, Record]:
        with self._guard:
            return {i: self._records[i] for i in result_ids if i in self._records}

    def exists_many(self, result_ids: Sequence[str]) -> set[str]:
        with self._guard:
            return {i for i in result_ids if i in self._records}

    def clear(self) -> None:
        with self._guard:
            self._records.clear()

    @contextlib.contextmanager
    def lock(self, result_id: str, timeout: float | None = None) -> Iterator[HeldLock]:
        with self._guard:
            id_lock = self._id_locks.setdefault(result_id, threading.Lock())
        wait = self.lock_timeout if timeout is None else timeout
        if not id_lock.acquire(timeout=wait):
            raise LockTimeoutError(
                f"lock on {result_id!r} in {self.location} not acquired within {wait}s"
            )
        try:
            yield HeldLock(self, result_id)
        finally:
            id_lock.release()
