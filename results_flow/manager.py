"""ResultsManager: Pydantic models in and out of a backend, under validated IDs.

Validation happens here and only here: a model is dumped to JSON and validated back
before it is stored (so whatever is stored can be read), and a stored record is
validated against the asked (or registered) model when it is read. The
envelope codec (``results_flow.codec``) and the write policy
(``results_flow.write_policy``) are shared with ``AsyncResultsManager`` and ``transfer``.
"""

from __future__ import annotations

import builtins
import contextlib
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

from pydantic import BaseModel

from results_flow.backends.base import ResultsBackend, unique
from results_flow.backends.call_plans import drive
from results_flow.backends.held import HeldLock
from results_flow.backends.registry import backend_from_url
from results_flow.codec import Decoded, decode, decode_or_upgrade, encode
from results_flow.errors import (
    CorruptRecordError,
    InvalidResultsError,
    ResultNotFoundError,
    ResultsFlowError,
    ResultValidationError,
    UnknownModelError,
)
from results_flow.finding import find_plan, record_query
from results_flow.gc_pause import collection_paused
from results_flow.ids import ResultId, listed, normalize_id, normalize_ids
from results_flow.records import Record
from results_flow.settings import default_store_url
from results_flow.upgrades import InvalidPolicy, invalid_policy
from results_flow.write_policy import SetBehavior, write_back, write_record

__all__ = [
    "ON_INVALID_CHOICES",
    "DecodedBatch",
    "GetOnInvalid",
    "OnInvalid",
    "ResultsManager",
    "SetBehavior",
    "decode",
    "decode_many",
    "decode_one",
    "encode",
    "not_found",
    "resolve_backend",
]

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

OnInvalid = (
    Literal["raise", "skip", "migrate"] | tuple[Literal["migrate"], Literal["raise", "skip"]]
)
"""What ``get_many`` does with stored records that no longer validate: raise, skip, or
upgrade them (``"migrate"``, see ``results_flow.upgrades``), and then raise or skip
those no upgrade accepts (``"migrate"`` alone raises, ``("migrate", "skip")`` skips)."""
GetOnInvalid = Literal["raise", "migrate"]
"""What ``get`` does with a stored record that no longer validates."""
#: The choices besides "migrate", the default first.
ON_INVALID_CHOICES: tuple[str, ...] = ("raise", "skip")


