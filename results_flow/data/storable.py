"""Values that validate but that not every manager can keep, found at validation.

A dataset must read back equal from every manager (memory, JSON files, SQLite,
PostgreSQL), so validation refuses, with a message naming the file, table, column
and row, the values one of them would change or reject:

- a float that is NaN or infinite (JSON has neither; SQLite keeps NaN as NULL);
  NaN in a primary key counts as a missing key (``null_primary_key``);
- an integer outside the signed 64-bit range of SQL ``BIGINT``;
- text holding a NUL character or a lone surrogate (PostgreSQL and UTF-8 refuse both),
  also anywhere inside a JSON column's value (keys included), where a NaN or infinite
  number is refused too (PostgreSQL's ``jsonb`` has neither);
- a decimal with more digits before or after the point than PostgreSQL's ``numeric``
  keeps (``NUMERIC_INTEGRAL_DIGITS``, ``NUMERIC_SCALE_DIGITS``);
- a time of day with a UTC offset (SQL ``TIME`` columns drop it);
- a datetime column mixing values with and without a UTC offset (a SQL column is
  one or the other; Python cannot even compare the two).

Each column is settled with one C-level pass in the common case; only a column
that holds a bad value is looked at value by value.
"""

from __future__ import annotations

import enum
import functools
import json
import math
import operator
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from results_flow.data.columns import column_kind
from results_flow.data.datasource import DataTable
from results_flow.data.messages import Severity, ValidationResult

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
#: PostgreSQL's ``numeric`` keeps at most this many digits before the decimal point...
NUMERIC_INTEGRAL_DIGITS = 131_072
#: ...and this many after it (trailing zeros count: ``1.000`` has three).
NUMERIC_SCALE_DIGITS = 16_383


@dataclass(frozen=True)
class Unstorable:
    """One value no store can keep as it is."""

    index: int
    field: str
    reason: str
    missing_key: bool = False

    def described(self, column: str) -> tuple[str, str]:
        """The message code, and what is wrong, with the field shown as ``column``."""
        if self.missing_key:
            return "null_primary_key", f"primary key {column!r} has no value (NaN)"
        return "invalid_value", f"column {column!r}: {self.reason}"


def unstorable_values(
    model: type[BaseModel],
    rows: list[BaseModel],
    primary_key: tuple[str, ...] = (),
    firsts: dict[str, Any] | None = None,
) -> Iterator[Unstorable]:
    """The values of ``rows`` (instances of ``model``) that not every manager can keep.

    ``firsts`` carries each column's first value from one chunk of a table to the next
    (a datetime column is checked against it); columns met for the first time are added.
    """
    if not rows:
        return
    for field, info in model.model_fields.items():
        kind = column_kind(info.annotation)[0]
        check = _CHECKS.get(kind)
        if check is None:
            continue
        values = list(map(operator.attrgetter(field), rows))
        first = next((v for v in values if v is not None), None)
        if first is None:
            continue
        if isinstance(first, enum.Enum):
            values = [v.value if isinstance(v, enum.Enum) else v for v in values]
        if firsts is not None:
            firsts.setdefault(field, first)
            if kind == "datetime":
                check = functools.partial(_datetimes, first=firsts[field])
        for index, reason in check(values):
            value = values[index]
            missing = field in primary_key and kind == "float" and value != value  # NaN
            yield Unstorable(index, field, reason, missing_key=missing)


_IS_VALUE = functools.partial(operator.is_not, None)


def _present(values: list[Any]) -> list[Any]:
    """The values that are not None, filtered in C."""
    return list(filter(_IS_VALUE, values))


def refuse_transformed(
    tables: dict[str, DataTable],
    primary_keys: dict[str, tuple[str, ...]],
    result: ValidationResult,
) -> None:
    """Report, as ERRORs, the values transformers made that not every manager can keep,
    and leave their rows out (validation already refused such values from files)."""
    for name, table in tables.items():
        found = list(unstorable_values(table.model, table.rows, primary_keys.get(name, ())))
        for bad in found:
            row = bad.index + 1
            code, what = bad.described(bad.field)
            result.add(
                Severity.ERROR,
                code,
                f"transformed table {name!r}, row {row}: {what}; row skipped",
                table=name,
                column=bad.field,
                row=row,
            )
        if found:
            dropped = {bad.index for bad in found}
            table.rows = [r for i, r in enumerate(table.rows) if i not in dropped]


