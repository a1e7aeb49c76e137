"""DatabaseDataManager: datasets as real SQL tables plus a catalogue (SQLite, PostgreSQL).

Every dataset table is its own SQL table with typed columns (``sql_tables``), so plain
SQL can query
it; the catalogue row and all data tables of a dataset are written, replaced or
dropped in ONE transaction, so a failed write leaves nothing behind. Datasets are
read on first access and kept in a bounded LRU cache. A catalogue table of an
unknown shape raises ``CatalogueSchemaError``; it is never migrated silently.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Connection, Engine, make_url

from results_flow.backends.sql.engine import make_engine, mapped_error, transaction
from results_flow.data.data_manager import DataManager
from results_flow.data.datasource import (
    DataKind,
    DataSource,
    DataTable,
    table_model,
    validate_rows,
)
from results_flow.data.etl import ETLFactory, ETLPipeline, ETLResult, Files
from results_flow.data.messages import ValidationResult
from results_flow.data.schemas import FileSchema, TableSchema, table_schemas
from results_flow.data.sql_rows import insert_rows, select_rows
from results_flow.data.sql_tables import (
    CATALOGUE_COLUMNS,
    DEFAULT_CATALOGUE,
    DEFAULT_PREFIX,
    STORAGE_FORMAT,
    TABLE_ENTRIES,
    TableEntry,
    catalogue_table,
    data_table,
    naive_datetime_columns,
    sql_table_name,
)
from results_flow.data.validate import ChunkValidation
from results_flow.errors import (
    CatalogueSchemaError,
    CorruptDatasetError,
)
from results_flow.gc_pause import older_objects_frozen
from results_flow.records import parse_time
from results_flow.settings import DATASET_CACHE_SIZE, ETL_CHUNK_ROWS, SQLITE_BUSY_TIMEOUT
from results_flow.urls import database_url, mask_url

T = TypeVar("T")

DEFAULT_URL = "sqlite:///results_flow_datasets.db"


class _StreamFailed(Exception):
    """Bad data failed a streamed load: its transaction is rolled back."""


class DatabaseDataManager(DataManager):
    """Keeps datasets in a SQL database through a SQLAlchemy engine.

    Args:
        url: a database URL (``sqlite:///path.db``, ``postgresql://...``) or an engine.
        schemas: the files and tables datasets are loaded from (and typed by).
        etl_factory: builds the ETL pipelines; ``SimpleETLFactory(schemas)`` by default.
        protect_master_data: the default of ``delete_data``'s ``protect_master``.
        cache_size: datasets kept in memory after being read (0 keeps none).
        catalogue: the catalogue table's name.
        table_prefix: the first part of every data table's name.
        db_schema: the database schema (namespace) of all tables, if not the default.
        busy_timeout: seconds a SQLite write waits for other writers.
        chunk_rows: rows read, validated and inserted at a time when ETL streams.
    """

    def __init__(
        self,
        url: str | Engine = DEFAULT_URL,
        schemas: Iterable[FileSchema] = (),
        *,
        etl_factory: ETLFactory | None = None,
        protect_master_data: bool = False,
        cache_size: int = DATASET_CACHE_SIZE,
        catalogue: str = DEFAULT_CATALOGUE,
        table_prefix: str = DEFAULT_PREFIX,
        db_schema: str | None = None,
        busy_timeout: float = SQLITE_BUSY_TIMEOUT,
        chunk_rows: int = ETL_CHUNK_ROWS,
    ) -> None:
        super().__init__(schemas, etl_factory=etl_factory, protect_master_data=protect_master_data)
        self.busy_timeout = busy_timeout
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be at least 1, not {chunk_rows}")
        self.chunk_rows = chunk_rows
        self._owns_engine = not isinstance(url, Engine)
        self.engine = url if isinstance(url, Engine) else _create_engine(url, busy_timeout)
        self.location = mask_url(self.engine.url)
        self.cache_size = cache_size
        self.table_prefix = table_prefix
        self.db_schema = db_schema
        self.catalogue = catalogue_table(catalogue, db_schema)
        self._cache: OrderedDict[str, DataSource] = OrderedDict()
        self._ready = False

    def startup(self) -> None:
        """Create the catalogue table if missing, and check its shape if present.

        Raises:
            CatalogueSchemaError: the catalogue table has other columns than this version's.
            StoreError: the database cannot be reached.
        """
        self._write(self._ensure_catalogue, check_catalogue=False)
        self._ready = True

    def get_data_keys(self) -> list[str]:
        c = self.catalogue.c
        return self._read(
            lambda conn: list(conn.execute(sa.select(c.name).order_by(c.name)).scalars())
        )

    def has_data(self, name: str) -> bool:
        c = self.catalogue.c
        query = sa.select(c.name).where(c.name == name)
        return self._read(lambda conn: conn.execute(query).first() is not None)

    def get_data(self, name: str) -> DataSource:
        """The dataset ``name``, from the cache or read from its tables.

        Raises:
            DataSourceNotFoundError: no such dataset.
            CatalogueSchemaError: its catalogue row is of an unknown storage format.
            CorruptDatasetError: a table is gone or a row no longer validates.
        """
        with self._lock:
            cached = self._cache.get(name)
            if cached is not None:
                self._cache.move_to_end(name)
                return cached
        found = self._read(lambda conn: self._load(conn, name))
        if found is None:
            raise self._not_found(name)
        self._remember(found)
        return found

    def table_name(self, dataset: str, table: str) -> str:
        """The SQL table holding ``table`` of ``dataset``, for plain SQL queries.

        Raises:
            DataSourceNotFoundError: no such dataset.
            KeyError: the dataset has no such table.
        """
        row = self._read(lambda conn: self._catalogue_row(conn, dataset))
        if row is None:
            raise self._not_found(dataset)
        for entry in self._entries(row):
            if entry.name == table:
                return entry.sql_table
        raise KeyError(f"dataset {dataset!r} has no table {table!r}")

    @property
    def cached_names(self) -> list[str]:
        """The datasets held in memory, least recently used first."""
        with self._lock:
            return list(self._cache)

    def clear_cache(self) -> None:
        """Forget every cached dataset (the next ``get_data`` reads from the database)."""
        with self._lock:
            self._cache.clear()

    def close(self) -> None:
        """Release the engine's connections (only an engine this manager created)."""
        if self._owns_engine:
            self.engine.dispose()

    def _store(self, data_source: DataSource, *, replace: bool) -> None:
        declared = table_schemas(self.schemas)
        entries = [
            self._entry(data_source.name, table, declared) for table in data_source.tables.values()
        ]

        def write(conn: Connection) -> None:
            self._make_room(conn, data_source.name, overwrite=replace)
            self._insert_catalogue_row(conn, data_source, entries)
            metadata = sa.MetaData()
            for entry in entries:
                table = data_table(entry, metadata, self.db_schema)
                table.create(conn)
                insert_rows(conn, table, data_source.tables[entry.name], entry.columns)

        self._write(write)
        with self._lock:
            self._cache.pop(data_source.name, None)
        self._remember(data_source)

    def add_table_chunks(
        self, name: str, chunks: Iterable[DataTable], *, overwrite: bool = False
    ) -> DataSource:
        """Store master dataset ``name`` from its tables' rows given chunk by chunk, each
        inserted as it comes, in one transaction; the dataset's rows are read from the
        database when first used.

        Raises:
            DataSourceExistsError: ``name`` is taken and ``overwrite`` is False.
        """
        with self._lock:
            self._claim(name, overwrite=overwrite)

            def write(conn: Connection) -> DataSource:
                self._make_room(conn, name, overwrite=overwrite)
                writer = _ChunkWriter(self, conn, name)
                for chunk in chunks:
                    writer.write(chunk)
                return writer.finish(list(writer.entries))

            data_source = self._write(write)
            self._cache.pop(name, None)
        self._remember(data_source)
        return data_source

    def etl_data(self, files: Files, dataset_name: str, *, overwrite: bool = False) -> ETLResult:
        """Run ETL on ``files`` into ``dataset_name``, streaming when the pipeline allows.

        CSV files with the built-in validators, no transformers and the default loader
        are read, validated and inserted ``chunk_rows`` at a time in one transaction,
        so memory stays flat whatever the file's size; the result's dataset is then
        read from the database when first used. Other pipelines run as in
        ``DataManager.etl_data``.

        Raises:
            ETLConstructionError: the pipeline cannot be built.
            DataSourceExistsError: ``dataset_name`` is taken and ``overwrite`` is False.
        """
        with self._lock:
            self._claim(dataset_name, overwrite=overwrite)
            pipeline = self.etl_factory.build_pipeline(files, dataset_name)
            if pipeline.stream_order() is None:
                result = pipeline.run()
                if result.data_source is not None:
                    self.add_data_source(result.data_source, overwrite=overwrite)
                return result
            try:
                created = self._write(
                    lambda conn: self._stream(conn, pipeline, overwrite=overwrite)
                )
            except _StreamFailed as failed:
                return pipeline.outcome(None, failed.args[0])
            self._cache.pop(dataset_name, None)
        data_source, found = created
        self._remember(data_source)
        return pipeline.outcome(data_source, found)

    def _stream(
        self, conn: Connection, pipeline: ETLPipeline, *, overwrite: bool
    ) -> tuple[DataSource, ValidationResult]:
        """Extract, validate and insert chunk by chunk; the catalogue row goes in last.

        Raises:
            _StreamFailed: the data fails the load (the transaction is rolled back).
            DataSourceExistsError: the name is taken and ``overwrite`` is False.
        """
        name = pipeline.dataset_name
        order = pipeline.stream_order() or []
        result = ValidationResult()
        checks = ChunkValidation(
            pipeline.schemas, pipeline.validators, result, pipeline.message_limit
        )
        self._make_room(conn, name, overwrite=overwrite)
        writer = _ChunkWriter(self, conn, name)
        with older_objects_frozen():
            for extractor in order:
                for chunk in extractor.chunks(result, self.chunk_rows):
                    table = checks.validate(chunk)
                    if table is None or pipeline.fails(result):
                        continue  # go on reading: the result lists every finding
                    writer.write(table)
            by_table = {e.schema.tables[0].name: e for e in order}
            checks.finish(lambda t: by_table[t].chunks(ValidationResult(), self.chunk_rows))
        if pipeline.fails(result) or not writer.entries:
            raise _StreamFailed(result)
        return writer.finish([n for n in pipeline.schemas if n in writer.entries]), result

    def _entry(
        self, dataset: str, table: DataTable, declared: Mapping[str, TableSchema]
    ) -> TableEntry:
        """How ``table`` of ``dataset`` is kept: its SQL table, columns and key."""
        columns = table.columns
        key = list(declared[table.name].primary_key) if table.name in declared else []
        return TableEntry(
            name=table.name,
            sql_table=sql_table_name(self.table_prefix, dataset, table.name),
            columns=columns,
            # the declared key, as long as this table still has its columns
            primary_key=key if set(key) <= {c.name for c in columns} else [],
            naive_datetimes=naive_datetime_columns(table),
        )

    def _insert_catalogue_row(
        self, conn: Connection, data_source: DataSource, entries: list[TableEntry]
    ) -> None:
        """Record ``data_source`` and its tables in the catalogue.

        Raises:
            DataSourceExistsError: another writer recorded that name first.
        """
        row = {
            "name": data_source.name,
            "kind": data_source.kind.value,
            "created_at": data_source.created_at,
            "derived_from": data_source.derived_from,
            "format": STORAGE_FORMAT,
            "tables": TABLE_ENTRIES.dump_json(entries).decode(),
        }
        try:
            conn.execute(sa.insert(self.catalogue), row)
        except sa.exc.IntegrityError as exc:
            raise self._exists_error(data_source.name) from exc

    def _remove(self, name: str) -> None:
        def remove(conn: Connection) -> None:
            self._lock_name(conn, name)
            self._drop(conn, name)

        self._write(remove)
        with self._lock:
            self._cache.pop(name, None)

    def _is_master(self, name: str) -> bool:
        row = self._read(lambda conn: self._catalogue_row(conn, name))
        return row is None or row.kind == DataKind.MASTER.value

    def _make_room(self, conn: Connection, name: str, *, overwrite: bool) -> None:
        """Make way for dataset ``name`` in the write transaction of ``conn``: drop the
        stored one when ``overwrite``, else refuse. The answer ``_claim`` gave before the
        transaction may be stale: another writer may have stored the name since.

        Raises:
            DataSourceExistsError: ``name`` is stored and ``overwrite`` is False.
        """
        self._lock_name(conn, name)
        if overwrite:
            self._drop(conn, name)
        elif self._catalogue_row(conn, name) is not None:
            raise self._exists_error(name)

    def _lock_name(self, conn: Connection, name: str) -> None:
        """Hold dataset ``name`` against other writers until the transaction ends.

        SQLite writes are serialised already (``BEGIN IMMEDIATE``). On PostgreSQL two
        writers would both find the name free and then collide creating its tables,
        so each takes a transaction-level advisory lock on the name first.
        """
        _advisory_xact_lock(conn, f"{self._lock_scope}/dataset/{name}")

    @property
    def _lock_scope(self) -> str:
        """What this manager's advisory locks are keyed on: its catalogue table."""
        return f"results_flow.data:{_qualified(self.catalogue.name, self.db_schema)}"

    def _drop(self, conn: Connection, name: str) -> None:
        row = self._catalogue_row(conn, name)
        if row is None:
            return
        metadata = sa.MetaData()
        for entry in self._entries(row):
            sa.Table(entry.sql_table, metadata, schema=self.db_schema).drop(conn, checkfirst=True)
        conn.execute(sa.delete(self.catalogue).where(self.catalogue.c.name == name))

    def _load(self, conn: Connection, name: str) -> DataSource | None:
        row = self._catalogue_row(conn, name)
        if row is None:
            return None
        declared = table_schemas(self.schemas)
        tables = []
        for entry in self._entries(row):
            model = table_model(entry.name, entry.columns, declared)
            table = data_table(entry, sa.MetaData(), self.db_schema)
            try:
                rows = select_rows(conn, table, entry.primary_key)
            except sa.exc.SQLAlchemyError as exc:
                conn.rollback()  # PostgreSQL refuses further queries in a failed transaction
                if sa.inspect(conn).has_table(entry.sql_table, schema=self.db_schema):
                    raise
                raise CorruptDatasetError(
                    f"dataset {name!r}: table {entry.name!r} is missing its SQL table "
                    f"{entry.sql_table!r} in {self.location}"
                ) from exc
            tables.append(
                DataTable(entry.name, model, validate_rows(name, entry.name, model, rows))
            )
        return DataSource(
            name,
            tables,
            kind=DataKind(row.kind),
            created_at=parse_time(row.created_at),
            derived_from=row.derived_from,
        )

    def _catalogue_row(self, conn: Connection, name: str) -> Any:
        self._check_ready(conn)
        return conn.execute(sa.select(self.catalogue).where(self.catalogue.c.name == name)).first()

    def _entries(self, row: Any) -> list[TableEntry]:
        if row.format != STORAGE_FORMAT:
            raise CatalogueSchemaError(
                f"dataset {row.name!r} in {self.location} ({self.catalogue.name}) is stored as "
                f"{row.format!r}; this version reads {STORAGE_FORMAT!r}"
            )
        try:
            return TABLE_ENTRIES.validate_json(row.tables)
        except ValidationError as exc:
            raise CatalogueSchemaError(
                f"dataset {row.name!r} in {self.location}: unreadable table list in the "
                f"catalogue {self.catalogue.name}: {exc.error_count()} errors"
            ) from exc

    def _ensure_catalogue(self, conn: Connection) -> None:
        name, schema = self.catalogue.name, self.db_schema
        if not sa.inspect(conn).has_table(name, schema=schema):
            # Many processes may start on a fresh database at once: on PostgreSQL each
            # creates the table under a lock, after looking again (CREATE TABLE IF NOT
            # EXISTS still races on the catalog's unique indexes).
            _advisory_xact_lock(conn, f"{self._lock_scope}/catalogue")
            if not sa.inspect(conn).has_table(name, schema=schema):
                self.catalogue.create(conn)
                return
        found = {c["name"] for c in sa.inspect(conn).get_columns(name, schema=schema)}
        if found != CATALOGUE_COLUMNS:
            raise CatalogueSchemaError(
                f"catalogue table {name!r} in {self.location} has columns "
                f"{', '.join(sorted(found))}; this version of results_flow expects "
                f"{', '.join(sorted(CATALOGUE_COLUMNS))}. It was written by another tool or "
                "version: drop it (and its data tables) or use another catalogue= name"
            )

    def _check_ready(self, conn: Connection) -> None:
        if not self._ready:
            self._ensure_catalogue(conn)
            self._ready = True

    def _remember(self, data_source: DataSource) -> None:
        if self.cache_size <= 0:
            return
        with self._lock:
            self._cache[data_source.name] = data_source
            self._cache.move_to_end(data_source.name)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def _read(self, work: Callable[[Connection], T]) -> T:
        if not self._ready:
            self.startup()
        try:
            with self.engine.connect() as conn:
                return work(conn)
        except sa.exc.SQLAlchemyError as exc:
            raise mapped_error(exc, self.location) from exc

    def _write(self, work: Callable[[Connection], T], *, check_catalogue: bool = True) -> T:
        """One transaction (``BEGIN IMMEDIATE`` on SQLite), retried while SQLite is busy."""

        def checked(conn: Connection) -> T:
            if check_catalogue:
                self._check_ready(conn)
            return work(conn)

        return transaction(
            self.engine, checked, busy_timeout=self.busy_timeout, location=self.location
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"


class _ChunkWriter:
    """Writes a dataset whose tables come chunk by chunk, inside one transaction: each
    table is created at its first chunk, and the catalogue row goes in last."""

    def __init__(self, manager: DatabaseDataManager, conn: Connection, dataset: str) -> None:
        self.manager = manager
        self.conn = conn
        self.dataset = dataset
        self.entries: dict[str, TableEntry] = {}
        self._declared = table_schemas(manager.schemas)
        self._metadata = sa.MetaData()
        self._tables: dict[str, sa.Table] = {}

    def write(self, chunk: DataTable) -> None:
        """Insert the rows of ``chunk`` (creating its table at its first chunk)."""
        entry = self.entries.get(chunk.name)
        if entry is None:
            entry = self.manager._entry(self.dataset, chunk, self._declared)
            self.entries[chunk.name] = entry
            table = data_table(entry, self._metadata, self.manager.db_schema)
            table.create(self.conn)
            self._tables[chunk.name] = table
        insert_rows(self.conn, self._tables[chunk.name], chunk, entry.columns)

    def finish(self, order: list[str]) -> DataSource:
        """Record the dataset (its tables in ``order``) in the catalogue; the dataset.

        Raises:
            DataSourceExistsError: another writer recorded that name first.
        """
        data_source = _StreamedDataSource(self.manager, self.dataset)
        entries = [self.entries[name] for name in order]
        self.manager._insert_catalogue_row(self.conn, data_source, entries)
        return data_source


class _StreamedDataSource(DataSource):
    """A dataset just streamed into the database: its rows are read when first used."""

    def __init__(self, manager: DatabaseDataManager, name: str) -> None:
        self._manager = manager
        self._loaded: dict[str, DataTable] | None = None
        super().__init__(name)

    @property
    def tables(self) -> dict[str, DataTable]:
        """The tables, read from the database on first use."""
        if self._loaded is None:
            manager, name = self._manager, self.name
            stored = manager._read(lambda conn: manager._load(conn, name))
            if stored is None:
                raise manager._not_found(name)
            self._loaded = stored.tables
        return self._loaded

    @tables.setter
    def tables(self, value: dict[str, DataTable]) -> None:
        self._loaded = value or None


def _qualified(table: str, schema: str | None) -> str:
    return f"{schema}.{table}" if schema else table


_ADVISORY_XACT_LOCK = sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")


def _advisory_xact_lock(conn: Connection, key: str) -> None:
    """On PostgreSQL, wait for and hold the advisory lock on ``key`` (hashed to 64 bits)
    until the transaction ends; elsewhere nothing (SQLite serialises its writers)."""
    if conn.dialect.name == "postgresql":
        conn.execute(_ADVISORY_XACT_LOCK, {"key": key})


def _create_engine(url: str, busy_timeout: float) -> Engine:
    """An engine on ``url`` (psycopg 3 for PostgreSQL; WAL and BEGIN IMMEDIATE on SQLite)."""
    parsed = make_url(database_url(url, "sync"))
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        return make_engine(parsed, busy_timeout=busy_timeout)
    return make_engine(parsed, busy_timeout=busy_timeout, options={"pool_pre_ping": True})
