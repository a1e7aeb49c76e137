"""DataSource: a named dataset of tables whose rows are validated Pydantic models.

A dataset is master data (loaded by ETL) or derived data (a copy made with
``derive``, free to change). It round-trips through JSON: each table is stored with
its column specs, so it reads back with its schema's row model or, for a table no
schema declares (a join's output), with a model rebuilt from the specs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from results_flow.choices import member
from results_flow.data.columns import ColumnSpec, model_columns, model_from_columns
from results_flow.data.schemas import FileSchema, TableSchema, table_schemas
from results_flow.errors import CorruptDatasetError, InvalidDatasetNameError
from results_flow.records import utc_now

if TYPE_CHECKING:  # pandas is an optional extra, imported only by to_pandas()
    import pandas

FORMAT = "results_flow.dataset/1"
M = TypeVar("M", bound=BaseModel)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}")


class DataKind(StrEnum):
    """Master data comes from ETL; derived data is a copy made from a dataset."""

    MASTER = "master"
    DERIVED = "derived"


def check_dataset_name(name: str) -> str:
    """``name`` if it is fit for a file or table name: letters, digits, ``_.-``, 1-100 long.

    Raises:
        InvalidDatasetNameError: it is not.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in (".", ".."):
        raise InvalidDatasetNameError(
            f"dataset name {name!r}: use 1-100 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


@lru_cache(maxsize=256)
def rows_adapter(model: type[BaseModel]) -> TypeAdapter[list[Any]]:
    """A cached adapter validating or dumping a whole list of ``model`` rows in one call."""
    return TypeAdapter(list[model])  # type: ignore[valid-type]


@lru_cache(maxsize=256)
def _has_aliases(model: type[BaseModel]) -> bool:
    return any(f.alias or f.validation_alias for f in model.model_fields.values())


def validate_by_name(model: type[BaseModel], rows: list[dict[str, Any]]) -> list[BaseModel]:
    """Rows keyed by field name (as ``DataTable.dump`` gives them) validated as ``model``.

    Raises:
        pydantic.ValidationError: a row does not validate.
    """
    adapter = rows_adapter(model)
    if _has_aliases(model):  # needs pydantic >= 2.11 for by_name
        validated: list[BaseModel] = adapter.validate_python(rows, by_alias=True, by_name=True)
    else:
        validated = adapter.validate_python(rows)
    return validated


class DataTable:
    """One table: a name, its row model and its validated rows."""

    def __init__(self, name: str, model: type[BaseModel], rows: Sequence[BaseModel]) -> None:
        self.name = name
        self.model = model
        self.rows: list[BaseModel] = rows if isinstance(rows, list) else list(rows)

    @property
    def columns(self) -> list[ColumnSpec]:
        """The column specs of the row model."""
        return model_columns(self.model)

    def dump(self, mode: Literal["python", "json"] = "python") -> list[dict[str, Any]]:
        """The rows as dicts (``json`` mode: dates as ISO strings, decimals as strings)."""
        dumped: list[dict[str, Any]] = rows_adapter(self.model).dump_python(self.rows, mode=mode)
        return dumped

    def copy(self) -> DataTable:
        """An independent deep copy."""
        return DataTable(self.name, self.model, [r.model_copy(deep=True) for r in self.rows])

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return f"DataTable({self.name!r}, {self.model.__name__}, {len(self.rows)} rows)"


class StoredTable(BaseModel):
    """A table as stored: its column specs and its rows in JSON mode."""

    name: str
    columns: list[ColumnSpec]
    rows: list[dict[str, Any]]


class StoredDataSource(BaseModel):
    """A dataset as stored (the JSON form of a ``DataSource``)."""

    format: Literal["results_flow.dataset/1"] = "results_flow.dataset/1"
    name: str
    kind: DataKind
    created_at: datetime
    derived_from: str | None = None
    tables: list[StoredTable] = Field(default_factory=list)


class DataSource:
    """A named dataset: tables of validated rows, master or derived."""

    def __init__(
        self,
        name: str,
        tables: Mapping[str, DataTable] | Iterable[DataTable] = (),
        *,
        kind: DataKind = DataKind.MASTER,
        created_at: datetime | None = None,
        derived_from: str | None = None,
    ) -> None:
        self.name = check_dataset_name(name)
        items = tables.values() if isinstance(tables, Mapping) else tables
        self.tables: dict[str, DataTable] = {t.name: t for t in items}
        self.kind = member(DataKind, kind, "kind")
        self.created_at = created_at or utc_now()
        self.derived_from = derived_from

    @property
    def is_master(self) -> bool:
        """Whether this is master data (from ETL) rather than derived."""
        return self.kind is DataKind.MASTER

    def table(self, name: str) -> DataTable:
        """The table called ``name``.

        Raises:
            KeyError: no such table in this dataset (the message lists the tables).
        """
        try:
            return self.tables[name]
        except KeyError:
            have = ", ".join(sorted(self.tables)) or "none"
            raise KeyError(
                f"dataset {self.name!r} has no table {name!r} (tables: {have})"
            ) from None

    @overload
    def rows(self, table: str) -> list[BaseModel]: ...
    @overload
    def rows(self, table: str, model: type[M]) -> list[M]: ...
    def rows(self, table: str, model: type[M] | None = None) -> list[M] | list[BaseModel]:
        """The validated rows of ``table``; typed as ``model`` when given.

        Raises:
            KeyError: no such table.
            TypeError: ``model`` is not the table's row model (or a base of it).
        """
        found = self.table(table)
        if model is not None and not issubclass(found.model, model):
            raise TypeError(
                f"dataset {self.name!r}, table {table!r} holds {found.model.__name__} rows, "
                f"not {model.__name__}"
            )
        return found.rows

    def derive(self, new_name: str) -> DataSource:
        """An independent copy named ``new_name``, marked as derived from this dataset."""
        return DataSource(
            new_name,
            [t.copy() for t in self.tables.values()],
            kind=DataKind.DERIVED,
            derived_from=self.name,
        )

    def to_model(self) -> StoredDataSource:
        """The stored (JSON-ready) form."""
        return StoredDataSource(
            name=self.name,
            kind=self.kind,
            created_at=self.created_at,
            derived_from=self.derived_from,
            tables=[
                StoredTable(name=t.name, columns=t.columns, rows=t.dump("json"))
                for t in self.tables.values()
            ],
        )

    def to_json(self) -> str:
        """The dataset as JSON text."""
        return self.to_model().model_dump_json()

    @classmethod
    def from_model(cls, stored: StoredDataSource, schemas: Iterable[FileSchema] = ()) -> DataSource:
        """Rebuild a dataset, validating every row (as its schema's model when declared).

        Raises:
            CorruptDatasetError: a row does not validate.
        """
        known = table_schemas(schemas)
        tables = [
            DataTable(t.name, m, validate_rows(stored.name, t.name, m, t.rows))
            for t in stored.tables
            for m in [table_model(t.name, t.columns, known)]
        ]
        return cls(
            stored.name,
            tables,
            kind=stored.kind,
            created_at=stored.created_at,
            derived_from=stored.derived_from,
        )

    @classmethod
    def from_json(cls, text: str | bytes, schemas: Iterable[FileSchema] = ()) -> DataSource:
        """Read a dataset written by ``to_json``.

        Raises:
            CorruptDatasetError: not a stored dataset, or a row does not validate.
        """
        try:
            stored = StoredDataSource.model_validate_json(text)
        except ValidationError as exc:
            raise CorruptDatasetError(f"not a stored results_flow dataset: {exc}") from exc
        return cls.from_model(stored, schemas)

    def to_pandas(self, table: str | None = None) -> pandas.DataFrame | dict[str, pandas.DataFrame]:
        """One table as a DataFrame, or every table by name (needs the ``pandas`` extra).

        Raises:
            ImportError: pandas is not installed.
        """
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError("to_pandas() needs pandas; install results-flow[pandas]") from exc

        def frame(t: DataTable) -> pandas.DataFrame:
            return pd.DataFrame.from_records(t.dump(), columns=[c.name for c in t.columns])

        if table is not None:
            return frame(self.table(table))
        return {name: frame(t) for name, t in self.tables.items()}

    def __repr__(self) -> str:
        sizes = ", ".join(f"{n}={len(t)}" for n, t in self.tables.items())
        return f"DataSource({self.name!r}, {self.kind.value}, {sizes})"


def table_model(
    name: str, columns: list[ColumnSpec], known: Mapping[str, TableSchema]
) -> type[BaseModel]:
    """The declared row model of table ``name``, or one rebuilt from its column specs."""
    declared = known.get(name)
    return declared.model if declared is not None else model_from_columns(name, columns)


def validate_rows(
    dataset: str, table: str, model: type[BaseModel], rows: list[dict[str, Any]]
) -> list[BaseModel]:
    """Stored rows validated as ``model``.

    Raises:
        CorruptDatasetError: a row does not validate (the message names the row).
    """
    try:
        validated = validate_by_name(model, rows)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = first["loc"]
        row = where[0] + 1 if where and isinstance(where[0], int) else "?"
        raise CorruptDatasetError(
            f"dataset {dataset!r}, table {table!r}, row {row}: stored data does not validate "
            f"as {model.__name__}: {first['msg']} ({exc.error_count()} errors)"
        ) from exc
    return validated
