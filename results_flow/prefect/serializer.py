"""``PydanticSerializer``: Prefect results as JSON, validated against their model on load.

A model is written with its registry tag (class name and namespace) and its data in
Pydantic's JSON mode. Loading validates the data against the serializer's ``model``
when one is set, else against the class registered under the tag; nothing is ever
imported or unpickled because a blob says so. Values that are not models (numbers,
lists of plain data) are kept as JSON and come back as JSON data.
"""

from __future__ import annotations

import json
from typing import Any

from prefect.serializers import Serializer
from prefect.utilities.importtools import from_qualified_name
from pydantic import BaseModel, Field, ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python

from results_flow.errors import (
    CorruptRecordError,
    ResultsTaskError,
    ResultValidationError,
    UnknownModelError,
)
from results_flow.registry import get_model_class, namespace_of

SERIALIZER_TYPE = "results_flow_pydantic"


class PydanticSerializer(Serializer):  # not Serializer[Any]: pydantic would build a subclass
    """Serializes Pydantic models to JSON and validates them on load."""

    type: str = Field(default=SERIALIZER_TYPE, frozen=True)
    model: str | None = Field(
        default=None,
        description=(
            "Dotted path of the Pydantic model every result is validated as "
            "(e.g. 'myapp.models.Score'). When empty, the model registered with "
            "results_flow.register_model under the stored type tag is used."
        ),
    )

    def dumps(self, obj: Any) -> bytes:
        """JSON bytes of a model (with its tag) or of plain JSON data.

        Raises:
            ResultValidationError: the value has no JSON form.
        """
        try:
            if isinstance(obj, BaseModel):
                cls = type(obj)
                doc: dict[str, Any] = {
                    "model_type": cls.__name__,
                    "namespace": namespace_of(cls),
                    "data": obj.model_dump(mode="json"),
                }
            elif isinstance(obj, BaseException):
                doc = {"exception": {"type": type(obj).__qualname__, "message": str(obj)}}
            else:
                doc = {"json": to_jsonable_python(obj)}
            return json.dumps(doc, ensure_ascii=False).encode("utf-8")
        except (PydanticSerializationError, TypeError, ValueError) as exc:
            raise ResultValidationError(
                f"PydanticSerializer cannot write a {type(obj).__name__} as JSON: {exc}"
            ) from exc

    def loads(self, blob: bytes) -> Any:
        """The value ``dumps`` wrote, a model validated against its class.

        Raises:
            CorruptRecordError: the blob was not written by this serializer.
            UnknownModelError: no ``model`` set and the tag is not registered.
            ResultValidationError: the data does not validate as the model.
        """
        try:
            doc = json.loads(blob)
        except ValueError as exc:
            raise CorruptRecordError(f"not a {SERIALIZER_TYPE} blob: {exc}") from exc
        if not isinstance(doc, dict):
            raise CorruptRecordError(f"not a {SERIALIZER_TYPE} blob: {type(doc).__name__}")
        if "json" in doc:
            return doc["json"]
        if "exception" in doc:
            info = doc["exception"]
            return RuntimeError(f"{info.get('type')}: {info.get('message')}")
        try:
            tag, namespace, data = doc["model_type"], doc["namespace"], doc["data"]
        except KeyError as exc:
            raise CorruptRecordError(f"not a {SERIALIZER_TYPE} blob: no {exc}") from exc
        cls = model_class(self.model, tag, namespace)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ResultValidationError(
                f"a Prefect result stored as {namespace}:{tag} does not validate as "
                f"{cls.__name__}: {exc}"
            ) from exc


def model_class(model: str | None, tag: str, namespace: str) -> type[BaseModel]:
    """The class a blob is validated as: ``model`` when given, else the registered tag.

    Raises:
        UnknownModelError: no ``model`` and the tag is not registered.
        ResultsTaskError: ``model`` does not name a pydantic model.
    """
    if model is None:
        try:
            return get_model_class(tag, namespace)
        except UnknownModelError as exc:
            raise UnknownModelError(
                f"{exc}, or give PydanticSerializer(model='package.module.{tag}')"
            ) from exc
    cls = from_qualified_name(model)
    if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
        raise ResultsTaskError(f"PydanticSerializer(model={model!r}) is not a pydantic model")
    return cls