def _floats(values: list[Any]) -> Iterator[tuple[int, str]]:
    present = _present(values)
    try:
        if math.isfinite(math.fsum(present)):
            return
    except (OverflowError, ValueError):
        pass  # an overflowing sum, or inf and -inf together: look value by value
    for i, v in enumerate(values):
        if v is not None and not math.isfinite(v):
            yield i, f"{v!r} is not a value every store keeps; leave the cell empty instead"


def _integers(values: list[Any]) -> Iterator[tuple[int, str]]:
    present = _present(values)
    if min(present) >= INT64_MIN and max(present) <= INT64_MAX:
        return
    for i, v in enumerate(values):
        if v is not None and not INT64_MIN <= v <= INT64_MAX:
            yield i, f"{v} is outside the 64-bit integer range of SQL tables"


def _strings(values: list[Any]) -> Iterator[tuple[int, str]]:
    joined = "".join(_present(values))
    if "\0" not in joined and (joined.isascii() or _encodes(joined)):
        return
    for i, v in enumerate(values):
        if v is None:
            continue
        if "\0" in v:
            yield i, "text holds a NUL character, which PostgreSQL cannot store"
        elif not _encodes(v):
            yield i, "text holds a lone surrogate, which is not valid UTF-8"


def _decimals(values: list[Any]) -> Iterator[tuple[int, str]]:
    for i, v in enumerate(values):
        if v is None or not v.is_finite():
            continue  # NaN and infinities: every store keeps them (validation refuses them)
        integral = v.adjusted() + 1 if v else 0
        exponent = v.as_tuple().exponent
        if integral > NUMERIC_INTEGRAL_DIGITS:
            yield (
                i,
                (
                    f"a decimal of {integral} digits before the point; SQL numeric columns "
                    f"keep at most {NUMERIC_INTEGRAL_DIGITS}"
                ),
            )
        elif -exponent > NUMERIC_SCALE_DIGITS:
            yield (
                i,
                (
                    f"a decimal of {-exponent} digits after the point; SQL numeric columns "
                    f"keep at most {NUMERIC_SCALE_DIGITS}"
                ),
            )


def _json(values: list[Any]) -> Iterator[tuple[int, str]]:
    try:  # one pass over the column in the common case
        text = json.dumps(to_jsonable_python(_present(values)), ensure_ascii=False, allow_nan=False)
        if "\\u0000" not in text and (text.isascii() or _encodes(text)):
            return
    except (ValueError, RecursionError):
        pass  # a NaN somewhere, or nested deeper than json goes: look value by value
    for i, v in enumerate(values):
        if v is not None:
            reason = _json_fault(to_jsonable_python(v))
            if reason is not None:
                yield i, reason


def _json_fault(value: Any) -> str | None:
    """What in the JSON-ready ``value`` PostgreSQL's ``jsonb`` refuses, if anything; walked
    without recursion, so that depth is no limit."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str):
            if "\0" in item:
                return "JSON value holds a NUL character, which PostgreSQL cannot store"
            if not _encodes(item):
                return "JSON value holds a lone surrogate, which is not valid UTF-8"
        elif isinstance(item, float) and not math.isfinite(item):
            return f"JSON value holds {item!r}, which JSON has not; leave it out instead"
    return None


def _times(values: list[Any]) -> Iterator[tuple[int, str]]:
    for i, v in enumerate(values):
        if v is not None and v.utcoffset() is not None:
            yield (
                i,
                (
                    f"time {v.isoformat()} has a UTC offset, which SQL time columns drop; "
                    "use a datetime, or a time without offset"
                ),
            )


def _datetimes(values: list[Any], first: Any = None) -> Iterator[tuple[int, str]]:
    if first is None:
        first = next(v for v in values if v is not None)
    aware = first.utcoffset() is not None
    for i, v in enumerate(values):
        if v is not None and (v.utcoffset() is not None) != aware:
            has = "has a UTC offset" if not aware else "has no UTC offset"
            yield (
                i,
                (
                    f"datetime {v.isoformat()} {has}, unlike the column's first value "
                    f"{first.isoformat()}; a column holds either kind, not both"
                ),
            )


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_CHECKS = {
    "float": _floats,
    "integer": _integers,
    "string": _strings,
    "time": _times,
    "datetime": _datetimes,
    "decimal": _decimals,
    "json": _json,
}
