"""AsyncResultsManager: the ResultsManager API as coroutines, off the event loop.

SQL stores run on SQLAlchemy's asyncio engine (aiosqlite, asyncpg); files and
memory run in worker threads. Validation and SetBehavior are the sync manager's own
(``codec`` and ``write_policy``), so both managers behave identically.
"""

from __future__ import annotations

import builtins
import contextlib
import os
from collections.abc import Mapping, Sequence
from datetime import timedelta
from types import TracebackType
from typing import Any, TypeVar, overload

from pydantic import BaseModel

from results_flow.backends.base import AsyncResultsBackend, ResultsBackend, unique
from results_flow.backends.call_plans import adrive
from results_flow.backends.held import AsyncHeldLock
from results_flow.backends.registry import async_backend_from_url
from results_flow.codec import decode, encode
from results_flow.errors import CorruptRecordError, ResultsFlowError
from results_flow.finding import find_plan, record_query
from results_flow.ids import ResultId, listed, normalize_id, normalize_ids
from results_flow.manager import (
    GetOnInvalid,
    OnInvalid,
    decode_many,
    decode_one,
    not_found,
    resolve_backend,
    sorted_reads,
)
from results_flow.records import Record
from results_flow.write_policy import SetBehavior, awrite_back, awrite_record

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class AsyncResultsManager:
    """Stores and retrieves Pydantic models under hierarchical IDs, asynchronously.

    Takes the same arguments as ``ResultsManager``; a synchronous backend is turned
    into its asynchronous twin, or an ``AsyncResultsBackend`` may be given directly.
    """

    def __init__(
        self,
        location: str | os.PathLike[str] | None = None,
        *,
        backend: ResultsBackend | AsyncResultsBackend | None = None,
    ) -> None:
        if isinstance(backend, AsyncResultsBackend):
            self._backend = backend
        elif location is not None and backend is None:
            self._backend = async_backend_from_url(location)
        else:
            self._backend = resolve_backend(location, backend).to_async()

    @classmethod
    def from_url(cls, url: str) -> AsyncResultsManager:
        """Open the store a URL names; see ``ResultsManager.from_url``."""
        return cls(backend=async_backend_from_url(url))

    @property
    def backend(self) -> AsyncResultsBackend:
        """Where the results live; assign another backend to switch stores."""
        return self._backend

    @backend.setter
    def backend(self, backend: ResultsBackend | AsyncResultsBackend) -> None:
        self._backend = backend if isinstance(backend, AsyncResultsBackend) else backend.to_async()

    async def set(
        self,
        result_id: ResultId,
        data: Any,
        behavior: SetBehavior = SetBehavior.RAISE_IF_EXISTS,
        *,
        namespace: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        lock: AsyncHeldLock | None = None,
        result_type: Any = None,
    ) -> bool:
        """See ``ResultsManager.set``."""
        rid = normalize_id(result_id)
        record = encode(rid, data, namespace, metadata, result_type)
        return await awrite_record(self._backend if lock is None else lock, rid, record, behavior)

    @overload
    async def get(
        self,
        result_id: ResultId,
        model_class: type[M],
        *,
        on_invalid: GetOnInvalid = "raise",
        lock: AsyncHeldLock | None = None,
    ) -> M: ...
    @overload
    async def get(
        self,
        result_id: ResultId,
        model_class: None = None,
        *,
        on_invalid: GetOnInvalid = "raise",
        lock: AsyncHeldLock | None = None,
    ) -> Any: ...
    @overload
    async def get(
        self,
        result_id: ResultId,
        model_class: type[T],
        *,
        on_invalid: GetOnInvalid = "raise",
        lock: AsyncHeldLock | None = None,
    ) -> T: ...
    @overload
    async def get(
        self,
        result_id: ResultId,
        model_class: Any,
        *,
        on_invalid: GetOnInvalid = "raise",
        lock: AsyncHeldLock | None = None,
    ) -> Any: ...
    async def get(
        self,
        result_id: ResultId,
        model_class: Any = None,
        *,
        on_invalid: GetOnInvalid = "raise",
        lock: AsyncHeldLock | None = None,
    ) -> Any:
        """See ``ResultsManager.get``."""
        rid = normalize_id(result_id)
        if on_invalid == "raise":  # nothing to write back: read only what is validated
            stored = await self._backend.read_data(rid)
            if stored is None:
                raise not_found(rid, self._backend.location)
            return decode(rid, stored, model_class)
        record = await self.record(rid)
        decoded = decode_one(rid, record, model_class, on_invalid)
        if decoded.rewrite is not None:
            writer = self._backend if lock is None else lock
            await awrite_back(writer, {rid: (record, decoded.rewrite)})
        return decoded.value

    @overload
    async def get_many(
        self,
        result_ids: Sequence[ResultId],
        model_class: type[M],
        *,
        on_invalid: OnInvalid = "raise",
    ) -> dict[str, M]: ...
    @overload
    async def get_many(
        self,
        result_ids: Sequence[ResultId],
        model_class: None = None,
        *,
        on_invalid: OnInvalid = "raise",
    ) -> dict[str, Any]: ...
    @overload
    async def get_many(
        self,
        result_ids: Sequence[ResultId],
        model_class: type[T],
        *,
        on_invalid: OnInvalid = "raise",
    ) -> dict[str, T]: ...
    @overload
    async def get_many(
        self,
        result_ids: Sequence[ResultId],
        model_class: Any,
        *,
        on_invalid: OnInvalid = "raise",
    ) -> dict[str, Any]: ...
    async def get_many(
        self,
        result_ids: Sequence[ResultId],
        model_class: Any = None,
        *,
        on_invalid: OnInvalid = "raise",
    ) -> dict[str, Any]:
        """See ``ResultsManager.get_many`` (same ``on_invalid`` choices)."""
        rids = normalize_ids(result_ids)
        records, damaged = await self._read_records(rids)
        batch = decode_many(rids, records, model_class, on_invalid, damaged)
        await awrite_back(self._backend, batch.rewrites)
        return batch.result()

    async def read_records(
        self, result_ids: Sequence[ResultId]
    ) -> tuple[dict[str, Record], dict[str, ResultsFlowError]]:
        """See ``ResultsManager.read_records``."""
        return await self._read_records(normalize_ids(result_ids))

    async def _read_records(
        self, rids: list[str]
    ) -> tuple[dict[str, Record], dict[str, ResultsFlowError]]:
        try:
            return await self._backend.read_many(rids), {}
        except CorruptRecordError:
            return await _read_each(self._backend, rids)

    async def record(self, result_id: ResultId) -> Record:
        """See ``ResultsManager.record``."""
        rid = normalize_id(result_id)
        record = await self._backend.read(rid)
        if record is None:
            raise not_found(rid, self._backend.location)
        return record

    async def exists(self, result_id: ResultId) -> bool:
        """See ``ResultsManager.exists``."""
        return await self._backend.exists(normalize_id(result_id))

    async def exists_many(self, result_ids: Sequence[ResultId]) -> builtins.set[str]:
        """See ``ResultsManager.exists_many``."""
        return await self._backend.exists_many(normalize_ids(result_ids))

    async def list_ids(self, prefix: ResultId | None = None) -> list[str]:
        """See ``ResultsManager.list_ids``."""
        rprefix = None if prefix is None else normalize_id(prefix)
        return listed(await self._backend.list_ids(rprefix), rprefix)

    async def find(
        self,
        prefix: ResultId | None = None,
        *,
        flow: str | None = None,
        task: str | None = None,
        flow_run: str | None = None,
        version: str | None = None,
        params: Mapping[str, Any] | None = None,
        older_than: timedelta | None = None,
        invalid: bool = False,
    ) -> list[str]:
        """See ``ResultsManager.find``."""
        query = record_query(
            prefix,
            flow=flow,
            task=task,
            flow_run=flow_run,
            version=version,
            params=params,
            older_than=older_than,
        )
        return await adrive(find_plan(query, invalid=invalid), self._backend)

    async def delete(self, result_id: ResultId, *, lock: AsyncHeldLock | None = None) -> bool:
        """See ``ResultsManager.delete``."""
        return await (self._backend if lock is None else lock).delete(normalize_id(result_id))

    async def delete_many(self, result_ids: Sequence[ResultId]) -> int:
        """See ``ResultsManager.delete_many``."""
        return await self._backend.delete_many(normalize_ids(result_ids))

    async def clear(self) -> None:
        """See ``ResultsManager.clear``."""
        await self._backend.clear()

    def lock(
        self, result_id: ResultId, timeout: float | None = None
    ) -> contextlib.AbstractAsyncContextManager[AsyncHeldLock]:
        """See ``ResultsManager.lock``; use ``async with``. Waiting never blocks the event loop.

        Raises:
            LockTimeoutError: not acquired within ``timeout`` seconds.
        """
        return self._backend.lock(normalize_id(result_id), timeout)

    async def close(self) -> None:
        """Release the backend's connections and handles."""
        await self._backend.close()

    async def __aenter__(self) -> AsyncResultsManager:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._backend.location!r})"


async def _read_each(
    backend: AsyncResultsBackend, result_ids: Sequence[str]
) -> tuple[dict[str, Record], dict[str, ResultsFlowError]]:
    """``manager.read_each`` on an async backend."""
    outcomes: list[tuple[str, Record | CorruptRecordError | None]] = []
    for rid in unique(result_ids):
        try:
            outcomes.append((rid, await backend.read(rid)))
        except CorruptRecordError as exc:
            outcomes.append((rid, exc))
    return sorted_reads(outcomes)
