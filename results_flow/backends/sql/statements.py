"""The records table, the SQL of every store operation, and the row codec.

One table, the ID as primary key. Conflicts are settled by the database with the
dialect's ``INSERT ... ON CONFLICT``; never by a read followed by a write. On
PostgreSQL the ID column uses the "C" collation so ordering and prefix ranges are
bytewise, exactly as on SQLite and in Python.

The metadata keys a find selects on exactly (flow, task, flow run, version:
``query.INDEXED_FIELDS``) are kept again in indexed columns of their own, written with
every row; a table made before they existed gets them, filled from its rows' metadata,
when a store first opens it (``create_records_table``). Sync and async backends, and every row
runner, use these statements; nothing else writes SQL for the records table.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.compiler import SQLCompiler

from results_flow.errors import CorruptRecordError
from results_flow.ids import MAX_ID_BYTES, prefix_upper_bound
from results_flow.query import INDEXED_FIELDS, RecordQuery, index_key, index_keys
from results_flow.records import Record, load_json, parse_time
from results_flow.settings import INDEX_KEY_MAX_LENGTH

DEFAULT_TABLE = "results_flow_records"
#: Serializes CREATE TABLE across processes on PostgreSQL (an arbitrary constant key).
CREATE_LOCK_KEY = 0x52464C4F57  # "RFLOW"
#: The statements a row runner runs by name: one row read, checked or written.
ONE_ROW = ("read", "read_data", "read_for_update", "exists", "insert", "upsert", "delete")
#: The SELECTs of a batch of IDs (bound as one ``ids`` parameter, see ``Statements.batch``).
BATCH = ("read_many", "exists_many")
#: The indexed metadata columns (``query.INDEXED_FIELDS``), in table order.
FIND_COLUMNS = tuple(INDEXED_FIELDS.values())
#: The bind names of a full row, in ``row_values`` order.
ROW_KEYS = (
    "id",
    "model_type",
    "namespace",
    "data",
    "metadata",
    "created_at",
    "updated_at",
    *FIND_COLUMNS,
)


def records_table(name: str = DEFAULT_TABLE, schema: str | None = None) -> sa.Table:
    """The records table; one per store."""
    id_type = sa.String(MAX_ID_BYTES).with_variant(
        sa.String(MAX_ID_BYTES, collation="C"), "postgresql"
    )
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("id", id_type, primary_key=True),
        sa.Column("model_type", sa.String(255), nullable=False),
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("metadata", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        *(sa.Column(key, sa.String(INDEX_KEY_MAX_LENGTH), nullable=True) for key in FIND_COLUMNS),
        sa.Index(f"{name}_by_flow_run", "flow_run_id"),
        sa.Index(f"{name}_by_flow_task", "flow_name", "task_name", "version"),
        sa.Index(f"{name}_by_task", "task_name", "version"),
        sa.Index(f"{name}_by_update", "updated_at"),
        schema=schema,
    )


def create_records_table(conn: Connection, table: sa.Table) -> None:
    """Create ``table`` unless it exists, or give a table made before the find columns
    those columns, filled, and their indexes (the async backend runs this through
    ``run_sync``)."""
    if conn.dialect.name == "postgresql":
        # Many workers may open a new store at once; CREATE TABLE IF NOT EXISTS still races.
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": CREATE_LOCK_KEY})
    table.metadata.create_all(conn, checkfirst=True)
    present = {column["name"] for column in sa.inspect(conn).get_columns(table.name, table.schema)}
    missing = [key for key in FIND_COLUMNS if key not in present]
    if not missing:
        return
    quote = conn.dialect.identifier_preparer
    for key in missing:
        kind = table.c[key].type.compile(dialect=conn.dialect)
        conn.execute(
            sa.text(f"ALTER TABLE {quote.format_table(table)} ADD COLUMN {quote.quote(key)} {kind}")
        )
    _fill_find_columns(conn, table)
    for index in table.indexes:
        index.create(conn, checkfirst=True)


def _fill_find_columns(conn: Connection, table: sa.Table) -> None:
    """Set the find columns of every row from its metadata (a row whose metadata is not
    a JSON object keeps them empty: it is damaged, and matches no find)."""
    c = table.c
    updates = []
    for result_id, metadata in conn.execute(sa.select(c.id, c.metadata)):
        try:
            decoded = load_json(metadata)
        except ValueError:
            continue
        if isinstance(decoded, dict):
            keys = index_keys(decoded)
            if any(value is not None for value in keys.values()):
                updates.append({"row_id": result_id, **{f"new_{k}": v for k, v in keys.items()}})
    if updates:
        fill = (
            table.update()
            .where(c.id == sa.bindparam("row_id"))
            .values({key: sa.bindparam(f"new_{key}") for key in FIND_COLUMNS})
        )
        conn.execute(fill, updates)


class _DriverValue(sa.types.TypeDecorator[Any]):
    """A column read as the driver returns it: no result processing by SQLAlchemy."""

    impl = sa.types.NullType
    cache_ok = True


class Statements:
    """The SQL of every backend operation, built once per table and dialect."""

    def __init__(self, table: sa.Table, dialect: Dialect) -> None:
        self.table = table
        self.dialect_name = dialect.name
        c = table.c
        # The times are read as the driver gives them (SQLite text, a PostgreSQL
        # datetime), not through SQLAlchemy's DateTime parsing: ``record_from_row`` alone
        # decodes a row, so a damaged time is a ``CorruptRecordError`` on every path,
        # sync and async (SQLAlchemy raised a bare ValueError while fetching the row).
        self.columns = (
            c.id,
            c.model_type,
            c.namespace,
            c.data,
            c.metadata,
            sa.type_coerce(c.created_at, _DriverValue).label("created_at"),
            sa.type_coerce(c.updated_at, _DriverValue).label("updated_at"),
        )
        self.read = sa.select(*self.columns).where(c.id == sa.bindparam("id"))
        # What ``get`` validates: no times or metadata to fetch and parse.
        self.read_data = sa.select(c.model_type, c.namespace, c.data).where(
            c.id == sa.bindparam("id")
        )
        # The row a conditional write compares before it writes: locked until the write
        # commits on PostgreSQL; SQLite renders no FOR UPDATE (BEGIN IMMEDIATE already
        # keeps every other writer out of the transaction).
        self.read_for_update = self.read.with_for_update()
        self.exists = sa.select(c.id).where(c.id == sa.bindparam("id"))
        # Batches bind their IDs as ONE text parameter and join it as a table: an
        # expanding IN renders and binds a parameter per ID, which cost PostgreSQL more
        # than running the query, and ``id = ANY(array)`` let PostgreSQL's generic plan
        # scan the table, testing every row against every ID. PostgreSQL gets the IDs
        # one per line (no ID holds a control character; psycopg's array dumper cost
        # 0.24 s per 100k IDs), SQLite a JSON list. ``batch`` makes the parameters.
        if dialect.name == "postgresql":
            ids = sa.bindparam("ids", type_=sa.Text)
            lines = sa.func.string_to_array(ids, sa.literal_column("E'\\n'"))
            in_batch = c.id.in_(sa.select(sa.func.unnest(lines)))
        else:
            listed = sa.func.json_each(sa.bindparam("ids", type_=sa.Text)).table_valued("value")
            in_batch = c.id.in_(sa.select(listed.c.value))
        self.read_many = sa.select(*self.columns).where(in_batch)
        self.exists_many = sa.select(c.id).where(in_batch)
        self.delete = sa.delete(table).where(c.id == sa.bindparam("id"))
        self.delete_many = sa.delete(table).where(in_batch)
        self.clear = sa.delete(table)
        insert = postgresql.insert(table) if dialect.name == "postgresql" else sqlite.insert(table)
        # RETURNING says whether the row went in; rowcount is not reliable for every driver.
        self.insert = insert.on_conflict_do_nothing(index_elements=[c.id]).returning(c.id)
        self.upsert = insert.on_conflict_do_update(
            index_elements=[c.id],
            set_={
                name: insert.excluded[name]
                for name in (
                    "model_type",
                    "namespace",
                    "data",
                    "metadata",
                    "updated_at",
                    *FIND_COLUMNS,
                )
            },
        )

    def batch(self, result_ids: Sequence[str]) -> dict[str, str]:
        """The parameters of ``read_many`` and ``exists_many`` for ``result_ids``
        (normalized IDs: one holding a newline would split in two on PostgreSQL)."""
        if self.dialect_name == "postgresql":
            return {"ids": "\n".join(result_ids)}
        return {"ids": json.dumps(list(result_ids))}

    def list_ids(self, prefix: str | None) -> sa.Select[str]:
        """IDs equal to ``prefix`` or below it by whole segments, sorted."""
        c = self.table.c
        query = sa.select(c.id).order_by(c.id)
        return query if prefix is None else query.where(*self._under(prefix))

    def find(self, query: RecordQuery) -> sa.Select[Any]:
        """The rows ``query`` may select, sorted by ID: narrowed by the ID range, the
        indexed find columns and the update time; only IDs when those say it all, else
        whole rows for ``found_ids`` to judge."""
        c = self.table.c
        statement = sa.select(*(self.columns if query.needs_records else (c.id,))).order_by(c.id)
        if query.prefix is not None:
            statement = statement.where(*self._under(query.prefix))
        for key, text in query.exact_fields.items():
            statement = statement.where(c[key] == index_key(text))
        if query.updated_before is not None:
            statement = statement.where(c.updated_at < query.updated_before.astimezone(UTC))
        return statement

    @staticmethod
    def found_ids(query: RecordQuery, rows: Sequence[Sequence[Any]]) -> list[str]:
        """The IDs among the rows of ``find`` that ``query`` selects (a damaged row none)."""
        if not query.needs_records:
            return [row[0] for row in rows]
        found = []
        for row in rows:
            try:
                record = record_from_row(row)
            except CorruptRecordError:
                continue
            if query.matches(record):
                found.append(row[0])
        return found

    def _under(self, prefix: str) -> tuple[sa.ColumnElement[bool], ...]:
        """IDs equal to ``prefix`` or below it by whole segments.

        One index range, read in key order (no sort): ``id = p OR (p/ <= id < p0)``
        became two index searches and a temporary B-tree for ORDER BY on SQLite. The
        OR only filters IDs inside the range that extend p's last segment (``p-x``).
        """
        c = self.table.c
        in_range = sa.and_(c.id >= prefix, c.id < prefix_upper_bound(prefix))
        return in_range, sa.or_(c.id == prefix, c.id >= prefix + "/")


class CompiledStatement:
    """A Core statement compiled once for a driver: its SQL text and how to order and
    convert its parameters, so a row runner can skip SQLAlchemy on every call."""

    def __init__(self, statement: sa.ClauseElement, table: sa.Table, dialect: Dialect) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect, column_keys=list(ROW_KEYS)))
        self.sql = str(compiled)
        self.names = tuple(compiled.positiontup or ())
        # The column types' own conversions (datetimes to SQLAlchemy's SQLite text format),
        # so rows written here and through Core look the same; a batch's ``ids`` has its own.
        types = {name: bind.type for name, bind in compiled.binds.items()}
        types.update((column.key, column.type) for column in table.c)
        self.processors = tuple(types[name].bind_processor(dialect) for name in self.names)
        self.by_id_only = self.names == ("id",) and self.processors == (None,)

    def params(self, values: dict[str, Any]) -> tuple[Any, ...]:
        """The positional parameters for ``values``."""
        if self.by_id_only:  # the one-ID lookups behind every get and exists
            return (values["id"],)
        return tuple(
            values[name] if convert is None else convert(values[name])
            for name, convert in zip(self.names, self.processors, strict=True)
        )


def compiled_statements(statements: Statements, dialect: Dialect) -> dict[str, CompiledStatement]:
    """The one-row and batch statements (``ONE_ROW``, ``BATCH``) compiled for
    ``dialect``'s driver."""
    return {
        name: CompiledStatement(getattr(statements, name), statements.table, dialect)
        for name in ONE_ROW + BATCH
    }


