"""DatabaseDataManager on SQLite and on the real PostgreSQL: real typed tables that
plain SQL reads, one transaction per write, lazy loading, a bounded cache, and a
clear error for a catalogue it does not know."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import BaseModel

from results_flow.data import DatabaseDataManager, DataSource, DataTable
from results_flow.errors import (
    CatalogueSchemaError,
    CorruptDatasetError,
    DataSourceExistsError,
    StoreError,
)
from tests.data.models import shop_files, shop_schemas


class Narrow(BaseModel):
    id: int


KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=KINDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'datasets.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def manager(url: str) -> Iterator[DatabaseDataManager]:
    made = DatabaseDataManager(url, shop_schemas())
    made.startup()
    yield made
    made.close()


def test_loaded_rows_read_back_through_plain_sql(manager: DatabaseDataManager) -> None:
    assert manager.etl_data(shop_files(), "shop").succeeded
    assert manager.table_name("shop", "orders") == "ds__shop__orders"
    with manager.engine.connect() as conn:
        orders = conn.execute(
            sa.text(
                "SELECT o.order_id, c.name, o.amount, o.ordered_at FROM ds__shop__orders o "
                "JOIN ds__shop__customers c ON c.id = o.customer_id "
                "WHERE o.quantity > :q ORDER BY o.order_id"
            ),
            {"q": 1},
        ).all()
        total = conn.execute(sa.text("SELECT sum(quantity) FROM ds__shop__orders")).scalar_one()
        catalogue = conn.execute(sa.text("SELECT name, kind FROM results_flow_datasets")).all()
    assert [(o[0], o[1]) for o in orders] == [
        (1002, "Grace Hopper"),
        (1004, "Alan Turing"),
        (1005, "Barbara Liskov"),
    ]
    assert Decimal(str(orders[0][2])) == Decimal("39.80")
    assert "2024-03-01" in str(orders[0][3])
    assert total == 13
    assert catalogue == [("shop", "master")]


def test_columns_are_typed_from_the_schema(manager: DatabaseDataManager, url: str) -> None:
    manager.etl_data(shop_files(), "shop")
    columns = {
        c["name"]: c["type"] for c in sa.inspect(manager.engine).get_columns("ds__shop__orders")
    }
    assert set(columns) == {"order_id", "customer_id", "sku", "quantity", "amount", "ordered_at"}
    assert isinstance(columns["order_id"], sa.Integer)
    assert isinstance(columns["sku"], sa.Text | sa.String)
    if url.startswith("postgresql"):
        assert isinstance(columns["amount"], sa.Numeric)
        assert isinstance(columns["ordered_at"], sa.DateTime)
        assert columns["ordered_at"].timezone
    pk = sa.inspect(manager.engine).get_pk_constraint("ds__shop__orders")
    assert pk["constrained_columns"] == ["order_id"]


def test_a_second_manager_reads_lazily_into_a_bounded_cache(url: str) -> None:
    writer = DatabaseDataManager(url, shop_schemas())
    writer.etl_data(shop_files(), "a")
    for name in ("b", "c"):
        writer.derive_data("a", name)
    writer.close()

    reader = DatabaseDataManager(url, shop_schemas(), cache_size=2)
    assert reader.get_data_keys() == ["a", "b", "c"]
    assert reader.cached_names == []  # nothing read yet
    a = reader.get_data("a")
    assert reader.get_data("a") is a  # from the cache
    reader.get_data("b")
    reader.get_data("c")
    assert reader.cached_names == ["b", "c"]  # "a" was evicted
    assert reader.get_data("a").rows("orders") == a.rows("orders")
    reader.close()


def test_catalogue_and_data_are_one_transaction(manager: DatabaseDataManager) -> None:
    # A table the second data table would need already exists: the write must fail
    # and leave neither the catalogue row nor the first table behind.
    with manager.engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE ds__shop__orders (x INTEGER)"))
    with pytest.raises(StoreError):
        manager.etl_data(shop_files(), "shop")
    inspector = sa.inspect(manager.engine)
    assert not inspector.has_table("ds__shop__customers")
    assert manager.get_data_keys() == []
    with manager.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM ds__shop__orders")).scalar_one() == 0


def test_delete_drops_the_tables(manager: DatabaseDataManager) -> None:
    manager.etl_data(shop_files(), "shop")
    manager.delete_data("shop")
    tables = set(sa.inspect(manager.engine).get_table_names())
    assert tables == {"results_flow_datasets"}


def test_overwrite_replaces_tables_of_another_shape(manager: DatabaseDataManager) -> None:
    class Wide(BaseModel):
        id: int
        a: str
        b: float | None = None

    manager.add_data_source(DataSource("free", [DataTable("t", Wide, [Wide(id=1, a="x")])]))
    manager.add_data_source(
        DataSource("free", [DataTable("t", Narrow, [Narrow(id=2)])]), overwrite=True
    )
    manager.clear_cache()
    assert [r.model_dump() for r in manager.get_data("free").rows("t")] == [{"id": 2}]


def test_odd_names_get_safe_table_names(manager: DatabaseDataManager) -> None:
    class Row(BaseModel):
        id: int
        at: datetime

    name = "Q3-Forecast.v2_" + "x" * 70
    row = Row(id=1, at=datetime(2024, 1, 1, 12, tzinfo=UTC))
    manager.add_data_source(DataSource(name, [DataTable("Weird Table", Row, [row])]))
    sql_name = manager.table_name(name, "Weird Table")
    assert len(sql_name) <= 63 and sql_name == sql_name.lower() and " " not in sql_name
    with manager.engine.connect() as conn:
        assert conn.execute(sa.text(f"SELECT id FROM {sql_name}")).scalar_one() == 1
    manager.clear_cache()
    [back] = manager.get_data(name).rows("Weird Table")
    assert back.model_dump() == {"id": 1, "at": datetime(2024, 1, 1, 12, tzinfo=UTC)}


def test_unknown_catalogue_schema_is_a_clear_error(url: str) -> None:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE results_flow_datasets (name TEXT, payload TEXT)"))
    engine.dispose()
    manager = DatabaseDataManager(url, shop_schemas())
    with pytest.raises(CatalogueSchemaError, match="results_flow_datasets.*name, payload"):
        manager.startup()
    with pytest.raises(CatalogueSchemaError):
        manager.get_data_keys()
    manager.close()


def test_a_dropped_data_table_is_reported(manager: DatabaseDataManager) -> None:
    manager.etl_data(shop_files(), "shop")
    manager.clear_cache()
    with manager.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE ds__shop__products"))
    with pytest.raises(CorruptDatasetError, match="'products' is missing its SQL table"):
        manager.get_data("shop")


def test_every_column_kind_round_trips(manager: DatabaseDataManager) -> None:
    from tests.data.test_datasource import Everything, everything

    row = everything()
    empty = everything().model_copy(update={"note": "n", "tags": []})
    manager.add_data_source(DataSource("kinds", [DataTable("things", Everything, [row, empty])]))
    manager.clear_cache()
    back = manager.get_data("kinds").rows("things")
    # No schema declares "things": the model is rebuilt from the stored column specs.
    assert [r.model_dump(mode="json") for r in back] == [
        {**r.model_dump(mode="json"), "shade": 2} for r in (row, empty)
    ]
    with manager.engine.connect() as conn:
        flag, shade = conn.execute(sa.text("SELECT flag, shade FROM ds__kinds__things")).all()[0]
    assert bool(flag) is True and shade == 2


def test_racing_writers_of_one_name_leave_one_dataset(url: str) -> None:
    managers = [DatabaseDataManager(url, shop_schemas()) for _ in range(2)]
    for m in managers:
        m.startup()
    source = DataSource("race", [DataTable("t", Narrow, [Narrow(id=i) for i in range(500)])])
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def add(manager: DatabaseDataManager) -> None:
        barrier.wait()
        try:
            manager.add_data_source(source)
            outcomes.append("stored")
        except DataSourceExistsError:
            outcomes.append("refused")

    threads = [threading.Thread(target=add, args=(m,)) for m in managers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refused", "stored"]
    managers[0].clear_cache()
    assert len(managers[0].get_data("race").rows("t")) == 500
    for m in managers:
        m.close()
