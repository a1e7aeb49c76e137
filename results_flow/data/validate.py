"""Validation: raw tables to tables of validated rows, with a message for every problem.

Validators run in two phases. Raw validators (required columns, missing values) look
at the extracted rows; ``TypeValidator`` validates every row through its row model,
in one call per table; typed validators (primary key, uniqueness, foreign keys) look
at the validated rows. A row with an ERROR is left out of its table, so that a load
configured to go on past errors loads only rows that passed every check.
"""

from __future__ import annotations

import operator
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError

from results_flow.data.columns import column_kind
from results_flow.data.datasource import DataTable, rows_adapter
from results_flow.data.extract import ExtractedData, RawTable
from results_flow.data.key_set import KeySet
from results_flow.data.messages import Severity, ValidationResult
from results_flow.data.schemas import TableSchema
from results_flow.data.storable import unstorable_values
from results_flow.settings import VALIDATION_MESSAGE_LIMIT


@dataclass
class StreamState:
    """What validation keeps between the chunks of streamed tables, so that checks
    spanning a whole table (keys, foreign keys, counts) see every chunk."""

    started: set[str] = field(default_factory=set)
    """Tables of which a chunk was validated (the header is checked once)."""
    typed: set[str] = field(default_factory=set)
    """Tables whose rows could be validated: a foreign key to them is checked."""
    seen_keys: dict[tuple[str, tuple[str, ...]], KeySet] = field(default_factory=dict)
    """Per table and key (primary or unique): the values of earlier chunks' kept rows (not
    a dict to row numbers; integer keys in 8 bytes a row while chunks ascend)."""
    repeats: dict[tuple[str, tuple[str, ...], str], list[tuple[Any, int]]] = field(
        default_factory=dict
    )
    """Per table, key and kind: (value, row) of rows repeating a value of an earlier chunk;
    the row first holding it is found at the end, by reading the file again."""
    ref_keys: dict[tuple[str, tuple[str, ...]], set[Any]] = field(default_factory=dict)
    """Per referenced table and columns: the values of the rows kept so far."""
    empty: dict[tuple[str, str], int] = field(default_factory=dict)
    """Per table and optional column: empty cells counted so far."""
    rows: dict[str, int] = field(default_factory=dict)
    """Per table: rows read so far."""
    first_values: dict[tuple[str, str], Any] = field(default_factory=dict)
    """Per table and column: the first value, for checks of a column's consistency."""
    warned: set[tuple[str, tuple[str, ...]]] = field(default_factory=set)


@dataclass
class ValidationContext:
    """What validators share: the schemas, the raw and the validated tables, the findings."""

    schemas: Mapping[str, TableSchema]
    raw: dict[str, RawTable]
    result: ValidationResult
    tables: dict[str, DataTable] = field(default_factory=dict)
    row_numbers: dict[str, list[int]] = field(default_factory=dict)
    """For each validated table, the file row number of each of its rows."""
    unusable: set[str] = field(default_factory=set)
    """Tables whose rows cannot be validated (a required column is missing)."""
    reported: set[tuple[str, int, str]] = field(default_factory=set)
    """(table, row, column) already reported, so the type check does not repeat it."""
    message_limit: int = VALIDATION_MESSAGE_LIMIT
    stream: StreamState | None = None
    """Set when tables come in chunks: what checks carry from one chunk to the next."""
    _counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def report(
        self,
        severity: Severity,
        code: str,
        message: str,
        table: str,
        *,
        column: str | None = None,
        row: int | None = None,
    ) -> None:
        """Record a finding, counting it silently past the per-(table, code) limit."""
        key = (table, code)
        count = self._counts.get(key, 0) + 1
        self._counts[key] = count
        if count <= self.message_limit:
            file = self.raw[table].file if table in self.raw else None
            self.result.add(severity, code, message, file=file, table=table, column=column, row=row)

    def where(self, table: str) -> str:
        """``file F, table 'T'``: how every message starts, so it names the file."""
        file = self.raw[table].file if table in self.raw else None
        return f"file {file}, table {table!r}" if file else f"table {table!r}"

    def summarize(self) -> None:
        """Add one message per (table, code) whose findings passed the limit."""
        for (table, code), count in self._counts.items():
            if count > self.message_limit:
                self.result.add(
                    Severity.INFO,
                    "messages_truncated",
                    f"{self.where(table)}: {count - self.message_limit} more {code!r} findings "
                    f"not listed (limit {self.message_limit})",
                    file=self.raw[table].file if table in self.raw else None,
                    table=table,
                )

    def keep(self, table: str, keep: list[bool]) -> None:
        """Drop the rows of a validated table whose flag is False."""
        if all(keep):
            return
        current = self.tables[table]
        numbers = self.row_numbers[table]
        current.rows = [r for r, k in zip(current.rows, keep, strict=True) if k]
        self.row_numbers[table] = [n for n, k in zip(numbers, keep, strict=True) if k]