class ResultsManager:
    """Stores and retrieves Pydantic models under hierarchical IDs.

    ``ResultsManager("./data")`` keeps JSON files in ``./data``;
    ``ResultsManager("sqlite:///results.db")`` or ``ResultsManager.from_url(...)`` opens
    any store URL; ``ResultsManager(backend=...)`` takes a backend; ``ResultsManager()``
    opens ``RESULTS_FLOW_STORE`` or the embedded default store.
    """

    def __init__(
        self,
        location: str | os.PathLike[str] | None = None,
        *,
        backend: ResultsBackend | None = None,
    ) -> None:
        self._backend = resolve_backend(location, backend)

    @classmethod
    def from_url(cls, url: str) -> ResultsManager:
        """Open the store a URL names (``file://``, ``sqlite:///``, ``postgresql://``, ``memory://``).

        Raises:
            UnsupportedStoreUrlError: unknown scheme or malformed URL.
            StoreUnavailableError: the store cannot be opened or reached.
        """
        return cls(backend=backend_from_url(url))

    @property
    def backend(self) -> ResultsBackend:
        """Where the results live; assign another backend to switch stores."""
        return self._backend

    @backend.setter
    def backend(self, backend: ResultsBackend) -> None:
        self._backend = backend

    def set(
        self,
        result_id: ResultId,
        data: Any,
        behavior: SetBehavior = SetBehavior.RAISE_IF_EXISTS,
        *,
        namespace: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        lock: HeldLock | None = None,
        result_type: Any = None,
    ) -> bool:
        """Store ``data`` under ``result_id``; with ``lock`` (held on that ID, from
        ``lock()``), through the lock: refused once the lock is lost.

        ``data`` is a model, or, with ``result_type`` (any type a Pydantic ``TypeAdapter``
        validates: ``list[Score]``, ``Score | None``, ``dict[str, float]``), a value
        validated as that type and stored under its text as the type tag; read it back
        with ``get(result_id, list[Score])``.

        Returns:
            True when written; False when skipped (SKIP_IF_EXISTS) or equal (RAISE_IF_DIFFERENT).

        Raises:
            InvalidResultIdError: the ID breaks the grammar.
            ResultValidationError: ``data`` is not a model (or a ``result_type`` value)
                that round-trips through JSON.
            ResultExistsError: RAISE_IF_EXISTS and the ID is taken.
            ResultConflictError: RAISE_IF_DIFFERENT and other data is stored.
            LockLostError: ``lock`` was lost while held; nothing was written.
        """
        rid = normalize_id(result_id)
        record = encode(rid, data, namespace, metadata, result_type)
        return write_record(self._backend if lock is None else lock, rid, record, behavior)

    @overload
    def get(
        self,
        result_id: ResultId,
        model_class: type[M],
        *,
        on_invalid: GetOnInvalid = "raise",
        lock: HeldLock | None = None,
    ) -> M: ...
    @overload
    def get(
        self,
        result_id: ResultId,
        model_class: None = None,
        *,
        on_invalid: GetOnInvalid = "raise",
        lock: HeldLock | None = None,
    ) -> Any: ...
    @overload
    def get(
        self,
        result_id: ResultId,
        model_class: type[T],
        *,
        on_invalid: GetOnInvalid = "raise",
        lock: HeldLock | None = None,
    ) -> T: ...
    @overload
    def get(
        self,
        result_id: ResultId,
        model_class: Any,
        *,
        on_invalid: GetOnInvalid = "raise",
        lock: HeldLock | None = None,
    ) -> Any: ...
    def get(
        self,
        result_id: ResultId,
        model_class: Any = None,
        *,
        on_invalid: GetOnInvalid = "raise",
        lock: HeldLock | None = None,
    ) -> Any:
        """The model stored under ``result_id``, validated as ``model_class`` or as the
        registered class of its stored type tag. ``model_class`` may be any type a
        Pydantic ``TypeAdapter`` validates (``list[Score]``). Without it, a tag such as
        ``list[Score]`` is rebuilt from builtin types and the models registered in the
        record's namespace only, never by importing anything.

        With ``on_invalid="migrate"``, a record that does not validate is brought to its
        model by the model's registered upgrades (``results_flow.upgrades``) and written
        back, unless the ID was written again since it was read; with ``lock`` (held on
        the ID, from ``lock()``), written back through the lock, as ``set`` writes.

        Raises:
            ResultNotFoundError: nothing is stored under the ID.
            UnknownModelError: no class given and the stored tag names a model not
                registered in its namespace (or a type not built from those).
            ResultValidationError: the stored data does not validate as the model
                (``UpgradeFailedError`` when no upgrade brings it there).
            CorruptRecordError: the stored record cannot be decoded (with "raise", only
                what is validated is read: a SQL row's damaged time or metadata is
                named by ``record``, ``get_many`` and ``verify``, not here).
            TypeError: ``model_class`` is no type Pydantic can validate.
            ValueError: ``on_invalid`` is neither "raise" nor "migrate".
        """
        rid = normalize_id(result_id)
        if on_invalid == "raise":  # nothing to write back: read only what is validated
            stored = self._backend.read_data(rid)
            if stored is None:
                raise not_found(rid, self._backend.location)
            return decode(rid, stored, model_class)
        record = self._backend.read(rid)
        if record is None:
            raise not_found(rid, self._backend.location)
        return decode_read(
            self._backend if lock is None else lock, rid, record, model_class, on_invalid
        )

    @overload
    def get_many(
        self,
        result_ids: Sequence[ResultId],
        model_class: type[M],
        *,
        on_invalid: OnInvalid = "raise",
    ) -> dict[str, M]: ...
    @overload
    def get_many(
        self,
        result_ids: Sequence[ResultId],
        model_class: None = None,
        *,
        on_invalid: OnInvalid = "raise",
    ) -> dict[str, Any]: ...
    @overload
    def get_many(
        self,
        result_ids: Sequence[ResultId],
        model_class: type[T],
        *,
        on_invalid: OnInvalid = "raise",
    ) -> dict[str, T]: ...
    @overload
    def get_many(
        self,
        result_ids: Sequence[ResultId],
        model_class: Any,
        *,
        on_invalid: OnInvalid = "raise",
    ) -> dict[str, Any]: ...
    def get_many(
        self,
        result_ids: Sequence[ResultId],
        model_class: Any = None,
        *,
        on_invalid: OnInvalid = "raise",
    ) -> dict[str, Any]:
        """The stored models among ``result_ids`` (missing IDs left out), in one backend call.

        Every record is read and validated before anything is raised. A record that does
        not validate (a model that changed since it was stored, or an unregistered tag
        when no class is given) is handled by ``on_invalid``: ``"raise"`` (the default)
        raises one ``InvalidResultsError`` that counts every bad ID, names the first few,
        and carries ``.invalid`` (ID -> error) and ``.found`` (the good results), so a
        caller can catch it to collect both; ``"skip"`` leaves bad IDs out, as if missing.
        ``"migrate"`` first upgrades them through the model's registered upgrades
        (``results_flow.upgrades``) and writes each back unless its ID was written again
        since it was read; those no upgrade accepts then raise (``"migrate"``) or are
        skipped (``("migrate", "skip")``).

        Raises:
            InvalidResultsError: stored records do not validate (nor upgrade, under
                ``"migrate"``) and the choice is to raise.
            ValueError: ``on_invalid`` is none of the choices.
        """
        rids = normalize_ids(result_ids)
        records, damaged = self._read_records(rids)
        return decode_read_many(self._backend, rids, records, model_class, on_invalid, damaged)

    def read_records(
        self, result_ids: Sequence[ResultId]
    ) -> tuple[dict[str, Record], dict[str, ResultsFlowError]]:
        """The raw stored envelopes among ``result_ids`` (missing IDs left out), in one
        backend call, and the errors of those that cannot be decoded (read one by one
        then, so one damaged record spoils no other): what ``get_many`` validates.

        Raises:
            InvalidResultIdError: an ID breaks the grammar.
        """
        return self._read_records(normalize_ids(result_ids))

    def _read_records(
        self, rids: list[str]
    ) -> tuple[dict[str, Record], dict[str, ResultsFlowError]]:
        try:
            return self._backend.read_many(rids), {}
        except CorruptRecordError:
            return read_each(self._backend, rids)

    def record(self, result_id: ResultId) -> Record:
        """The raw stored envelope (type tag, namespace, JSON data, times, metadata).

        Raises:
            ResultNotFoundError: nothing is stored under the ID.
        """
        rid = normalize_id(result_id)
        record = self._backend.read(rid)
        if record is None:
            raise not_found(rid, self._backend.location)
        return record

    def exists(self, result_id: ResultId) -> bool:
        """Whether a result is stored under the ID."""
        return self._backend.exists(normalize_id(result_id))

    def exists_many(self, result_ids: Sequence[ResultId]) -> builtins.set[str]:
        """The normalized IDs among ``result_ids`` that are stored, in one backend call."""
        return self._backend.exists_many(normalize_ids(result_ids))

    def list_ids(self, prefix: ResultId | None = None) -> list[str]:
        """Sorted stored IDs equal to ``prefix`` or below it by whole segments.

        results_flow's own records (``_results_flow/...``, failure records) are listed
        only under a prefix that names them."""
        rprefix = None if prefix is None else normalize_id(prefix)
        return listed(self._backend.list_ids(rprefix), rprefix)

    def find(
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
        """Sorted IDs of the results that every given filter selects, by what made them:
        the ``flow_name``, ``task_name``, ``flow_run_id``, ``version`` and ``parameters``
        a results task keeps in each record's metadata.

        A value matches as text: a string as itself, another JSON value as its compact
        JSON, so ``params={"n": 3}`` and ``{"n": "3"}`` both find ``n=3``. ``older_than``
        keeps results last updated longer ago; ``invalid`` keeps those that no longer
        validate as their registered model. Indexed on SQL stores; a listing elsewhere.

        Raises:
            InvalidResultIdError: the prefix breaks the ID grammar.
            MaintenanceError: ``older_than`` is negative or too long.
            UnknownModelError: ``invalid`` and a selected record's model is not registered.
        """
        query = record_query(
            prefix,
            flow=flow,
            task=task,
            flow_run=flow_run,
            version=version,
            params=params,
            older_than=older_than,
        )
        return drive(find_plan(query, invalid=invalid), self._backend)

    def delete(self, result_id: ResultId, *, lock: HeldLock | None = None) -> bool:
        """Remove the result; True when one was stored. With ``lock``, see ``set``."""
        return (self._backend if lock is None else lock).delete(normalize_id(result_id))

    def delete_many(self, result_ids: Sequence[ResultId]) -> int:
        """Remove the results of ``result_ids`` in batches; how many were stored."""
        return self._backend.delete_many(normalize_ids(result_ids))

    def clear(self) -> None:
        """Remove every result in the store."""
        self._backend.clear()

    def lock(
        self, result_id: ResultId, timeout: float | None = None
    ) -> contextlib.AbstractContextManager[HeldLock]:
        """An exclusive lock on one ID across threads and processes; it dies with its holder.

        The block gets the ``HeldLock``: pass it to ``set``/``delete`` (``lock=``) so the
        write is refused with ``LockLostError`` once the lock is lost (a PostgreSQL
        session that ended, an object-store lease taken over), never made unprotected.

        Raises:
            LockTimeoutError: not acquired within ``timeout`` seconds.
        """
        return self._backend.lock(normalize_id(result_id), timeout)

    def close(self) -> None:
        """Release the backend's connections and handles."""
        self._backend.close()

    def __enter__(self) -> ResultsManager:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._backend.location!r})"


