"""DataSource (derive, JSON round trip, pandas) and the clean and join transformers."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime, time
from decimal import Decimal
from enum import Enum

import pytest
from pydantic import BaseModel

from results_flow.data import (
    CleanTransformer,
    DataKind,
    DataSource,
    DataTable,
    JoinTransformer,
    SimpleETLFactory,
    ValidationResult,
)
from results_flow.data.columns import model_columns, model_from_columns
from results_flow.errors import CorruptDatasetError, InvalidDatasetNameError
from tests.data.models import Customer, Order, shop_files, shop_schemas


class Shade(Enum):
    LIGHT = 1
    DARK = 2


class Inner(BaseModel):
    x: int
    when: date


class Everything(BaseModel):
    id: uuid.UUID
    amount: Decimal
    at: datetime
    day: date
    clock: time
    shade: Shade
    flag: bool
    inner: Inner
    tags: list[str]
    note: str | None = None


def everything() -> Everything:
    return Everything(
        id=uuid.UUID(int=7),
        amount=Decimal("10.005"),
        at=datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
        day=date(2024, 5, 6),
        clock=time(13, 14, 15),
        shade=Shade.DARK,
        flag=True,
        inner=Inner(x=1, when=date(2020, 1, 1)),
        tags=["a", "b"],
    )


@pytest.fixture
def shop() -> DataSource:
    result = SimpleETLFactory(shop_schemas()).build_pipeline(shop_files(), "shop").run()
    assert result.data_source is not None, result.validation_result.summary()
    return result.data_source


def test_shop_loads_as_master_data(shop: DataSource) -> None:
    assert shop.kind is DataKind.MASTER and shop.is_master
    assert list(shop.tables) == ["customers", "orders", "categories", "products"]
    assert isinstance(shop.rows("customers")[0], Customer)
    assert shop.rows("orders")[0] == Order(
        order_id=1001,
        customer_id=1,
        sku="KB-01",
        quantity=1,
        amount=Decimal("49.90"),
        ordered_at=datetime(2024, 3, 1, 9, 15, tzinfo=UTC),
    )
    with pytest.raises(KeyError, match="no table 'nope'.*customers"):
        shop.table("nope")


def test_typed_rows_check_the_model(shop: DataSource) -> None:
    assert shop.rows("orders", Order)[0].order_id == 1001
    with pytest.raises(TypeError, match="holds Order rows, not Customer"):
        shop.rows("orders", Customer)


def test_derive_is_an_independent_derived_copy(shop: DataSource) -> None:
    derived = shop.derive("what-if")
    assert (derived.name, derived.kind, derived.derived_from) == (
        "what-if",
        DataKind.DERIVED,
        "shop",
    )
    derived.rows("customers", Customer)[0].name = "changed"
    assert shop.rows("customers", Customer)[0].name == "Ada Lovelace"


def test_json_round_trip_with_declared_models(shop: DataSource) -> None:
    back = DataSource.from_json(shop.to_json(), shop_schemas())
    assert back.name == shop.name and back.created_at == shop.created_at
    for name, table in shop.tables.items():
        assert back.rows(name) == table.rows


def test_json_round_trip_without_schemas_keeps_every_kind() -> None:
    source = DataSource("kinds", [DataTable("things", Everything, [everything()])])
    back = DataSource.from_json(source.to_json())
    [row] = back.rows("things")
    dumped = row.model_dump()
    assert dumped["id"] == uuid.UUID(int=7)
    assert dumped["amount"] == Decimal("10.005")
    assert dumped["at"] == datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert (dumped["day"], dumped["clock"]) == (date(2024, 5, 6), time(13, 14, 15))
    assert dumped["shade"] == 2 and dumped["flag"] is True
    assert dumped["inner"] == {"x": 1, "when": "2020-01-01"}
    assert dumped["tags"] == ["a", "b"] and dumped["note"] is None


def test_column_specs_of_a_model() -> None:
    kinds = {c.name: (c.kind, c.nullable) for c in model_columns(Everything)}
    assert kinds == {
        "id": ("uuid", False),
        "amount": ("decimal", False),
        "at": ("datetime", False),
        "day": ("date", False),
        "clock": ("time", False),
        "shade": ("integer", False),
        "flag": ("boolean", False),
        "inner": ("json", False),
        "tags": ("json", False),
        "note": ("string", True),
    }
    rebuilt = model_from_columns("things", model_columns(Everything))
    assert rebuilt.__name__ == "ThingsRow"


def test_corrupt_json_names_the_problem() -> None:
    with pytest.raises(CorruptDatasetError, match="not a stored results_flow dataset"):
        DataSource.from_json(b"{}")
    text = DataSource("d", [DataTable("t", Customer, [])]).to_json()
    stored = json.loads(text)
    stored["tables"][0]["rows"] = [{"id": "x"}]
    with pytest.raises(CorruptDatasetError, match="dataset 'd', table 't', row 1"):
        DataSource.from_json(json.dumps(stored), shop_schemas())


@pytest.mark.parametrize("name", ["", "a/b", "../x", "x" * 101, "with space", "."])
def test_dataset_names_fit_for_files_and_tables(name: str) -> None:
    with pytest.raises(InvalidDatasetNameError):
        DataSource(name)


def test_to_pandas(shop: DataSource) -> None:
    pd = pytest.importorskip("pandas")
    frame = shop.to_pandas("orders")
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == list(Order.model_fields)
    assert len(frame) == 6
    frames = shop.to_pandas()
    assert isinstance(frames, dict) and set(frames) == set(shop.tables)


def test_importing_the_data_layer_imports_neither_pandas_nor_prefect() -> None:
    code = (
        "import sys, results_flow.data; "
        "print(sorted(m for m in ('pandas', 'prefect', 'openpyxl') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_clean_transformer_strips_fills_and_drops_duplicates() -> None:
    class Note(BaseModel):
        id: int
        text: str
        tag: str | None = None

    table = DataTable(
        "notes",
        Note,
        [Note(id=1, text="  a "), Note(id=1, text="a"), Note(id=2, text="b", tag="x")],
    )
    result = ValidationResult()
    cleaned = CleanTransformer(fill={"tag": "none"}, drop_duplicates=True).transform(
        {"notes": table}, result
    )
    assert cleaned["notes"].rows == [
        Note(id=1, text="a", tag="none"),
        Note(id=2, text="b", tag="x"),
    ]
    assert result.codes()["duplicates_dropped"] == 1


def test_join_builds_a_typed_table(shop: DataSource) -> None:
    result = ValidationResult()
    tables = JoinTransformer("orders", "customers", [("customer_id", "id")], "order_customers")
    joined = tables.transform(dict(shop.tables), result)["order_customers"]
    assert len(joined) == 6
    fields = joined.model.model_fields
    assert {"order_id", "amount", "name", "country"} <= set(fields)
    assert "customers_id" not in fields and "id" in fields  # no clash: kept as is
    first = joined.rows[0]
    assert (first.order_id, first.name) == (1001, "Ada Lovelace")  # type: ignore[attr-defined]


def test_left_join_keeps_unmatched_rows_with_empty_right_columns(shop: DataSource) -> None:
    result = ValidationResult()
    tables = dict(shop.tables)
    orders = [o for o in shop.rows("orders", Order) if o.customer_id != 4]
    tables["orders"] = DataTable("orders", Order, orders)
    left = JoinTransformer(
        "customers",
        "orders",
        [("id", "customer_id")],
        "customer_orders",
        how="left",
        keep_inputs=False,
    ).transform(tables, result)
    assert "customers" not in left and "orders" not in left
    rows = left["customer_orders"].rows
    assert len(rows) == 6  # Ada has two orders, Edsger none
    edsger = [r for r in rows if r.id == 4]  # type: ignore[attr-defined]
    assert [r.order_id for r in edsger] == [None]  # type: ignore[attr-defined]
    assert (
        len(
            JoinTransformer("customers", "orders", [("id", "customer_id")], "i").transform(
                tables, result
            )["i"]
        )
        == 5
    )
    inner = JoinTransformer("categories", "products", [("id", "category_id")], "x").transform(
        dict(shop.tables), result
    )["x"]
    assert {r.products_name for r in inner.rows} == {  # type: ignore[attr-defined]
        "Mechanical keyboard",
        "Wireless mouse",
        "27-inch monitor",
        "USB-C cable",
    }


def test_join_of_a_missing_table_is_an_error_message(shop: DataSource) -> None:
    result = ValidationResult()
    JoinTransformer("orders", "ghosts", "id", "x").transform(dict(shop.tables), result)
    assert result.codes()["join_input_missing"] == 1


def test_a_kind_given_as_its_string_acts_as_the_member() -> None:
    assert DataSource("shop", kind="master").is_master  # type: ignore[arg-type]
    assert not DataSource("shop", kind="derived").is_master  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind must be a DataKind or one of 'master'"):
        DataSource("shop", kind="primary")  # type: ignore[arg-type]