class Validator(ABC):
    """One check. ``typed`` validators run after the row models have validated the rows."""

    typed: ClassVar[bool] = True

    @abstractmethod
    def validate(self, context: ValidationContext) -> None:
        """Check and report into ``context``; never raise for bad data."""


class RequiredColumnsValidator(Validator):
    """Every column without a default in the row model must be in the file."""

    typed = False

    def __init__(self, unknown_columns: Severity | None = Severity.INFO) -> None:
        self.unknown_columns = unknown_columns

    def validate(self, context: ValidationContext) -> None:
        for name, raw in context.raw.items():
            if context.stream is not None and name in context.stream.started:
                continue  # the header was checked with the first chunk
            schema = context.schemas[name]
            present = set(raw.columns)
            for column in schema.required_columns:
                if column not in present:
                    context.unusable.add(name)
                    context.report(
                        Severity.ERROR,
                        "missing_column",
                        f"file {raw.file}, table {name!r}: required column {column!r} is missing",
                        name,
                        column=column,
                    )
            known = set(schema.file_columns.values())
            if self.unknown_columns is not None:
                for column in raw.columns:
                    if column not in known:
                        context.report(
                            self.unknown_columns,
                            "unknown_column",
                            f"file {raw.file}, table {name!r}: column {column!r} is not in "
                            f"{schema.model.__name__}; ignored",
                            name,
                            column=column,
                        )


class MissingValuesValidator(Validator):
    """Required, non-nullable columns must hold a value in every row.

    Empty values in nullable columns are counted in one message per column at
    ``optional_severity`` (None to stay silent).
    """

    typed = False

    def __init__(self, optional_severity: Severity | None = Severity.INFO) -> None:
        self.optional_severity = optional_severity

    def validate(self, context: ValidationContext) -> None:
        for name, raw in context.raw.items():
            if name in context.unusable:
                continue
            schema = context.schemas[name]
            present = set(raw.columns)
            for field_name, info in schema.model.model_fields.items():
                column = schema.file_columns[field_name]
                if column not in present:
                    continue
                values = _column(raw.rows, column)
                if len(list(filter(None, values))) == len(values):
                    continue  # no falsy value, so no empty one: settled in C
                empties = values.count(None) + values.count("")
                if not empties:
                    continue
                nullable = column_kind(info.annotation)[1]
                if info.is_required() and not nullable:
                    empty = [i for i, v in enumerate(values) if v is None or v == ""]
                    for i in empty:
                        number = raw.row_number(i)
                        context.reported.add((name, number, column))
                        context.report(
                            Severity.ERROR,
                            "missing_value",
                            f"file {raw.file}, table {name!r}, row {number}: "
                            f"column {column!r} has no value",
                            name,
                            column=column,
                            row=number,
                        )
                elif self.optional_severity is not None and context.stream is not None:
                    counted = context.stream.empty.get((name, column), 0)
                    context.stream.empty[(name, column)] = counted + empties
                elif self.optional_severity is not None:
                    context.report(
                        self.optional_severity,
                        "empty_values",
                        f"file {raw.file}, table {name!r}: column {column!r} is empty in "
                        f"{empties} of {len(raw.rows)} rows",
                        name,
                        column=column,
                    )


