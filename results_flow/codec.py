"""The envelope codec: a Pydantic model (or any value of a type a ``TypeAdapter``
validates) to the stored record and back.

``encode`` checks that a value reads back as its own type before it is stored (so
whatever is stored can be read); ``decode`` validates a stored record as the asked
type or the registered class of its tag. The only place Pydantic meets the store.
A value of another type than a model is tagged with its annotation's text
(``results_flow.result_types``); reading it back needs that type from the caller.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from results_flow.errors import ResultValidationError, UnknownModelError
from results_flow.records import Record, StoredValue, load_json, utc_now
from results_flow.registry import DEFAULT_NAMESPACE, get_model_class, namespace_of
from results_flow.result_types import (
    adapter_of,
    is_builtin_tag,
    is_model_class,
    models_in,
    type_from_tag,
    type_tag,
)
from results_flow.upgrades import upgrade, upgrades_of

M = TypeVar("M", bound=BaseModel)


def encode(
    result_id: str,
    data: Any,
    namespace: str | None,
    metadata: Mapping[str, Any] | None,
    result_type: Any = None,
) -> Record:
    """The record that stores ``data``, after checking it reads back as its own type.

    Without ``result_type`` (or with a model class that ``data`` is an instance of),
    ``data`` is a model stored under its class name. With another type, ``data`` is
    validated as that type and stored under the type's tag (``list[Score]``).

    Raises:
        ResultValidationError: not a model (and no type given), it does not validate as
            ``result_type``, or its JSON does not validate as its type.
        TypeError: ``result_type`` is no type Pydantic can validate.
    """
    if result_type is not None and not (
        is_model_class(result_type) and isinstance(data, result_type)
    ):
        return _encode_typed(result_id, data, namespace, metadata, result_type)
    if not isinstance(data, BaseModel):
        raise ResultValidationError(
            f"result {result_id!r}: set() takes a pydantic model instance, "
            f"not {type(data).__name__}; pass result_type= to store another type"
        )
    cls = type(data)
    try:
        text = data.model_dump_json(warnings="error")
        cls.model_validate_json(text)
    except (ValidationError, PydanticSerializationError) as exc:
        raise ResultValidationError(
            f"result {result_id!r}: {cls.__name__} does not round-trip through JSON: {exc}"
        ) from exc
    return _record(result_id, cls.__name__, namespace or namespace_of(cls), text, metadata)


def _encode_typed(
    result_id: str,
    data: Any,
    namespace: str | None,
    metadata: Mapping[str, Any] | None,
    result_type: Any,
) -> Record:
    """``encode`` of a value validated as ``result_type`` (a model class or any type)."""
    adapter = adapter_of(result_type)
    tag = type_tag(result_type)
    try:
        value = adapter.validate_python(data)
    except ValidationError as exc:
        raise ResultValidationError(
            f"result {result_id!r}: a {type(data).__name__} does not validate as {tag}: {exc}"
        ) from exc
    try:
        text = adapter.dump_json(value, warnings="error").decode()
        adapter.validate_json(text)
    except (ValidationError, PydanticSerializationError) as exc:
        raise ResultValidationError(
            f"result {result_id!r}: {tag} does not round-trip through JSON: {exc}"
        ) from exc
    if namespace is None:  # where get(id) without a type looks its models up
        models = models_in(result_type)
        namespace = namespace_of(models[0]) if models else DEFAULT_NAMESPACE
    return _record(result_id, tag, namespace, text, metadata)


def _record(
    result_id: str, tag: str, namespace: str, text: str, metadata: Mapping[str, Any] | None
) -> Record:
    try:
        # NaN and Infinity are not JSON: a strict reader of the stored record rejects them;
        # metadata too deep for the reader (load_json) would leave a record no one can read.
        extra = load_json(json.dumps(dict(metadata or {}), allow_nan=False))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ResultValidationError(
            f"result {result_id!r}: metadata must be JSON-serializable: {exc}"
        ) from exc
    now = utc_now()
    return Record(
        model_type=tag,
        namespace=namespace,
        data=text,
        created_at=now,
        updated_at=now,
        metadata=extra,
    )


@overload
def decode(result_id: str, record: StoredValue, model_class: type[M]) -> M: ...
@overload
def decode(result_id: str, record: StoredValue, model_class: Any) -> Any: ...
def decode(result_id: str, record: StoredValue, model_class: Any) -> Any:
    """Validate a stored record as ``model_class`` (a model class or any type a
    ``TypeAdapter`` validates, such as ``list[Score]``), or, without one, as the type
    its tag names: a registered model, or a type built from builtin names and the
    models registered in its namespace (``list[Score]``; never an import).

    Raises:
        UnknownModelError: no type given and the stored tag names a model that is not
            registered in its namespace, or a type not built that way.
        ResultValidationError: the data does not validate.
        TypeError: ``model_class`` is no type Pydantic can validate.
    """
    if model_class is None:
        tag = record.model_type
        if tag.isidentifier() and not is_builtin_tag(tag):
            try:
                cls: type[BaseModel] = get_model_class(tag, record.namespace)
            except UnknownModelError as exc:
                raise UnknownModelError(f"result {result_id!r}: {exc}") from exc
        else:
            return _decode_typed(result_id, record, _type_of_tag(result_id, record))
    elif is_model_class(model_class):
        cls = model_class
    else:
        return _decode_typed(result_id, record, model_class)
    try:
        return cls.model_validate_json(record.data)
    except ValidationError as exc:
        raise ResultValidationError(
            f"result {result_id!r} (stored as {record.namespace}:{record.model_type}) "
            f"does not validate as {cls.__name__}: {exc}"
        ) from exc


@dataclass(frozen=True)
class Decoded:
    """A record read as its type: the value, and the record to write back in place of
    the one read when an upgrade made the value (None: the record was valid as it is)."""

    value: Any
    rewrite: Record | None = None


def decode_or_upgrade(result_id: str, record: Record, model_class: Any) -> Decoded:
    """``decode``, or, when the record does not validate as a model class (``model_class``
    or the class of its tag) that has upgrades (``results_flow.upgrades``), the model
    its upgrades make of it and the record that stores it: same ID, creation time and
    metadata, with ``metadata["upgraded"]`` saying from what, by which steps, and when.

    Raises:
        UpgradeFailedError: the record does not validate and no upgrade brings it to
            its model (a ``ResultValidationError``).
        The errors of ``decode``.
    """
    try:
        return Decoded(decode(result_id, record, model_class))
    except ResultValidationError as exc:
        model = model_class if model_class is not None else _class_of_tag(record)
        if not upgrades_of(model):
            raise
        why = str(exc)
    upgraded = upgrade(result_id, model, record.data, why)
    value = upgraded.value
    same_tag = record.model_type == type(value).__name__
    now = utc_now()
    metadata = {
        **record.metadata,
        "upgraded": {
            "from": f"{record.namespace}:{record.model_type}",
            "steps": list(upgraded.steps),
            "at": now.isoformat(),
        },
    }
    rewrite = encode(result_id, value, record.namespace if same_tag else None, metadata)
    return Decoded(value, rewrite.replacing(record))


def _class_of_tag(record: StoredValue) -> Any:
    """The registered model class a record's tag names, or None (it names another type)."""
    tag = record.model_type
    if not tag.isidentifier() or is_builtin_tag(tag):
        return None
    return get_model_class(tag, record.namespace)


def _type_of_tag(result_id: str, record: StoredValue) -> Any:
    """The type a stored tag names (see ``result_types.type_from_tag``).

    Raises:
        UnknownModelError: it names none; says how to read the result with its type.
    """
    try:
        result_type = type_from_tag(record.model_type, record.namespace)
        adapter_of(result_type)
    except (UnknownModelError, TypeError) as exc:
        raise UnknownModelError(
            f"result {result_id!r} is stored as {record.model_type!r} (namespace "
            f"{record.namespace!r}): {exc}; register its models in that namespace, or read "
            f"it with its type: get({result_id!r}, {record.model_type})"
        ) from exc
    return result_type


def _decode_typed(result_id: str, record: StoredValue, result_type: Any) -> Any:
    """``decode`` through the ``TypeAdapter`` of any type."""
    try:
        adapter = adapter_of(result_type)
    except TypeError as exc:
        raise TypeError(f"result {result_id!r}: {exc}") from exc
    try:
        return adapter.validate_json(record.data)
    except ValidationError as exc:
        raise ResultValidationError(
            f"result {result_id!r} (stored as {record.namespace}:{record.model_type}) "
            f"does not validate as {type_tag(result_type)}: {exc}"
        ) from exc