def resolve_backend(
    location: str | os.PathLike[str] | None, backend: ResultsBackend | None
) -> ResultsBackend:
    """The backend a manager's constructor arguments name.

    Raises:
        ResultsFlowError: both a location and a backend were given.
    """
    if backend is not None:
        if location is not None:
            raise ResultsFlowError("give a manager either a location or a backend, not both")
        return backend
    if location is None:
        return backend_from_url(default_store_url())
    return backend_from_url(location)


def read_each(
    backend: ResultsBackend, result_ids: Sequence[str]
) -> tuple[dict[str, Record], dict[str, ResultsFlowError]]:
    """The records of ``result_ids`` read one by one, and the damaged ones' errors.

    A batch read stops at the first damaged record; read alone, a damaged record is one
    bad ID among the others, which ``on_invalid`` decides on as on one that does not
    validate (so ``results_map`` recomputes it).
    """
    outcomes: list[tuple[str, Record | CorruptRecordError | None]] = []
    for rid in unique(result_ids):
        try:
            outcomes.append((rid, backend.read(rid)))
        except CorruptRecordError as exc:
            outcomes.append((rid, exc))
    return sorted_reads(outcomes)


def sorted_reads(
    outcomes: Iterable[tuple[str, Record | CorruptRecordError | None]],
) -> tuple[dict[str, Record], dict[str, ResultsFlowError]]:
    """Reads of single IDs as the stored records and the damaged ones' errors."""
    records: dict[str, Record] = {}
    damaged: dict[str, ResultsFlowError] = {}
    for rid, outcome in outcomes:
        if isinstance(outcome, CorruptRecordError):
            damaged[rid] = outcome
        elif outcome is not None:
            records[rid] = outcome
    return records, damaged


