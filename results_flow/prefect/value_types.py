"""Types of Prefect results as JSON trees, so a cache hit returns the types a run returned.

A type is written as a small JSON tree (``{"t": "list", "args": [{"t":
"myapp.models:Score"}]}``) and rebuilt only from classes already imported in this
process: a tree that names a module nobody imported raises ``UnknownModelError``
rather than importing it, since importing a module runs its code. Only Pydantic models,
enums, dataclasses and a fixed set of plain types may be named.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
import types
import typing
from collections.abc import Callable
from decimal import Decimal
from enum import Enum
from functools import lru_cache
from pathlib import Path, PurePath
from typing import Any, Union
from uuid import UUID

from pydantic import BaseModel, TypeAdapter
from pydantic.errors import PydanticSchemaGenerationError

from results_flow.errors import CorruptRecordError, UnknownModelError

TypeTree = dict[str, Any]

#: Classes besides models, enums and dataclasses that a tree may name.
PLAIN_TYPES: frozenset[type] = frozenset(
    {
        int,
        float,
        str,
        bool,
        bytes,
        type(None),
        dt.datetime,
        dt.date,
        dt.time,
        dt.timedelta,
        UUID,
        Decimal,
        Path,
        PurePath,
    }
)
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
    """The annotation a tree describes, from classes already imported.

    Raises:
        UnknownModelError: a class's module is not imported, or it lacks the class.
        CorruptRecordError: the tree is not one ``tree_of_*`` writes, or names a class
            that is not a model, enum, dataclass or plain type.
    """
    if not isinstance(tree, dict) or not isinstance(tree.get("t"), str):
        raise CorruptRecordError(f"not a result type: {tree!r}")
    kind = tree["t"]
    args = [annotation_of_tree(arg) for arg in tree.get("args", [])]
    if kind == "any":
        return Any
    if kind == "none":
        return type(None)
    if kind == "union":
        return Union[tuple(args)]  # noqa: UP007 - built from a runtime tuple
    if kind == "tuple...":
        variadic: Any = tuple  # built at run time, not a static annotation
        return variadic[args[0], ...]
    if kind in CONTAINERS:
        return CONTAINERS[kind][tuple(args)] if args else CONTAINERS[kind]
    return _imported_class(kind)


def _imported_class(path: str) -> type:
    module_name, _, qualname = path.partition(":")
    module = sys.modules.get(module_name)
    if module is None:
        raise UnknownModelError(
            f"the result's type {qualname} lives in module {module_name!r}, which is not "
            "imported in this process; import it first (results_flow never imports a "
            "module a stored record names)"
        )
    found: object = module
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if not isinstance(found, type):
        raise UnknownModelError(f"module {module_name!r} has no class {qualname!r}")
    if not _nameable(found):
        raise CorruptRecordError(
            f"a result type names {path!r}, which is not a model, enum, dataclass or plain type"
        )
    return found


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
    except (PydanticSchemaGenerationError, TypeError):
        return None


def return_annotation(fn: Callable[..., Any]) -> Any:
    """The resolved return annotation of ``fn``, or None when it has none or it cannot be
    resolved (a name that only exists under ``TYPE_CHECKING``)."""
    try:
        hints = typing.get_type_hints(fn)
    except (NameError, TypeError, AttributeError):
        return None
    return hints.get("return")
