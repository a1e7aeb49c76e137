"""Cells no store can keep fail the load with messages; what validates reads back equal.

Regressions of issue 13 items 8 and 9: ``nan``, an integer of 2**64 and a NUL made the
load raise at the store step (SQLite, PostgreSQL), and a time's offset, a naive
datetime (PostgreSQL) and ``nan`` changed between load and reload. Issue 21 item 8:
decimals outside PostgreSQL's numeric range and a NUL inside a JSON column value
crashed a PostgreSQL load with raw psycopg errors.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from results_flow.data import (
    DatabaseDataManager,
    DataManager,
    File,
    SimpleETLFactory,
    StatefulDataManager,
    StatelessDataManager,
    Transformer,
    ValidationResult,
    schema,
)
from results_flow.data.messages import ValidationMessage
from results_flow.data.transform import Tables

KINDS = ["stateless", "stateful", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


class Reading(BaseModel):
    id: int
    value: float
    count: int
    note: str


class FloatKeyed(BaseModel):
    key: float
    note: str


class Stamped(BaseModel):
    id: int
    at: datetime | None = None
    clock: time | None = None


class Priced(BaseModel):
    id: int
    amount: Decimal | None = None
    extra: dict[str, Any] | None = None


SCHEMAS = [
    schema("readings", Reading, primary_key="id"),
    schema("keyed", FloatKeyed, primary_key="key"),
    schema("stamped", Stamped, primary_key="id"),
    schema("priced", Priced, format="json", primary_key="id"),
]


@pytest.fixture(params=KINDS)
def manager(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DataManager]:
    made: DataManager
    if request.param == "stateless":
        made = StatelessDataManager(SCHEMAS)
    elif request.param == "stateful":
        made = StatefulDataManager(tmp_path / "datasets", SCHEMAS)
    elif request.param == "sqlite":
        made = DatabaseDataManager(f"sqlite:///{tmp_path / 'datasets.db'}", SCHEMAS)
    else:
        made = DatabaseDataManager(request.getfixturevalue("postgres_url"), SCHEMAS)
    made.startup()
    yield made
    if isinstance(made, DatabaseDataManager):
        made.close()


def load(manager: DataManager, tmp_path: Path, name: str, text: str) -> list[ValidationMessage]:
    """Load ``text`` as file ``name`` alone; the ERROR messages of the failed load."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    factory = manager.etl_factory
    factory.require_all_files = False
    result = manager.etl_data([File.from_path(path)], "cells")
    assert result.status == "failed", result.validation_result.summary()
    assert not manager.has_data("cells")
    return result.validation_result.errors


@pytest.mark.parametrize(
    ("row", "column", "code"),
    [
        ("1,nan,1,a", "value", "invalid_value"),
        ("1,inf,1,a", "value", "invalid_value"),
        (f"1,1.5,{2**64},a", "count", "invalid_value"),
        (f"1,1.5,{-(2**63) - 1},a", "count", "invalid_value"),
        ("1,1.5,1,a\0b", "note", "invalid_value"),
    ],
)
def test_a_cell_no_store_can_keep_fails_the_load_with_a_message(
    manager: DataManager, tmp_path: Path, row: str, column: str, code: str
) -> None:
    text = f"id,value,count,note\n0,0.5,{2**63 - 1},fine\n{row}\n"
    errors = load(manager, tmp_path, "readings.csv", text)
    assert [(e.code, e.table, e.column, e.row) for e in errors] == [(code, "readings", column, 2)]
    assert "readings.csv" in errors[0].message


#: PostgreSQL's numeric keeps at most 131072 digits before the point and 16383 after.
EDGE_DECIMALS = ["9" * 131072, "1E+131071", "-1E-16383", "1." + "0" * 16383, "0E+999999999"]


@pytest.mark.parametrize(
    ("cell", "column"),
    [
        ({"amount": "1E+999999999"}, "amount"),
        ({"amount": "-1E+131072"}, "amount"),
        ({"amount": "1E-20000"}, "amount"),
        ({"amount": "1." + "0" * 16384}, "amount"),
        ({"amount": "9" * 200_000}, "amount"),
        ({"extra": {"k": "a\0b"}}, "extra"),
        ({"extra": {"deep": [{"a\0": 1}]}}, "extra"),
        ({"extra": {"k": [1.5, float("nan")]}}, "extra"),
    ],
)
def test_a_decimal_or_json_value_no_store_can_keep_fails_the_load_with_a_message(
    manager: DataManager, tmp_path: Path, cell: dict[str, Any], column: str
) -> None:
    rows = [{"id": 0, "amount": "1.5", "extra": {"k": "fine"}}, {"id": 1, **cell}]
    errors = load(manager, tmp_path, "priced.json", json.dumps(rows))
    assert [(e.code, e.table, e.column, e.row) for e in errors] == [
        ("invalid_value", "priced", column, 2)
    ]
    assert "priced.json" in errors[0].message
    assert len(errors[0].message) < 300  # a 200,000-digit number is not repeated


def test_a_lone_surrogate_in_a_json_file_refuses_the_file_by_name(
    manager: DataManager, tmp_path: Path
) -> None:
    """JSON text may escape a lone surrogate, which no store can keep: the file's parser
    refuses it (one message naming the file), before any row reaches a store."""
    rows = [{"id": 0, "amount": "1.5", "extra": {"k": "\ud800"}}]
    errors = load(manager, tmp_path, "priced.json", json.dumps(rows))
    assert [e.code for e in errors] == ["malformed_json"]
    assert "priced.json" in errors[0].message


