"""Schemas: which file holds which tables, and the Pydantic row model of each table.

A ``TableSchema`` is a row model plus the keys declared on it (primary key, unique
column sets, foreign keys into other tables). A ``FileSchema`` says which logical file
holds which tables and in which format: a CSV or XLSX file holds one table, a JSON
file one or several (``{"customers": [...], "orders": [...]}``). ``schema()`` builds
the common case, one file holding one table, in one call.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property

from pydantic import BaseModel

from results_flow.errors import SchemaDefinitionError


class FileFormat(StrEnum):
    """The formats a file can be extracted from."""

    CSV = "csv"
    JSON = "json"
    XLSX = "xlsx"
    """Needs the optional ``xlsx`` extra (openpyxl)."""

    @classmethod
    def parse(cls, value: str | FileFormat) -> FileFormat:
        """The format named by ``value`` ("csv", ".CSV", FileFormat.JSON, ...).

        Raises:
            SchemaDefinitionError: no such format.
        """
        if isinstance(value, FileFormat):
            return value
        try:
            return cls(value.lower().lstrip("."))
        except ValueError:
            known = ", ".join(f.value for f in cls)
            raise SchemaDefinitionError(
                f"unknown file format {value!r}; use one of {known}"
            ) from None


Columns = str | Sequence[str]


def _columns(value: Columns) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


@dataclass(frozen=True, init=False)
class ForeignKey:
    """Values of ``columns`` must appear in ``ref_columns`` of the table ``ref_table``."""

    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]

    def __init__(self, columns: Columns, ref_table: str, ref_columns: Columns | None = None):
        cols = _columns(columns)
        refs = cols if ref_columns is None else _columns(ref_columns)
        if not cols or len(cols) != len(refs):
            raise SchemaDefinitionError(
                f"foreign key {cols} -> {ref_table}{refs}: "
                "give as many referenced columns as columns"
            )
        object.__setattr__(self, "columns", cols)
        object.__setattr__(self, "ref_table", ref_table)
        object.__setattr__(self, "ref_columns", refs)


@dataclass(frozen=True, init=False)
class TableSchema:
    """A table: its name, its Pydantic row model and the keys declared on it.

    Attributes:
        name: the table's name in a dataset (and the key of its rows in a JSON file).
        model: the Pydantic model every row must validate as.
        primary_key: the columns that identify a row; never empty, never repeated.
        unique: column sets whose (non-empty) values may not repeat.
        foreign_keys: references into other tables of the same dataset.
    """

    name: str
    model: type[BaseModel]
    primary_key: tuple[str, ...] = ()
    unique: tuple[tuple[str, ...], ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()

    def __init__(
        self,
        name: str,
        model: type[BaseModel],
        *,
        primary_key: Columns = (),
        unique: Iterable[Columns] = (),
        foreign_keys: Iterable[ForeignKey] = (),
    ) -> None:
        if not name:
            raise SchemaDefinitionError("a table schema needs a name")
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise SchemaDefinitionError(
                f"table {name!r}: the row model must be a pydantic BaseModel"
            )
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "primary_key", _columns(primary_key))
        object.__setattr__(self, "unique", tuple(_columns(u) for u in unique))
        object.__setattr__(self, "foreign_keys", tuple(foreign_keys))
        declared = [*self.primary_key, *(c for u in self.unique for c in u)]
        declared += [c for fk in self.foreign_keys for c in fk.columns]
        unknown = sorted({c for c in declared if c not in model.model_fields})
        if unknown:
            raise SchemaDefinitionError(
                f"table {name!r}: {model.__name__} has no field(s) {', '.join(unknown)}"
            )

    @cached_property
    def file_columns(self) -> dict[str, str]:
        """Field name -> the column name the file uses (its alias, when it has one)."""
        names = {}
        for name, info in self.model.model_fields.items():
            alias = info.validation_alias if isinstance(info.validation_alias, str) else info.alias
            names[name] = alias or name
        return names

    @cached_property
    def required_columns(self) -> tuple[str, ...]:
        """File column names that must be present: fields without a default."""
        fields = self.model.model_fields
        return tuple(self.file_columns[n] for n, info in fields.items() if info.is_required())


@dataclass(frozen=True, init=False)
class FileSchema:
    """A logical file: its name (the key ``etl_data`` finds it under), format and tables.

    Raises:
        SchemaDefinitionError: no tables, repeated table names, or several tables in a
            CSV or XLSX file.
    """

    file_name: str
    format: FileFormat
    tables: tuple[TableSchema, ...]

    def __init__(
        self, file_name: str, format: str | FileFormat, tables: Iterable[TableSchema]
    ) -> None:
        fmt = FileFormat.parse(format)
        tabs = tuple(tables)
        if not file_name:
            raise SchemaDefinitionError("a file schema needs a file name")
        if not tabs:
            raise SchemaDefinitionError(f"file {file_name!r}: declare at least one table")
        names = [t.name for t in tabs]
        if len(set(names)) != len(names):
            raise SchemaDefinitionError(f"file {file_name!r}: table names repeat: {names}")
        if fmt is not FileFormat.JSON and len(tabs) > 1:
            raise SchemaDefinitionError(
                f"file {file_name!r}: a {fmt.value.upper()} file holds one table; "
                "use JSON for several"
            )
        object.__setattr__(self, "file_name", file_name)
        object.__setattr__(self, "format", fmt)
        object.__setattr__(self, "tables", tabs)


def schema(
    file_name: str,
    model: type[BaseModel],
    *,
    format: str | FileFormat = FileFormat.CSV,
    table: str | None = None,
    primary_key: Columns = (),
    unique: Iterable[Columns] = (),
    foreign_keys: Iterable[ForeignKey] = (),
) -> FileSchema:
    """A file holding one table (named like the file unless ``table`` is given).

    Raises:
        SchemaDefinitionError: the keys name fields the model does not have.
    """
    return FileSchema(
        file_name,
        format,
        [
            TableSchema(
                table or file_name,
                model,
                primary_key=primary_key,
                unique=unique,
                foreign_keys=foreign_keys,
            )
        ],
    )


def check_schemas(schemas: Iterable[FileSchema]) -> dict[str, FileSchema]:
    """The schemas by file name, after checking that names and references hold together.

    Raises:
        SchemaDefinitionError: a file or table name is declared twice, or a foreign key
            points at an unknown table or column.
    """
    files: dict[str, FileSchema] = {}
    tables: dict[str, TableSchema] = {}
    for file_schema in schemas:
        if file_schema.file_name in files:
            raise SchemaDefinitionError(f"file {file_schema.file_name!r} is declared twice")
        files[file_schema.file_name] = file_schema
        for table in file_schema.tables:
            if table.name in tables:
                raise SchemaDefinitionError(f"table {table.name!r} is declared in two files")
            tables[table.name] = table
    for table in tables.values():
        for fk in table.foreign_keys:
            target = tables.get(fk.ref_table)
            if target is None:
                raise SchemaDefinitionError(
                    f"table {table.name!r}: foreign key {fk.columns} points at unknown table "
                    f"{fk.ref_table!r}"
                )
            missing = [c for c in fk.ref_columns if c not in target.model.model_fields]
            if missing:
                raise SchemaDefinitionError(
                    f"table {table.name!r}: foreign key into {fk.ref_table!r} names missing "
                    f"column(s) {', '.join(missing)}"
                )
    return files


def table_schemas(schemas: Iterable[FileSchema]) -> dict[str, TableSchema]:
    """Every table schema by table name."""
    return {t.name: t for s in schemas for t in s.tables}