class DecodedBatch:
    """A batch of records read as their type: the values (``found``), the bad IDs with
    their errors (``invalid``), the upgraded records to write back (``rewrites``)."""

    def __init__(self, total: int, policy: InvalidPolicy) -> None:
        self.total = total
        self.policy = policy
        self.found: dict[str, Any] = {}
        self.invalid: dict[str, ResultsFlowError] = {}
        self.rewrites: dict[str, tuple[Record, Record]] = {}

    def result(self) -> dict[str, Any]:
        """The values, once the batch's upgrades are written back.

        Raises:
            InvalidResultsError: bad records and the choice for them is to raise.
        """
        if self.invalid and self.policy.otherwise == "raise":
            hint = (
                'pass on_invalid=("migrate", "skip") to leave out those no upgrade accepts'
                if self.policy.migrate
                else 'pass on_invalid="skip" to leave them out, or register upgrades '
                '(@upgrades) and pass on_invalid="migrate"'
            )
            raise InvalidResultsError.of(self.invalid, self.found, total=self.total, hint=hint)
        return self.found


def decode_one(result_id: str, record: Record, model_class: Any, on_invalid: str) -> Decoded:
    """``get``'s decoding: ``decode``, or with ``on_invalid="migrate"`` ``decode_or_upgrade``.

    Raises:
        ValueError: ``on_invalid`` is neither "raise" nor "migrate".
        The errors of ``decode_or_upgrade``.
    """
    if invalid_policy(on_invalid, ("raise",)).migrate:
        return decode_or_upgrade(result_id, record, model_class)
    return Decoded(decode(result_id, record, model_class))


