"""Result types: a Pydantic model class, or any type a Pydantic ``TypeAdapter`` validates.

A model class is stored as it always was: its class name is the record's type tag,
in the namespace it is registered in. Any other type (``list[Score]``, ``tuple[int,
Score]``, ``Score | None``, ``int``, ``dict[str, float]``) is stored under the text of
the annotation as its tag (``list[Score]``), with the value's JSON as the data, in the
namespace of the models it holds. ``type_from_tag`` rebuilds such a tag for ``get(id)``
without a type from a fixed set of builtin names and the models registered in the
record's namespace only: it never imports anything by name (importing runs code).
Anything else in a tag (``Literal``, a datetime, a dataclass) raises
``UnknownModelError``; the caller then gives the type (``get(id, list[Score])``).
"""

from __future__ import annotations

import re
import threading
import types
import typing
from typing import Any, TypeGuard, Union

from pydantic import BaseModel, TypeAdapter
from pydantic.errors import PydanticSchemaGenerationError, PydanticUserError

from results_flow.errors import UnknownModelError
from results_flow.registry import get_model_class
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


def models_in(result_type: object) -> list[type[BaseModel]]:
    """The model classes a type names (``Score`` of ``dict[str, Score | None]``), in order."""
    if is_model_class(result_type):
        return [result_type]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(result_type):
        found.extend(model for model in models_in(arg) if model not in found)
    return found


#: The names a tag may use besides registered models, and what they mean.
_TAG_NAMES: dict[str, Any] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "bytes": bytes,
    "None": None,
    "Any": typing.Any,
    "list": list,
    "tuple": tuple,
    "dict": dict,
    "set": set,
    "frozenset": frozenset,
}
_TOKEN = re.compile(r"\s*(\.\.\.|[A-Za-z_][A-Za-z0-9_]*|[\[\],|])")


def is_builtin_tag(tag: str) -> bool:
    """Whether a plain tag names a builtin type (``int``) rather than a model."""
    return tag in _TAG_NAMES


def type_from_tag(tag: str, namespace: str) -> Any:
    """The type a tag written by ``type_tag`` names, from builtin names and the models
    registered in ``namespace`` only.

    Raises:
        UnknownModelError: a name that is neither builtin nor registered there, or text
            that is no such type expression.
    """
    tokens: list[str] = []
    position = 0
    text = tag.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise _unreadable(tag, namespace)
        tokens.append(match.group(1))
        position = match.end()
    parser = _TagParser(tokens, tag, namespace)
    result = parser.union()
    if parser.position != len(tokens):
        raise _unreadable(tag, namespace)
    return result


def _unreadable(tag: str, namespace: str) -> UnknownModelError:
    return UnknownModelError(
        f"type tag {tag!r} (namespace {namespace!r}) names no type built from builtin "
        "types and registered models"
    )


class _TagParser:
    """Recursive descent over a tag's tokens: ``union := term ('|' term)*``,
    ``term := NAME ('[' union (',' union)* ']')?`` (``...`` allowed as an argument)."""

    def __init__(self, tokens: list[str], tag: str, namespace: str) -> None:
        self.tokens = tokens
        self.tag = tag
        self.namespace = namespace
        self.position = 0

    def peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise _unreadable(self.tag, self.namespace)
        self.position += 1
        return token

    def union(self) -> Any:
        members = [self.term()]
        while self.peek() == "|":
            self.take("|")
            members.append(self.term())
        return members[0] if len(members) == 1 else Union[tuple(members)]  # noqa: UP007

    def term(self) -> Any:
        name = self.take()
        if name == "...":
            return Ellipsis
        if not name.isidentifier():
            raise _unreadable(self.tag, self.namespace)
        base = _TAG_NAMES[name] if name in _TAG_NAMES else get_model_class(name, self.namespace)
        if self.peek() != "[":
            return base
        self.take("[")
        args = [self.union()]
        while self.peek() == ",":
            self.take(",")
            args.append(self.union())
        self.take("]")
        if base not in (list, tuple, dict, set, frozenset):
            raise _unreadable(self.tag, self.namespace)
        return base[tuple(args)] if len(args) > 1 else base[args[0]]