def test_decimals_at_the_edge_of_the_range_read_back_equal(
    manager: DataManager, tmp_path: Path
) -> None:
    path = tmp_path / "priced.json"
    rows = [{"id": i, "amount": v} for i, v in enumerate(EDGE_DECIMALS)]
    path.write_text(json.dumps(rows), encoding="utf-8")
    manager.etl_factory.require_all_files = False
    result = manager.etl_data([File.from_path(path)], "cells")
    assert result.status == "success", result.validation_result.summary()
    if isinstance(manager, DatabaseDataManager):
        manager.clear_cache()
    again = manager.get_data("cells").rows("priced", Priced)
    assert [r.amount for r in again] == [Decimal(v) for v in EDGE_DECIMALS]


def test_a_nan_primary_key_counts_as_missing(manager: DataManager, tmp_path: Path) -> None:
    errors = load(manager, tmp_path, "keyed.csv", "key,note\nnan,a\nnan,b\n1.5,c\n")
    assert [(e.code, e.table, e.column, e.row) for e in errors] == [
        ("null_primary_key", "keyed", "key", 1),
        ("null_primary_key", "keyed", "key", 2),
    ]


def test_a_time_with_an_offset_is_refused(manager: DataManager, tmp_path: Path) -> None:
    errors = load(manager, tmp_path, "stamped.csv", "id,at,clock\n1,,12:00\n2,,12:00+02:00\n")
    assert [(e.code, e.column, e.row) for e in errors] == [("invalid_value", "clock", 2)]


def test_a_column_mixing_naive_and_aware_datetimes_is_refused(
    manager: DataManager, tmp_path: Path
) -> None:
    text = "id,at,clock\n1,2024-05-01T10:00,\n2,2024-05-01T10:00+02:00,\n"
    errors = load(manager, tmp_path, "stamped.csv", text)
    assert [(e.code, e.column, e.row) for e in errors] == [("invalid_value", "at", 2)]


@pytest.mark.parametrize(
    "cells",
    [
        ["2024-05-01T10:00:00.123456", "1999-12-31T23:59:59"],  # naive
        ["2024-05-01T10:00:00+02:00", "2024-05-01T10:00:00-05:30"],  # aware
    ],
)
def test_what_validated_reads_back_equal(
    manager: DataManager, tmp_path: Path, cells: list[str]
) -> None:
    path = tmp_path / "stamped.csv"
    lines = [f"{i},{cell},12:34:56.5" for i, cell in enumerate(cells, 1)]
    path.write_text("id,at,clock\n" + "\n".join(lines) + "\n3,,\n", encoding="utf-8")
    manager.etl_factory.require_all_files = False
    result = manager.etl_data([File.from_path(path)], "cells")
    assert result.status == "success", result.validation_result.summary()
    assert result.data_source is not None
    loaded = result.data_source.rows("stamped", Stamped)
    if isinstance(manager, DatabaseDataManager):
        manager.clear_cache()
    again = manager.get_data("cells").rows("stamped", Stamped)
    assert again == loaded
    assert [r.at.tzinfo is None for r in again if r.at] == [
        r.at.tzinfo is None for r in loaded if r.at
    ]
    assert [r.at.utcoffset() for r in again if r.at] == [
        r.at.utcoffset() for r in loaded if r.at
    ] or isinstance(manager, DatabaseDataManager)


def test_floats_read_back_exactly(manager: DataManager, tmp_path: Path) -> None:
    path = tmp_path / "readings.csv"
    path.write_text(
        f"id,value,count,note\n1,0.1,{2**63 - 1},é\n2,-0.0,{-(2**63)},-\n3,1e308,0,x\n",
        encoding="utf-8",
    )
    manager.etl_factory.require_all_files = False
    result = manager.etl_data([File.from_path(path)], "cells")
    assert result.status == "success", result.validation_result.summary()
    if isinstance(manager, DatabaseDataManager):
        manager.clear_cache()
    again = manager.get_data("cells").rows("readings", Reading)
    assert [(r.value, r.count, r.note) for r in again] == [
        (0.1, 2**63 - 1, "é"),
        (-0.0, -(2**63), "-"),
        (1e308, 0, "x"),
    ]


class Breaks(Transformer):
    """A transformer that makes a value no store keeps: NaN."""

    def transform(self, tables: Tables, result: ValidationResult) -> Tables:
        table = tables["readings"]
        table.rows = [row.model_copy(update={"value": float("nan")}) for row in table.rows[:1]]
        return tables


def test_a_value_a_transformer_made_fails_the_load_too(
    manager: DataManager, tmp_path: Path
) -> None:
    path = tmp_path / "readings.csv"
    path.write_text("id,value,count,note\n1,0.5,1,a\n", encoding="utf-8")
    factory = SimpleETLFactory(SCHEMAS, transformers=[Breaks()], require_all_files=False)
    manager.etl_factory = factory
    result = manager.etl_data([File.from_path(path)], "cells")
    assert result.status == "failed"
    [error] = result.validation_result.errors
    assert (error.code, error.table, error.column, error.row) == (
        "invalid_value",
        "readings",
        "value",
        1,
    )
    assert "transformed table 'readings'" in error.message
    assert not manager.has_data("cells")