def decode_read(
    target: ResultsBackend | HeldLock,
    result_id: str,
    record: Record,
    model_class: Any,
    on_invalid: str,
) -> Any:
    """``get``'s answer for a record it read: ``decode_one``, and an upgrade found under
    "migrate" written back to ``target`` (the store, or a lock held on the ID).

    Raises:
        The errors of ``decode_one``.
    """
    decoded = decode_one(result_id, record, model_class, on_invalid)
    if decoded.rewrite is not None:
        write_back(target, {result_id: (record, decoded.rewrite)})
    return decoded.value


def decode_read_many(
    target: ResultsBackend,
    result_ids: Sequence[str],
    records: Mapping[str, Record],
    model_class: Any,
    on_invalid: OnInvalid,
    damaged: Mapping[str, ResultsFlowError],
) -> dict[str, Any]:
    """``get_many``'s answer for records it read: ``decode_many``, the upgrades found
    under "migrate" written back to ``target``, then the batch's result.

    Raises:
        InvalidResultsError: bad records and the choice for them is to raise.
        ValueError: ``on_invalid`` is none of the choices.
    """
    batch = decode_many(result_ids, records, model_class, on_invalid, damaged)
    write_back(target, batch.rewrites)
    return batch.result()


def decode_many(
    result_ids: Sequence[str],
    records: Mapping[str, Record],
    model_class: Any,
    on_invalid: OnInvalid,
    damaged: Mapping[str, ResultsFlowError] | None = None,
) -> DecodedBatch:
    """Decode the stored ones among ``result_ids``; bad records (those that do not
    validate, and the ``damaged`` ones that could not be read) go by ``on_invalid``
    (upgraded first under "migrate"). The caller writes ``rewrites`` back, then takes
    ``result()``.

    Raises:
        ValueError: ``on_invalid`` is none of the choices.
    """
    policy = invalid_policy(on_invalid, ON_INVALID_CHOICES)
    read = decode_or_upgrade if policy.migrate else _plain
    batch = DecodedBatch(len(records) + len(damaged or {}), policy)
    batch.invalid.update(damaged or {})
    with collection_paused():  # every model made here stays alive: nothing to collect
        for rid in result_ids:
            record = records.get(rid)
            if record is None or rid in batch.found or rid in batch.invalid:
                continue
            try:
                decoded = read(rid, record, model_class)
            except (ResultValidationError, UnknownModelError) as exc:
                batch.invalid[rid] = exc
                continue
            batch.found[rid] = decoded.value
            if decoded.rewrite is not None:
                batch.rewrites[rid] = (record, decoded.rewrite)
    return batch


def _plain(result_id: str, record: Record, model_class: Any) -> Decoded:
    return Decoded(decode(result_id, record, model_class))


def not_found(result_id: str, location: str) -> ResultNotFoundError:
    """The error for a missing ID, naming the store."""
    return ResultNotFoundError(f"no result stored under {result_id!r} in {location}")