class TypeValidator(Validator):
    """Validates every row through the table's row model; invalid rows are left out."""

    typed = False

    def validate(self, context: ValidationContext) -> None:
        for name, raw in context.raw.items():
            if name in context.unusable:
                continue
            schema = context.schemas[name]
            rows = _drop_empty_defaults(schema, raw.rows)
            adapter = rows_adapter(schema.model)
            numbers = list(range(1, len(rows) + 1)) if raw.row_numbers is None else raw.row_numbers
            try:
                validated: list[BaseModel] = adapter.validate_python(rows)
            except ValidationError as exc:
                bad = self._report(context, raw, schema, exc)
                kept = [i for i in range(len(rows)) if i not in bad]
                try:
                    validated = adapter.validate_python([rows[i] for i in kept])
                except ValidationError:  # an error without a row index: check row by row
                    validated, kept = self._one_by_one(context, raw, schema, rows, kept)
                numbers = [numbers[i] for i in kept]
            context.tables[name] = DataTable(name, schema.model, validated)
            context.row_numbers[name] = numbers
            self._refuse_unstorable(context, raw, schema)

    @staticmethod
    def _refuse_unstorable(context: ValidationContext, raw: RawTable, schema: TableSchema) -> None:
        """Leave out rows holding a value that not every manager can keep (``storable``)."""
        table = context.tables[raw.name]
        numbers = context.row_numbers[raw.name]
        bad: set[int] = set()
        firsts = None
        if context.stream is not None:
            firsts = {f: v for (t, f), v in context.stream.first_values.items() if t == raw.name}
        for found in unstorable_values(schema.model, table.rows, schema.primary_key, firsts):
            bad.add(found.index)
            number = numbers[found.index]
            column = schema.file_columns[found.field]
            code, what = found.described(column)
            context.report(
                Severity.ERROR,
                code,
                f"file {raw.file}, table {raw.name!r}, row {number}: {what}; row skipped",
                raw.name,
                column=column,
                row=number,
            )
        if context.stream is not None and firsts is not None:
            for f, v in firsts.items():
                context.stream.first_values.setdefault((raw.name, f), v)
        if bad:
            context.keep(raw.name, [i not in bad for i in range(len(table.rows))])

    @staticmethod
    def _one_by_one(
        context: ValidationContext,
        raw: RawTable,
        schema: TableSchema,
        rows: list[dict[str, Any]],
        indexes: list[int],
    ) -> tuple[list[BaseModel], list[int]]:
        validated: list[BaseModel] = []
        kept: list[int] = []
        for i in indexes:
            try:
                validated.append(schema.model.model_validate(rows[i]))
            except ValidationError as exc:
                number = raw.row_number(i)
                context.report(
                    Severity.ERROR,
                    "invalid_value",
                    f"file {raw.file}, table {raw.name!r}, row {number}: "
                    f"{exc.errors(include_url=False)[0]['msg']} ({schema.model.__name__}); "
                    "row skipped",
                    raw.name,
                    row=number,
                )
            else:
                kept.append(i)
        return validated, kept

    @staticmethod
    def _report(
        context: ValidationContext, raw: RawTable, schema: TableSchema, exc: ValidationError
    ) -> set[int]:
        bad: set[int] = set()
        for error in exc.errors(include_url=False):
            loc = error["loc"]
            if not loc or not isinstance(loc[0], int):
                continue
            index = loc[0]
            bad.add(index)
            number = raw.row_number(index)
            column = ".".join(str(p) for p in loc[1:]) or None
            if column is not None and (raw.name, number, column) in context.reported:
                continue
            missing = error["type"] == "missing" or error.get("input", "") is None
            shown = "" if missing else f" {_short(error.get('input'))}:"
            context.report(
                Severity.ERROR,
                "missing_value" if missing else "invalid_value",
                f"file {raw.file}, table {raw.name!r}, row {number}, column {column!r}:"
                f"{shown} {error['msg']} ({schema.model.__name__}); row skipped",
                raw.name,
                column=column,
                row=number,
            )
        return bad


