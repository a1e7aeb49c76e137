"""Column specs: what a row model's fields are, in words a file or a database understands.

A ``ColumnSpec`` names a column, its kind (integer, float, boolean, string, date,
datetime, time, decimal, uuid or json) and whether it may be empty. Specs are
derived from a Pydantic row model, kept next to stored data, and turned back into a
row model when a dataset is read without its schema (a joined table, say).
"""

from __future__ import annotations

import enum
import types
import uuid
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, create_model

ColumnKind = Literal[
    "integer", "float", "boolean", "string", "date", "datetime", "time", "decimal", "uuid", "json"
]

#: Checked in order: bool before int (bool is an int), datetime before date.
_KINDS: tuple[tuple[type, ColumnKind], ...] = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "float"),
    (Decimal, "decimal"),
    (str, "string"),
    (datetime, "datetime"),
    (date, "date"),
    (time, "time"),
    (uuid.UUID, "uuid"),
)
_PYTHON_TYPES: dict[ColumnKind, Any] = {
    "integer": int,
    "float": float,
    "boolean": bool,
    "string": str,
    "date": date,
    "datetime": datetime,
    "time": time,
    "decimal": Decimal,
    "uuid": uuid.UUID,
    "json": Any,
}


class ColumnSpec(BaseModel):
    """One column: name, kind, and whether it may hold no value."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: ColumnKind
    nullable: bool = True


def column_kind(annotation: Any) -> tuple[ColumnKind, bool]:
    """The kind of a field annotation and whether it admits None."""
    nullable = False
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        members = [a for a in get_args(annotation) if a is not type(None)]
        nullable = len(members) < len(get_args(annotation))
        if len(members) != 1:
            return "json", nullable
        annotation = members[0]
        origin = get_origin(annotation)
    if annotation is None or annotation is type(None):
        return "json", True
    if origin is Literal:
        values = get_args(annotation)
        kinds = {column_kind(type(v))[0] for v in values}
        return (kinds.pop() if len(kinds) == 1 else "json"), nullable
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            value_kinds = {column_kind(type(m.value))[0] for m in annotation}
            return (value_kinds.pop() if len(value_kinds) == 1 else "json"), nullable
        for python_type, kind in _KINDS:
            if issubclass(annotation, python_type):
                return kind, nullable
    return "json", nullable


def model_columns(model: type[BaseModel]) -> list[ColumnSpec]:
    """The column specs of a row model, in field order."""
    specs = []
    for name, field in model.model_fields.items():
        kind, nullable = column_kind(field.annotation)
        specs.append(ColumnSpec(name=name, kind=kind, nullable=nullable or not field.is_required()))
    return specs


def model_from_columns(name: str, columns: list[ColumnSpec]) -> type[BaseModel]:
    """A row model with one field per column spec (nullable columns default to None)."""
    fields: dict[str, Any] = {}
    for column in columns:
        python_type = _PYTHON_TYPES[column.kind]
        if column.nullable:
            fields[column.name] = (python_type | None if python_type is not Any else Any, None)
        else:
            fields[column.name] = (python_type, ...)
    model: type[BaseModel] = create_model(model_name(name), **fields)
    return model


def model_name(table: str) -> str:
    """A class name for a generated row model of ``table``."""
    words = "".join(ch if ch.isalnum() else " " for ch in table).split()
    return "".join(w[:1].upper() + w[1:] for w in words) + "Row" if words else "Row"
