"""The SQL shape of stored datasets: the catalogue table, table names and column types.

The catalogue has one row per dataset: its name, kind, creation time, origin, the
storage format and, as JSON, each table's SQL table name, column specs and primary
key. Each dataset table is a real table named ``<prefix>__<dataset>__<table>``
(lower case; shortened with a hash when it would not be a plain identifier of at most
63 characters), with one column per row-model field, typed from the field.
"""

from __future__ import annotations

import hashlib
import operator
import re
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, Field, TypeAdapter
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

from results_flow.data.columns import ColumnKind, ColumnSpec
from results_flow.data.datasource import DataTable

DEFAULT_CATALOGUE = "results_flow_datasets"
DEFAULT_PREFIX = "ds"
STORAGE_FORMAT = "results_flow.sqltables/1"
#: The catalogue's columns; a catalogue with other columns is refused, never migrated.
CATALOGUE_COLUMNS = frozenset({"name", "kind", "created_at", "derived_from", "format", "tables"})
MAX_IDENTIFIER = 63  # PostgreSQL's limit; SQLite has none
_PLAIN = re.compile(r"[a-z_][a-z0-9_]*")


class TableEntry(BaseModel):
    """Where one dataset table is stored and how its columns are typed."""

    name: str
    sql_table: str
    columns: list[ColumnSpec]
    primary_key: list[str] = Field(default_factory=list)
    naive_datetimes: list[str] = Field(
        default_factory=list,
        description="Datetime columns whose values have no UTC offset: on PostgreSQL a "
        "TIMESTAMP WITHOUT TIME ZONE, so they read back without one.",
    )


TABLE_ENTRIES: TypeAdapter[list[TableEntry]] = TypeAdapter(list[TableEntry])


def catalogue_table(name: str = DEFAULT_CATALOGUE, schema: str | None = None) -> sa.Table:
    """The catalogue: one row per dataset."""
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("derived_from", sa.String(100), nullable=True),
        sa.Column("format", sa.String(40), nullable=False),
        sa.Column("tables", sa.Text, nullable=False),
        schema=schema,
    )


def sql_table_name(prefix: str, dataset: str, table: str) -> str:
    """``<prefix>__<dataset>__<table>``, or a lower-case form ending in a hash of the
    exact names when that is not a plain lower-case identifier of at most 63 characters
    (so it never needs quoting in SQL)."""
    exact = f"{prefix}__{dataset}__{table}"
    unambiguous = "__" not in dataset and "__" not in table
    if unambiguous and _PLAIN.fullmatch(exact) and len(exact) <= MAX_IDENTIFIER:
        return exact
    digest = hashlib.sha256(f"{dataset}\0{table}".encode()).hexdigest()[:10]
    slug = re.sub(r"[^a-z0-9_]+", "_", f"{dataset}__{table}".lower()).strip("_")
    room = MAX_IDENTIFIER - len(prefix) - len(digest) - 4
    return f"{prefix}__{slug[:room]}__{digest}"


class IsoDateTime(sa.TypeDecorator[datetime]):
    """A datetime kept as ISO 8601 text, offset included (SQLite has no timestamp type)."""

    impl = sa.String(40)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else value.isoformat()

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else datetime.fromisoformat(value)


class DecimalText(sa.TypeDecorator[Decimal]):
    """A decimal kept as exact text (SQLite would round it through a float)."""

    impl = sa.String(80)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else str(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


def column_type(kind: ColumnKind, *, naive: bool = False) -> sa.types.TypeEngine[Any]:
    """The SQL type of a column kind, with the SQLite variants where SQLite lacks one.

    ``naive`` datetimes (no UTC offset) get a timestamp without time zone, so that
    PostgreSQL does not read them back in its session's time zone.
    """
    if kind == "datetime" and naive:
        return sa.DateTime(timezone=False).with_variant(IsoDateTime(), "sqlite")
    types: dict[ColumnKind, sa.types.TypeEngine[Any]] = {
        "integer": sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        "float": sa.Double(),
        "boolean": sa.Boolean(),
        "string": sa.Text(),
        "date": sa.Date(),
        "datetime": sa.DateTime(timezone=True).with_variant(IsoDateTime(), "sqlite"),
        "time": sa.Time(),
        "decimal": sa.Numeric().with_variant(DecimalText(), "sqlite"),
        "uuid": sa.Uuid(),
        "json": sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
    }
    return types[kind]


def naive_datetime_columns(table: DataTable) -> list[str]:
    """The datetime columns of ``table`` whose values have no UTC offset (validation
    refuses a column that mixes both kinds, so the first value tells)."""
    naive = []
    for column in table.columns:
        if column.kind != "datetime":
            continue
        getter = operator.attrgetter(column.name)
        first = next((v for v in map(getter, table.rows) if v is not None), None)
        if first is not None and first.utcoffset() is None:
            naive.append(column.name)
    return naive


def data_table(entry: TableEntry, metadata: sa.MetaData, schema: str | None = None) -> sa.Table:
    """The SQL table of one dataset table."""
    key = set(entry.primary_key)
    naive = set(entry.naive_datetimes)
    columns = [
        sa.Column(
            c.name,
            column_type(c.kind, naive=c.name in naive),
            primary_key=c.name in key,
            nullable=c.nullable and c.name not in key,
            autoincrement=False,
        )
        for c in entry.columns
    ]
    return sa.Table(entry.sql_table, metadata, *columns, schema=schema)