class PrimaryKeyValidator(Validator):
    """Primary key values must be present and must not repeat; offending rows are left out."""

    def validate(self, context: ValidationContext) -> None:
        for name, table in context.tables.items():
            key = context.schemas[name].primary_key
            if key:
                _check_distinct(context, name, table, key, "primary key", allow_null=False)


class UniqueValidator(Validator):
    """Each declared unique column set must not repeat (empty values are not compared)."""

    def validate(self, context: ValidationContext) -> None:
        for name, table in context.tables.items():
            for columns in context.schemas[name].unique:
                _check_distinct(context, name, table, columns, "unique", allow_null=True)


class ForeignKeyValidator(Validator):
    """Values of a foreign key must exist in the referenced table (empty values pass)."""

    def validate(self, context: ValidationContext) -> None:
        for name, table in list(context.tables.items()):
            for fk in context.schemas[name].foreign_keys:
                stream = context.stream
                existing: set[Any] | None = None
                if stream is not None:
                    if fk.ref_table in stream.typed:
                        existing = stream.ref_keys.get((fk.ref_table, fk.ref_columns), set())
                    elif (name, fk.columns) in stream.warned:
                        continue
                    else:
                        stream.warned.add((name, fk.columns))
                target = context.tables.get(fk.ref_table) if stream is None else None
                if target is None and existing is None:
                    context.report(
                        Severity.WARNING,
                        "unchecked_foreign_key",
                        f"{context.where(name)}: foreign key {_cols(fk.columns)} not checked; "
                        f"table {fk.ref_table!r} was not loaded",
                        name,
                    )
                    continue
                if existing is None and target is not None:
                    ref_key = _getter(fk.ref_columns)
                    existing = {ref_key(r) for r in target.rows}
                if existing is None:
                    continue
                key = _getter(fk.columns)
                numbers = context.row_numbers[name]
                keep = []
                for row, number in zip(table.rows, numbers, strict=True):
                    value = key(row)
                    ok = _has_null(value, len(fk.columns)) or value in existing
                    keep.append(ok)
                    if not ok:
                        context.report(
                            Severity.ERROR,
                            "foreign_key_violation",
                            f"{context.where(name)}, row {number}: {_cols(fk.columns)} = {value!r} "
                            f"not found in {fk.ref_table!r}.{_cols(fk.ref_columns)}; row skipped",
                            name,
                            column=",".join(fk.columns),
                            row=number,
                        )
                context.keep(name, keep)


def default_validators() -> list[Validator]:
    """Required columns, missing values, types, primary key, uniqueness, foreign keys."""
    return [
        RequiredColumnsValidator(),
        MissingValuesValidator(),
        TypeValidator(),
        PrimaryKeyValidator(),
        UniqueValidator(),
        ForeignKeyValidator(),
    ]


def ordered(validators: Iterable[Validator]) -> list[Validator]:
    """Raw validators, one ``TypeValidator`` (added when missing), then typed validators."""
    given = list(validators)
    raw = [v for v in given if not v.typed and not isinstance(v, TypeValidator)]
    types = [v for v in given if isinstance(v, TypeValidator)][:1] or [TypeValidator()]
    return raw + types + [v for v in given if v.typed]


def run_validators(
    extracted: ExtractedData,
    schemas: Mapping[str, TableSchema],
    validators: Iterable[Validator],
    message_limit: int = VALIDATION_MESSAGE_LIMIT,
) -> tuple[dict[str, DataTable], ValidationResult]:
    """Run ``validators`` on extracted tables; the validated tables and every finding."""
    result = ValidationResult(messages=list(extracted.validation.messages))
    context = ValidationContext(
        schemas=schemas, raw=dict(extracted.tables), result=result, message_limit=message_limit
    )
    for validator in ordered(validators):
        validator.validate(context)
    context.summarize()
    return context.tables, result


