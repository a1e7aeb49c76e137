"""Result types: a Pydantic model class, or any type a Pydantic ``TypeAdapter`` validates.

A model class is stored as it always was: its class name is the record's type tag,
in the namespace it is registered in. Any other type (``list[Score]``, ``tuple[int,
Score]``, ``Score | None``, ``int``, ``dict[str, float]``) is stored under the text of
the annotation as its tag (``list[Score]``), with the value's JSON as the data. That
tag is a label for people and tools, never turned back into a type: rebuilding types
from text would mean importing classes by name, which runs code. Reading such a
record needs the type from the caller (``get(id, list[Score])``).
"""

from __future__ import annotations

import threading
import types
import typing
from typing import Any, TypeGuard, Union

from pydantic import BaseModel, TypeAdapter
from pydantic.errors import PydanticSchemaGenerationError, PydanticUserError

from results_flow.settings import TYPE_TAG_MAX_LENGTH


def is_model_class(result_type: object) -> TypeGuard[type[BaseModel]]:
    """Whether ``result_type`` is a Pydantic model class (stored the classic way)."""
    return isinstance(result_type, type) and issubclass(result_type, BaseModel)


def type_tag(result_type: object) -> str:
    """The record's type tag of a type: a model's class name, else the annotation's text
    with bare class names (``list[Score]``, ``Score | None``, ``dict[str, float]``),
    cut to the stores' column width."""
    text = _text(result_type)
    if len(text) <= TYPE_TAG_MAX_LENGTH:
        return text
    return text[: TYPE_TAG_MAX_LENGTH - 1] + "…"


def _text(tp: object) -> str:
    if tp is None or tp is type(None):
        return "None"
    if tp is Ellipsis:
        return "..."
    if tp is typing.Any:
        return "Any"
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Union or origin is types.UnionType:
        return " | ".join(_text(arg) for arg in args)
    if origin is typing.Literal:
        return f"Literal[{', '.join(repr(arg) for arg in args)}]"
    if origin is typing.Annotated:
        return _text(args[0])
    if origin is not None:
        name = getattr(origin, "__name__", None) or str(origin)
        return f"{name}[{', '.join(_text(arg) for arg in args)}]" if args else name
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


_adapters: dict[Any, TypeAdapter[Any]] = {}
_adapters_lock = threading.Lock()


def adapter_of(result_type: Any) -> TypeAdapter[Any]:
    """The ``TypeAdapter`` of a type, built once per type per process (building one
    costs about a millisecond; an unhashable type gets a fresh one each time).

    Raises:
        TypeError: Pydantic cannot validate this type; names it.
    """
    try:
        with _adapters_lock:
            cached = _adapters.get(result_type)
    except TypeError:  # unhashable (Annotated with unhashable metadata)
        return _build(result_type)
    if cached is not None:
        return cached
    adapter = _build(result_type)
    with _adapters_lock:
        _adapters[result_type] = adapter
    return adapter


def _build(result_type: Any) -> TypeAdapter[Any]:
    if isinstance(result_type, str) or not _looks_like_type(result_type):
        raise TypeError(
            f"{result_type!r} is not a type: give a pydantic model class or a type "
            "expression such as list[Score]"
        )
    try:
        return TypeAdapter(result_type)
    except (PydanticSchemaGenerationError, PydanticUserError, TypeError, NameError) as exc:
        raise TypeError(f"pydantic cannot validate the type {_text(result_type)}: {exc}") from exc


def _looks_like_type(value: object) -> bool:
    """A class, a parametrized generic, a union, ``None`` or ``Any``: what may annotate
    a return; instances (``Point(x=1)``) and strings are not."""
    return (
        isinstance(value, type)
        or value is None
        or value is typing.Any
        or typing.get_origin(value) is not None
        or isinstance(value, _ALIAS_TYPES)
    )


#: ``type X = ...`` aliases (Python 3.12 and later).
_ALIAS_TYPES: tuple[type, ...] = tuple(
    alias for alias in (getattr(typing, "TypeAliasType", None),) if isinstance(alias, type)
)
