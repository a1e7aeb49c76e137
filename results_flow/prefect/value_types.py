"""Types of Prefect results as JSON trees, so a cache hit returns the types a run returned.

A type is written as a small JSON tree (``{"t": "list", "args": [{"t":
"myapp.models:Score"}]}``). It is rebuilt only from what the trust gate
(``results_flow.prefect.trust``) trusts: the standard containers, plain types and models
registered with ``register_model``. Any other class a tree names (an enum, a dataclass,
an unregistered model, or any class at all in a planted blob) raises
``UnknownModelError``; nothing a tree names is ever imported.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from enum import Enum
from functools import lru_cache
from typing import Any, Union

from pydantic import BaseModel, TypeAdapter
from pydantic.errors import PydanticSchemaGenerationError

from results_flow.errors import CorruptRecordError
from results_flow.prefect.trust import PLAIN_TYPES, trusted_class
from results_flow.settings import MAX_TYPE_DEPTH

TypeTree = dict[str, Any]

CONTAINERS: dict[str, Any] = {
    "list": list,
    "tuple": tuple,
    "dict": dict,
    "set": set,
    "frozenset": frozenset,
}
ANY: TypeTree = {"t": "any"}


def tree_of_annotation(annotation: Any) -> TypeTree | None:
    """The tree of a type annotation, or None when it names something a tree cannot."""
    if annotation is Any:
        return ANY
    if annotation is None or annotation is type(None):
        return {"t": "none"}
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return _node("union", typing.get_args(annotation))
    if origin in CONTAINERS.values():
        args = typing.get_args(annotation)
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return _node("tuple...", args[:1])
        return _node(origin.__name__, args)
    if isinstance(annotation, type) and _nameable(annotation):
        return {"t": f"{annotation.__module__}:{annotation.__qualname__}"}
    return None


def _node(kind: str, args: tuple[Any, ...]) -> TypeTree | None:
    trees = [tree_of_annotation(arg) for arg in args]
    if any(tree is None for tree in trees):
        return None
    return {"t": kind, "args": trees} if trees else {"t": kind}


def tree_of_value(value: Any) -> TypeTree:
    """The tree of a type inferred from a value (elements of mixed types give a union)."""
    if isinstance(value, (list, set, frozenset)):
        return _container(type(value).__name__, [_union(tree_of_value(v) for v in value)])
    if isinstance(value, tuple):
        return {"t": "tuple", "args": [tree_of_value(v) for v in value]}
    if isinstance(value, dict):
        keys = _union(tree_of_value(k) for k in value)
        return _container("dict", [keys, _union(tree_of_value(v) for v in value.values())])
    return tree_of_annotation(type(value)) or ANY


def _container(kind: str, args: list[TypeTree | None]) -> TypeTree:
    return {"t": kind, "args": args} if all(args) else {"t": kind}


def _union(trees: typing.Iterable[TypeTree]) -> TypeTree | None:
    distinct: list[TypeTree] = []
    for tree in trees:
        if tree not in distinct:
            distinct.append(tree)
    if not distinct:
        return None
    return distinct[0] if len(distinct) == 1 else {"t": "union", "args": distinct}


def annotation_of_tree(tree: object) -> Any:
    """The annotation a tree describes, of containers, plain types and registered models.

    Raises:
        UnknownModelError: the tree names a class that is neither plain nor registered.
        CorruptRecordError: the tree is not one ``tree_of_*`` writes.
    """
    annotation = _annotation(tree, 0)
    if adapter_for(annotation) is None:
        raise CorruptRecordError("a result type that cannot be validated")
    return annotation


def _annotation(tree: object, depth: int) -> Any:
    if depth > MAX_TYPE_DEPTH:
        raise CorruptRecordError(f"a result type nested more than {MAX_TYPE_DEPTH} levels")
    if not isinstance(tree, dict) or not isinstance(tree.get("t"), str):
        raise CorruptRecordError(f"not a result type: {tree!r}")
    kind, arg_trees = tree["t"], tree.get("args", [])
    if not isinstance(arg_trees, list):
        raise CorruptRecordError(f"not a result type: {tree!r}")
    args = [_annotation(arg, depth + 1) for arg in arg_trees]
    if kind == "any":
        return Any
    if kind == "none":
        return type(None)
    if kind in ("union", "tuple...") and not args:
        raise CorruptRecordError(f"not a result type: {tree!r}")
    if kind == "union":
        return Union[tuple(args)]  # noqa: UP007 - built from a runtime tuple
    if kind == "tuple...":
        variadic: Any = tuple  # built at run time, not a static annotation
        return variadic[args[0], ...]
    if kind in CONTAINERS:
        return CONTAINERS[kind][tuple(args)] if args else CONTAINERS[kind]
    return trusted_class(kind)


def _nameable(cls: type) -> bool:
    return cls in PLAIN_TYPES or issubclass(cls, (BaseModel, Enum)) or dataclasses.is_dataclass(cls)


def adapter_for(annotation: Any) -> TypeAdapter[Any] | None:
    """A validator of ``annotation``, or None when Pydantic cannot validate it."""
    try:
        return _cached_adapter(annotation)
    except TypeError:  # an unhashable annotation (Annotated with a list, ...)
        return _adapter(annotation)


@lru_cache(maxsize=256)
def _cached_adapter(annotation: Any) -> TypeAdapter[Any] | None:
    return _adapter(annotation)


def _adapter(annotation: Any) -> TypeAdapter[Any] | None:
    try:
        return TypeAdapter(annotation)
    except (PydanticSchemaGenerationError, TypeError, RecursionError):
        return None


def return_annotation(fn: Callable[..., Any]) -> Any:
    """The resolved return annotation of ``fn``, or None when it has none or it cannot be
    resolved (a name that only exists under ``TYPE_CHECKING``)."""
    try:
        hints = typing.get_type_hints(fn)
    except (NameError, TypeError, AttributeError):
        return None
    return hints.get("return")
