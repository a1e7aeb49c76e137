"""Transformation: validated tables in, validated tables out.

``CleanTransformer`` trims strings, fills empty values and drops repeated rows;
``JoinTransformer`` joins two tables into a new one whose row model is built from
both row models. Every row a transformer produces is validated by its row model, so
a transformed dataset holds validated rows as much as an extracted one does. A
transformer that raises is a bug in that transformer: the error propagates.
"""

from __future__ import annotations

import operator
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, create_model

from results_flow.data.columns import model_name
from results_flow.data.datasource import DataTable, validate_by_name
from results_flow.data.messages import Severity, ValidationResult
from results_flow.errors import ETLConstructionError

Tables = dict[str, DataTable]


class Transformer(ABC):
    """One transformation step over all tables of a dataset."""

    @abstractmethod
    def transform(self, tables: Tables, result: ValidationResult) -> Tables:
        """The tables after this step; findings go into ``result``."""


class CleanTransformer(Transformer):
    """Trims whitespace from strings, fills empty values and drops exact repeated rows.

    Args:
        tables: the tables to clean (all when None).
        strip_strings: trim leading and trailing whitespace of string values.
        fill: column -> value put where the column is empty (None).
        drop_duplicates: keep only the first of rows that are equal in every column.
    """

    def __init__(
        self,
        tables: Sequence[str] | None = None,
        *,
        strip_strings: bool = True,
        fill: Mapping[str, Any] | None = None,
        drop_duplicates: bool = False,
    ) -> None:
        self.tables = None if tables is None else set(tables)
        self.strip_strings = strip_strings
        self.fill = dict(fill or {})
        self.drop_duplicates = drop_duplicates

    def transform(self, tables: Tables, result: ValidationResult) -> Tables:
        cleaned = dict(tables)
        for name, table in tables.items():
            if self.tables is not None and name not in self.tables:
                continue
            rows = table.dump()
            for row in rows:
                for column, value in row.items():
                    if value is None and column in self.fill:
                        row[column] = self.fill[column]
                    elif self.strip_strings and isinstance(value, str):
                        row[column] = value.strip()
            if self.drop_duplicates:
                before = len(rows)
                rows = _unique_rows(rows)
                if len(rows) < before:
                    result.add(
                        Severity.INFO,
                        "duplicates_dropped",
                        f"table {name!r}: {before - len(rows)} repeated rows dropped",
                        table=name,
                    )
            validated = validate_by_name(table.model, rows)
            cleaned[name] = DataTable(name, table.model, validated)
        return cleaned


class JoinTransformer(Transformer):
    """Joins ``left`` and ``right`` on key columns into a new table ``into``.

    The new row model has the left columns, then the right columns; a right column
    whose name is taken is prefixed with ``<right>_``, and the right key columns are
    left out when they are named like the left ones. In a left join the right
    columns become optional.

    Args:
        left: the left table.
        right: the right table.
        on: key column(s), named alike in both tables, or (left, right) pairs.
        into: the new table's name.
        how: ``inner`` keeps matched left rows; ``left`` keeps every left row.
        keep_inputs: keep ``left`` and ``right`` in the dataset.
    """

    def __init__(
        self,
        left: str,
        right: str,
        on: str | Sequence[str] | Sequence[tuple[str, str]],
        into: str,
        *,
        how: Literal["inner", "left"] = "inner",
        keep_inputs: bool = True,
    ) -> None:
        pairs: list[tuple[str, str]] = []
        for item in [on] if isinstance(on, str) else on:
            pairs.append((item, item) if isinstance(item, str) else (item[0], item[1]))
        if not pairs:
            raise ETLConstructionError(
                f"join {left!r} with {right!r}: give at least one key column"
            )
        self.left, self.right, self.into = left, right, into
        self.pairs = pairs
        self.how = how
        self.keep_inputs = keep_inputs

    def transform(self, tables: Tables, result: ValidationResult) -> Tables:
        for name in (self.left, self.right):
            if name not in tables:
                result.add(
                    Severity.ERROR,
                    "join_input_missing",
                    f"join into {self.into!r}: table {name!r} is not in the dataset",
                    table=name,
                )
                return tables
        left, right = tables[self.left], tables[self.right]
        model, renames = self._model(left.model, right.model)
        right_key = operator.itemgetter(*(r for _, r in self.pairs))
        left_key = operator.itemgetter(*(lk for lk, _ in self.pairs))
        index: dict[Any, list[dict[str, Any]]] = {}
        for row in right.dump():
            index.setdefault(right_key(row), []).append(row)
        joined: list[dict[str, Any]] = []
        for row in left.dump():
            matches = index.get(left_key(row))
            if matches:
                for match in matches:
                    joined.append({**row, **{new: match[old] for old, new in renames.items()}})
            elif self.how == "left":
                joined.append(row)
        rows = validate_by_name(model, joined)
        out = (
            dict(tables)
            if self.keep_inputs
            else {k: v for k, v in tables.items() if k not in (self.left, self.right)}
        )
        out[self.into] = DataTable(self.into, model, rows)
        return out

    def _model(
        self, left: type[BaseModel], right: type[BaseModel]
    ) -> tuple[type[BaseModel], dict[str, str]]:
        fields: dict[str, Any] = {
            n: (f.annotation, None if not f.is_required() else ...)
            for n, f in left.model_fields.items()
        }
        shared_keys = {r for lk, r in self.pairs if lk == r}
        renames: dict[str, str] = {}
        for name, info in right.model_fields.items():
            if name in shared_keys:
                continue
            new = f"{self.right}_{name}" if name in fields else name
            optional = self.how == "left" or not info.is_required()
            annotation: Any = info.annotation
            if self.how == "left":
                annotation = annotation | None
            fields[new] = (annotation, None if optional else ...)
            renames[name] = new
        model: type[BaseModel] = create_model(model_name(self.into), **fields)
        return model, renames


def _unique_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    unique = []
    for row in rows:
        key = repr(sorted(row.items()))
        if key not in seen:
            seen.add(key)
            unique.append(row)
    return unique
