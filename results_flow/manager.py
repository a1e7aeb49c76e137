"""ResultsManager: Pydantic models in and out of a backend, under validated IDs.

Validation happens here and only here: a model is dumped to JSON and validated back
before it is stored (so whatever is stored can be read), and a stored record is
validated against the asked (or registered) model when it is read. The
``encode``/``decode``/``settle`` helpers are shared with ``AsyncResultsManager``.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
from collections.abc import Mapping, Sequence
from enum import StrEnum
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from results_flow.backends.base import ResultsBackend
from results_flow.backends.urls import backend_from_url
from results_flow.errors import (
    InvalidResultsError,
    ResultConflictError,
    ResultExistsError,
    ResultNotFoundError,
    ResultsFlowError,
    ResultValidationError,
    UnknownModelError,
)
from results_flow.ids import ResultId, normalize_id
from results_flow.records import Record, utc_now
from results_flow.registry import get_model_class, namespace_of
from results_flow.settings import default_store_url

M = TypeVar("M", bound=BaseModel)

OnInvalid = Literal["raise", "skip"]
"""What ``get_many`` does with stored records that no longer validate."""
ON_INVALID_CHOICES: tuple[OnInvalid, ...] = ("raise", "skip")


class SetBehavior(StrEnum):
    """What ``set`` does when the ID already holds a result."""

    RAISE_IF_EXISTS = "raise_if_exists"
    """Raise ``ResultExistsError``."""
    SKIP_IF_EXISTS = "skip_if_exists"
    """Write nothing, whatever is stored; ``set`` returns False."""
    RAISE_IF_DIFFERENT = "raise_if_different"
    """Write nothing if type and data are equal (returns False); else ``ResultConflictError``."""
    OVERWRITE = "overwrite"
    """Replace it (the creation time is kept)."""


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
        data: BaseModel,
        behavior: SetBehavior = SetBehavior.RAISE_IF_EXISTS,
        *,
        namespace: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> bool:
        """Store ``data`` under ``result_id``.

        Returns:
            True when written; False when skipped (SKIP_IF_EXISTS) or equal (RAISE_IF_DIFFERENT).

        Raises:
            InvalidResultIdError: the ID breaks the grammar.
            ResultValidationError: ``data`` is not a model that round-trips through JSON.
            ResultExistsError: RAISE_IF_EXISTS and the ID is taken.
            ResultConflictError: RAISE_IF_DIFFERENT and other data is stored.
        """
        rid = normalize_id(result_id)
        record = encode(rid, data, namespace, metadata)
        if behavior is SetBehavior.OVERWRITE:
            self._backend.upsert(rid, record)
            return True
        existing = self._backend.insert(rid, record)
        return settle(behavior, rid, record, existing, self._backend.location)

    @overload
    def get(self, result_id: ResultId, model_class: type[M]) -> M: ...
    @overload
    def get(self, result_id: ResultId, model_class: None = None) -> BaseModel: ...
    def get(self, result_id: ResultId, model_class: type[M] | None = None) -> M | BaseModel:
        """The model stored under ``result_id``, validated as ``model_class`` or as the
        registered class of its stored type tag.

        Raises:
            ResultNotFoundError: nothing is stored under the ID.
            UnknownModelError: no class given and the stored tag is not registered.
            ResultValidationError: the stored data does not validate as the model.
            CorruptRecordError: the stored record cannot be decoded.
        """
        rid = normalize_id(result_id)
        record = self._backend.read(rid)
        if record is None:
            raise not_found(rid, self._backend.location)
        return decode(rid, record, model_class)

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
    ) -> dict[str, BaseModel]: ...
    def get_many(
        self,
        result_ids: Sequence[ResultId],
        model_class: type[M] | None = None,
        *,
        on_invalid: OnInvalid = "raise",
    ) -> dict[str, M] | dict[str, BaseModel]:
        """The stored models among ``result_ids`` (missing IDs left out), in one backend call.

        Every record is read and validated before anything is raised. A record that does
        not validate (a model that changed since it was stored, or an unregistered tag
        when no class is given) is handled by ``on_invalid``: ``"raise"`` (the default)
        raises one ``InvalidResultsError`` that counts every bad ID, names the first few,
        and carries ``.invalid`` (ID -> error) and ``.found`` (the good results), so a
        caller can catch it to collect both; ``"skip"`` leaves bad IDs out, as if missing.

        Raises:
            InvalidResultsError: ``on_invalid="raise"`` and stored records do not validate.
        """
        rids = [normalize_id(r) for r in result_ids]
        records = self._backend.read_many(rids)
        return decode_many(rids, records, model_class, on_invalid)

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
        return self._backend.exists_many([normalize_id(r) for r in result_ids])

    def list_ids(self, prefix: ResultId | None = None) -> list[str]:
        """Sorted stored IDs equal to ``prefix`` or below it by whole segments."""
        return self._backend.list_ids(None if prefix is None else normalize_id(prefix))

    def delete(self, result_id: ResultId) -> bool:
        """Remove the result; True when one was stored."""
        return self._backend.delete(normalize_id(result_id))

    def clear(self) -> None:
        """Remove every result in the store."""
        self._backend.clear()

    def lock(
        self, result_id: ResultId, timeout: float | None = None
    ) -> contextlib.AbstractContextManager[None]:
        """An exclusive lock on one ID across threads and processes; it dies with its holder.

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