class ChunkValidation:
    """Validates streamed tables chunk by chunk, with the checks of ``run_validators``.

    Keys, unique values and foreign keys are checked across chunks (each table's key
    values are kept in memory); messages name the same tables, columns and file rows.
    A table must come after the tables its foreign keys reference.
    """

    def __init__(
        self,
        schemas: Mapping[str, TableSchema],
        validators: Iterable[Validator],
        result: ValidationResult,
        message_limit: int = VALIDATION_MESSAGE_LIMIT,
    ) -> None:
        self.validators = ordered(validators)
        self.context = ValidationContext(
            schemas=schemas,
            raw={},
            result=result,
            message_limit=message_limit,
            stream=StreamState(),
        )
        self.referenced: dict[str, set[tuple[str, ...]]] = {}
        for schema in schemas.values():
            for fk in schema.foreign_keys:
                self.referenced.setdefault(fk.ref_table, set()).add(fk.ref_columns)
        self._seen: dict[str, RawTable] = {}

    def validate(self, raw: RawTable) -> DataTable | None:
        """The valid rows of one chunk of a table (None when the table is unusable)."""
        context = self.context
        stream = self.stream
        context.raw = {raw.name: raw}
        context.tables = {}
        context.row_numbers = {}
        self._seen.setdefault(raw.name, raw.model_copy(update={"rows": []}))
        stream.rows[raw.name] = stream.rows.get(raw.name, 0) + len(raw.rows)
        for validator in self.validators:
            validator.validate(context)
        stream.started.add(raw.name)
        table = context.tables.get(raw.name)
        if table is None:
            return None
        stream.typed.add(raw.name)
        for columns in self.referenced.get(raw.name, ()):
            stream.ref_keys.setdefault((raw.name, columns), set()).update(
                map(_getter(columns), table.rows)
            )
        return table

    def _first_rows(
        self, name: str, columns: tuple[str, ...], wanted: set[Any], chunks: Iterable[RawTable]
    ) -> dict[Any, int]:
        """The first row holding each wanted key value, from the table read again."""
        schema = self.context.schemas[name]
        adapter = rows_adapter(schema.model)
        key = _getter(columns)
        found: dict[Any, int] = {}
        for raw in chunks:
            rows = _drop_empty_defaults(schema, raw.rows)
            try:
                pairs = zip(
                    map(key, adapter.validate_python(rows)), raw.row_numbers or (), strict=True
                )
                for value, number in pairs:
                    if value in wanted:
                        found.setdefault(value, number)
            except ValidationError:
                for row, number in zip(rows, raw.row_numbers or (), strict=True):
                    try:
                        value = key(schema.model.model_validate(row))
                    except ValidationError:
                        continue
                    if value in wanted:
                        found.setdefault(value, number)
            if len(found) == len(wanted):
                break
        return found

    @property
    def stream(self) -> StreamState:
        """The state carried between chunks."""
        if self.context.stream is None:  # pragma: no cover - set in __init__
            raise RuntimeError("ChunkValidation without stream state")
        return self.context.stream

    def finish(self, reread: Callable[[str], Iterable[RawTable]] | None = None) -> None:
        """Add the messages that count over whole tables, and the truncation summaries.

        Args:
            reread: the chunks of a table read again from its file, to find the rows that
                first held values repeated in a later chunk (only when there are such).
        """
        context = self.context
        context.raw = dict(self._seen)
        for (name, columns, what), repeats in self.stream.repeats.items():
            firsts = (
                self._first_rows(name, columns, {v for v, _ in repeats}, reread(name))
                if reread is not None
                else {}
            )
            code = "duplicate_primary_key" if what == "primary key" else "duplicate_value"
            for value, number in repeats:
                context.report(
                    Severity.ERROR,
                    code,
                    f"{context.where(name)}, row {number}: {what} {_cols(columns)} = "
                    f"{value!r} repeats row {firsts.get(value, '?')}; row skipped",
                    name,
                    column=",".join(columns),
                    row=number,
                )
        severity = next(
            (
                v.optional_severity
                for v in self.validators
                if isinstance(v, MissingValuesValidator) and v.optional_severity is not None
            ),
            None,
        )
        for (name, column), empty in self.stream.empty.items():
            if severity is None or not empty:
                continue
            context.report(
                severity,
                "empty_values",
                f"{context.where(name)}: column {column!r} is empty in "
                f"{empty} of {self.stream.rows[name]} rows",
                name,
                column=column,
            )
        context.summarize()