def row_values(result_id: str, record: Record) -> dict[str, Any]:
    """The bind values that store ``record`` under ``result_id``."""
    return {
        "id": result_id,
        "model_type": record.model_type,
        "namespace": record.namespace,
        "data": record.data,
        "metadata": json.dumps(record.metadata, ensure_ascii=False),
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        **index_keys(record.metadata),
    }


def record_from_row(row: Sequence[Any]) -> Record:
    """A ``Record`` from a row of ``Statements.columns``: the one row decoder of every
    SQL path (sync and async, Core and the row runners).

    Raises:
        CorruptRecordError: the row's metadata is not a JSON object, or a time is not
            a time (a row written by hand or by another program); names the ID.
    """
    result_id, model_type, namespace, data, metadata, created_at, updated_at = row
    try:
        decoded = {} if metadata == "{}" else load_json(metadata)
        if not isinstance(decoded, dict):
            raise TypeError(f"metadata is a JSON {type(decoded).__name__}, not an object")
        created = parse_time(created_at)
        return Record(
            model_type=model_type,
            namespace=namespace,
            data=data,
            created_at=created,
            # Never overwritten, a record has one time twice: parse it once.
            updated_at=created if updated_at == created_at else parse_time(updated_at),
            metadata=decoded,
        )
    except (TypeError, ValueError) as exc:
        raise CorruptRecordError(
            f"the row of result ID {result_id!r} is a damaged results_flow record: {exc}"
        ) from exc
