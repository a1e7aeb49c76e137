"""The envelope codec: a Pydantic model to the stored record and back.

``encode`` checks that a model reads back as its own class before it is stored (so
whatever is stored can be read); ``decode`` validates a stored record as the asked
class or the registered class of its tag. The only place Pydantic meets the store.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar, overload

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from results_flow.errors import ResultValidationError, UnknownModelError
from results_flow.records import Record, load_json, utc_now
from results_flow.registry import get_model_class, namespace_of

M = TypeVar("M", bound=BaseModel)


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
        # NaN and Infinity are not JSON: a strict reader of the stored record rejects them;
        # metadata too deep for the reader (load_json) would leave a record no one can read.
        extra = load_json(json.dumps(dict(metadata or {}), allow_nan=False))
    except (TypeError, ValueError, RecursionError) as exc:
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
        TypeError: ``model_class`` is no pydantic model class.
    """
    if model_class is None:
        try:
            cls: type[BaseModel] = get_model_class(record.model_type, record.namespace)
        except UnknownModelError as exc:
            raise UnknownModelError(f"result {result_id!r}: {exc}") from exc
    elif isinstance(model_class, type) and issubclass(model_class, BaseModel):
        cls = model_class
    else:
        raise TypeError(
            f"result {result_id!r}: the model class must be a pydantic BaseModel subclass "
            f"or None, not {model_class!r}"
        )
    try:
        return cls.model_validate_json(record.data)
    except ValidationError as exc:
        raise ResultValidationError(
            f"result {result_id!r} (stored as {record.namespace}:{record.model_type}) "
            f"does not validate as {cls.__name__}: {exc}"
        ) from exc
