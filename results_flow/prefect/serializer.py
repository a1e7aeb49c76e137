"""``PydanticSerializer``: Prefect results as JSON, validated against their model on load.

A model is written with its registry tag (class name and namespace) and its data in
Pydantic's JSON mode. Loading validates the data against the serializer's ``model``
when one is set (it must name a registered model), else against the class registered
under the tag; nothing is ever imported or unpickled because a blob says so.

Every blob also records the type of its value, so that a cache hit returns what a
computed run returns (``list[Score]``, ``tuple[int, Score]``, ``dict[str, Score]``,
``Score | None``, nested): the return annotation of the task being run when there is
one, else a type inferred from the value. Loading validates the JSON data against the
return annotation of the task that reads it when there is one (what the code expects
now), else against the recorded type, rebuilt only from what the trust gate
(``results_flow.prefect.trust``) trusts: containers, plain types and registered models.
Any other class a blob names raises ``UnknownModelError``.
"""

from __future__ import annotations

import json
from typing import Any

from prefect.context import TaskRunContext
from prefect.serializers import Serializer
from pydantic import BaseModel, Field, ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python

from results_flow.errors import CorruptRecordError, ResultValidationError, UnknownModelError
from results_flow.prefect.trust import SERIALIZER_TYPE, trusted_model
from results_flow.prefect.value_types import (
    TypeTree,
    adapter_for,
    annotation_of_tree,
    return_annotation,
    tree_of_annotation,
    tree_of_value,
)
from results_flow.registry import get_model_class, namespace_of


class PydanticSerializer(Serializer):  # not Serializer[Any]: pydantic would build a subclass
    """Serializes Pydantic models to JSON and validates them on load."""

    type: str = Field(default=SERIALIZER_TYPE, frozen=True)
    model: str | None = Field(
        default=None,
        description=(
            "Dotted path of the Pydantic model every result is validated as "
            "(e.g. 'myapp.models.Score'); it must be registered with "
            "results_flow.register_model. When empty, the model registered under the "
            "stored type tag is used."
        ),
    )

    def dumps(self, obj: Any) -> bytes:
        """JSON bytes of a model (with its tag) or of plain JSON data, with its type.

        Raises:
            ResultValidationError: the value has no JSON form.
        """
        try:
            if isinstance(obj, BaseException):
                doc: dict[str, Any] = {
                    "exception": {"type": type(obj).__qualname__, "message": str(obj)}
                }
            elif isinstance(obj, BaseModel):
                cls = type(obj)
                doc = {
                    "model_type": cls.__name__,
                    "namespace": namespace_of(cls),
                    "data": obj.model_dump(mode="json"),
                }
            else:
                doc = {"json": to_jsonable_python(obj)}
            if "exception" not in doc:
                doc["type"] = recorded_type(obj)
            return json.dumps(doc, ensure_ascii=False).encode("utf-8")
        except (PydanticSerializationError, TypeError, ValueError) as exc:
            raise ResultValidationError(
                f"PydanticSerializer cannot write a {type(obj).__name__} as JSON: {exc}"
            ) from exc

    def loads(self, blob: bytes) -> Any:
        """The value ``dumps`` wrote, validated as the reading task's return type.

        Raises:
            CorruptRecordError: the blob was not written by this serializer.
            UnknownModelError: the type is not trusted: ``model`` names no registered
                model, or (no ``model``, outside an annotated task) the recorded type
                names a class that is neither plain nor registered and the tag is not
                registered.
            ResultValidationError: the data does not validate as its type.
        """
        try:
            doc = json.loads(blob)
        except (ValueError, RecursionError) as exc:
            raise CorruptRecordError(f"not a {SERIALIZER_TYPE} blob: {exc}") from exc
        if not isinstance(doc, dict):
            raise CorruptRecordError(f"not a {SERIALIZER_TYPE} blob: {type(doc).__name__}")
        if "exception" in doc:
            info = doc["exception"]
            if not isinstance(info, dict):
                raise CorruptRecordError(f"not a {SERIALIZER_TYPE} blob: bad exception {info!r}")
            return RuntimeError(f"{info.get('type')}: {info.get('message')}")
        if "json" in doc:
            annotation = reading_annotation()
            if annotation is None and "type" in doc:
                annotation = annotation_of_tree(doc["type"])
            return validated(doc["json"], annotation)
        try:
            tag, namespace, data = doc["model_type"], doc["namespace"], doc["data"]
        except KeyError as exc:
            raise CorruptRecordError(f"not a {SERIALIZER_TYPE} blob: no {exc}") from exc
        if not (isinstance(tag, str) and isinstance(namespace, str)):
            raise CorruptRecordError(
                f"not a {SERIALIZER_TYPE} blob: a tag {tag!r} in {namespace!r}"
            )
        annotation = None if self.model is not None else reading_annotation()
        if annotation is None and self.model is None and "type" in doc:
            try:
                annotation = annotation_of_tree(doc["type"])
            except UnknownModelError:
                annotation = None  # the registry may still know the tag
        if annotation is None:
            annotation = model_class(self.model, tag, namespace)
        return validated(data, annotation)


def recorded_type(obj: Any) -> TypeTree:
    """The type a blob records: the running task's return annotation when a tree can
    name it, else one inferred from the value."""
    ctx = TaskRunContext.get()
    if ctx is not None:
        annotation = return_annotation(ctx.task.fn)
        if annotation is not None:
            tree = tree_of_annotation(annotation)
            if tree is not None:
                return tree
    return tree_of_value(obj)


def reading_annotation() -> Any:
    """The return annotation of the task this process is running, when Pydantic can
    validate it (None outside a task, for ``Any`` or no annotation)."""
    ctx = TaskRunContext.get()
    if ctx is None:
        return None
    annotation = return_annotation(ctx.task.fn)
    if annotation is None or annotation is Any or adapter_for(annotation) is None:
        return None
    return annotation


def validated(data: Any, annotation: Any) -> Any:
    """JSON ``data`` validated as ``annotation`` (as it stands when None or unvalidatable).

    Raises:
        ResultValidationError: the data does not validate; names the type.
    """
    adapter = None if annotation is None else adapter_for(annotation)
    if adapter is None:
        return data
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        shown = annotation.__name__ if isinstance(annotation, type) else str(annotation)
        raise ResultValidationError(
            f"a Prefect result does not validate as {shown}: {exc}"
        ) from exc


def model_class(model: str | None, tag: str, namespace: str) -> type[BaseModel]:
    """The class a blob is validated as: ``model`` when given, else the registered tag.

    Raises:
        UnknownModelError: ``model`` names no registered model, or no ``model`` and the
            tag is not registered.
    """
    if model is None:
        return get_model_class(tag, namespace)
    return trusted_model(model)