def _check_distinct(
    context: ValidationContext,
    name: str,
    table: DataTable,
    columns: tuple[str, ...],
    what: str,
    *,
    allow_null: bool,
) -> None:
    key = _getter(columns)
    values = list(map(key, table.rows))
    nulls = None in values if len(columns) == 1 else any(None in v for v in values)
    numbers = context.row_numbers[name]
    stream = context.stream
    seen = KeySet()
    if stream is not None:
        seen = stream.seen_keys.setdefault((name, columns), KeySet())
        if not nulls and seen.isdisjoint(values) and len(set(values)) == len(values):
            seen.update(values)
            return  # no repeat within the chunk nor with an earlier one
    elif not nulls and len(set(values)) == len(values):
        return  # the common case, settled without a Python loop per row
    first: dict[Any, int] = {}
    keep = []
    code = "duplicate_primary_key" if what == "primary key" else "duplicate_value"
    for value, number in zip(values, numbers, strict=True):
        if _has_null(value, len(columns)):
            keep.append(allow_null)
            if not allow_null:
                context.report(
                    Severity.ERROR,
                    "null_primary_key",
                    f"{context.where(name)}, row {number}: primary key {_cols(columns)} "
                    "has no value; "
                    "row skipped",
                    name,
                    column=",".join(columns),
                    row=number,
                )
            continue
        if stream is not None and value in seen:
            keep.append(False)
            stream.repeats.setdefault((name, columns, what), []).append((value, number))
            continue
        earlier = first.setdefault(value, number)
        keep.append(earlier == number)
        if earlier != number:
            context.report(
                Severity.ERROR,
                code,
                f"{context.where(name)}, row {number}: {what} {_cols(columns)} = {value!r} "
                f"repeats row {earlier}; row skipped",
                name,
                column=",".join(columns),
                row=number,
            )
    seen.update(first)
    context.keep(name, keep)


def _getter(columns: tuple[str, ...]) -> Callable[[Any], Any]:
    return operator.attrgetter(*columns)


def _has_null(value: Any, width: int) -> bool:
    return value is None if width == 1 else any(v is None for v in value)


def _cols(columns: tuple[str, ...]) -> str:
    return repr(columns[0]) if len(columns) == 1 else "(" + ", ".join(columns) + ")"


def _column(rows: list[dict[str, Any]], column: str) -> list[Any]:
    """The values of ``column`` in every row (None where a row lacks it)."""
    try:
        return list(map(operator.itemgetter(column), rows))
    except KeyError:  # a JSON row without the key
        return [row.get(column) for row in rows]


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _drop_empty_defaults(schema: TableSchema, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without the empty cells of non-nullable fields that have defaults (so the
    default applies, as if the column were absent)."""
    columns = [
        schema.file_columns[n]
        for n, info in schema.model.model_fields.items()
        if not info.is_required() and not column_kind(info.annotation)[1]
    ]
    if not columns:
        return rows
    cleaned = []
    for row in rows:
        if any(row.get(c, 0) is None for c in columns):
            row = {k: v for k, v in row.items() if not (v is None and k in columns)}
        cleaned.append(row)
    return cleaned