def encode(
    result_id: str,
    data: BaseModel,
    namespace: str | None,
    metadata: Mapping[str, Any] | None,
) -> Record:
    """The record that stores ``data``, after checking it reads back as its own class.

    Raises:
        ResultValidationError: not a model, or its JSON does not validate as its class.
    """
    if not isinstance(data, BaseModel):
        raise ResultValidationError(
            f"result {result_id!r}: set() takes a pydantic model instance, "
            f"not {type(data).__name__}"
        )
    cls = type(data)
    try:
        text = data.model_dump_json(warnings="error")
        cls.model_validate_json(text)
    except (ValidationError, PydanticSerializationError) as exc:
        raise ResultValidationError(
            f"result {result_id!r}: {cls.__name__} does not round-trip through JSON: {exc}"
        ) from exc
    try:
        extra = json.loads(json.dumps(dict(metadata or {})))
    except (TypeError, ValueError) as exc:
        raise ResultValidationError(
            f"result {result_id!r}: metadata must be JSON-serializable: {exc}"
        ) from exc
    now = utc_now()
    return Record(
        model_type=cls.__name__,
        namespace=namespace or namespace_of(cls),
        data=text,
        created_at=now,
        updated_at=now,
        metadata=extra,
    )


@overload
def decode(result_id: str, record: Record, model_class: type[M]) -> M: ...
@overload
def decode(result_id: str, record: Record, model_class: None) -> BaseModel: ...
@overload
def decode(result_id: str, record: Record, model_class: type[M] | None) -> M | BaseModel: ...
def decode(result_id: str, record: Record, model_class: type[M] | None) -> M | BaseModel:
    """Validate a stored record as ``model_class`` or its registered class.

    Raises:
        UnknownModelError: no class given and the stored tag is not registered.
        ResultValidationError: the data does not validate.
    """
    if model_class is None:
        try:
            cls: type[BaseModel] = get_model_class(record.model_type, record.namespace)
        except UnknownModelError as exc:
            raise UnknownModelError(f"result {result_id!r}: {exc}") from exc
    else:
        cls = model_class
    try:
        return cls.model_validate_json(record.data)
    except ValidationError as exc:
        raise ResultValidationError(
            f"result {result_id!r} (stored as {record.namespace}:{record.model_type}) "
            f"does not validate as {cls.__name__}: {exc}"
        ) from exc


def decode_many(
    result_ids: Sequence[str],
    records: Mapping[str, Record],
    model_class: type[M] | None,
    on_invalid: OnInvalid,
) -> dict[str, Any]:
    """Decode the stored ones among ``result_ids``; bad records go by ``on_invalid``.

    Raises:
        InvalidResultsError: ``on_invalid="raise"`` and records do not validate.
        ValueError: ``on_invalid`` is not one of ``ON_INVALID_CHOICES``.
    """
    if on_invalid not in ON_INVALID_CHOICES:
        raise ValueError(f"on_invalid must be one of {ON_INVALID_CHOICES}, not {on_invalid!r}")
    found: dict[str, Any] = {}
    invalid: dict[str, ResultsFlowError] = {}
    for rid in result_ids:
        record = records.get(rid)
        if record is None or rid in found or rid in invalid:
            continue
        try:
            found[rid] = decode(rid, record, model_class)
        except (ResultValidationError, UnknownModelError) as exc:
            invalid[rid] = exc
    if invalid and on_invalid == "raise":
        raise InvalidResultsError.of(
            invalid,
            found,
            total=len(records),
            hint='pass on_invalid="skip" to leave them out',
        )
    return found


def settle(
    behavior: SetBehavior,
    result_id: str,
    record: Record,
    existing: Record | None,
    location: str,
) -> bool:
    """The outcome of an insert-if-absent under ``behavior``.

    Raises:
        ResultExistsError: RAISE_IF_EXISTS and the ID was taken.
        ResultConflictError: RAISE_IF_DIFFERENT and the stored content differs.
    """
    if existing is None:
        return True
    if behavior is SetBehavior.SKIP_IF_EXISTS:
        return False
    if behavior is SetBehavior.RAISE_IF_EXISTS:
        raise ResultExistsError(
            f"result {result_id!r} already exists in {location}; "
            "pass behavior=SetBehavior.OVERWRITE or SKIP_IF_EXISTS"
        )
    if existing.same_content(record):
        return False
    what = (
        "data"
        if (existing.model_type, existing.namespace) == (record.model_type, record.namespace)
        else f"type {existing.namespace}:{existing.model_type}"
    )
    raise ResultConflictError(
        f"result {result_id!r} in {location} holds different {what} than the "
        f"{record.namespace}:{record.model_type} being set"
    )


def not_found(result_id: str, location: str) -> ResultNotFoundError:
    """The error for a missing ID, naming the store."""
    return ResultNotFoundError(f"no result stored under {result_id!r} in {location}")
