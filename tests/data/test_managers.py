"""The DataManager contract on every manager: memory, folder, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from results_flow.data import (
    DatabaseDataManager,
    DataKind,
    DataManager,
    StatefulDataManager,
    StatelessDataManager,
)
from results_flow.errors import (
    DataSourceExistsError,
    DataSourceNotFoundError,
    ETLConstructionError,
    InvalidDatasetNameError,
    ProtectedDataError,
)
from tests.data.models import copy_shop, shop_files, shop_schemas

KINDS = ["stateless", "stateful", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=KINDS)
def manager(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DataManager]:
    schemas = shop_schemas()
    made: DataManager
    if request.param == "stateless":
        made = StatelessDataManager(schemas)
    elif request.param == "stateful":
        made = StatefulDataManager(tmp_path / "datasets", schemas)
    elif request.param == "sqlite":
        made = DatabaseDataManager(f"sqlite:///{tmp_path / 'datasets.db'}", schemas)
    else:
        made = DatabaseDataManager(request.getfixturevalue("postgres_url"), schemas)
    made.startup()
    yield made
    if isinstance(made, DatabaseDataManager):
        made.close()


def test_etl_from_csv_and_json_stores_the_dataset(manager: DataManager) -> None:
    result = manager.etl_data(shop_files(), "shop")
    assert result.status == "success", result.validation_result.summary()
    assert manager.get_data_keys() == ["shop"]
    stored = manager.get_data("shop")
    assert stored.kind is DataKind.MASTER
    assert {n: len(t) for n, t in stored.tables.items()} == {
        "customers": 5,
        "orders": 6,
        "categories": 3,
        "products": 4,
    }
    assert result.data_source is not None
    assert stored.rows("products") == result.data_source.rows("products")
    assert stored.rows("customers") == result.data_source.rows("customers")


def test_failed_etl_stores_nothing(manager: DataManager, tmp_path: Path) -> None:
    folder = copy_shop(tmp_path / "in")
    (folder / "orders.csv").write_text("order_id,customer_id\n1,1\n")
    result = manager.etl_data(shop_files(folder), "shop")
    assert result.status == "failed"
    assert {m.column for m in result.validation_result.errors} >= {"sku", "amount"}
    assert manager.get_data_keys() == []
    with pytest.raises(DataSourceNotFoundError, match="no dataset 'shop'"):
        manager.get_data("shop")


def test_construction_errors_raise(manager: DataManager, tmp_path: Path) -> None:
    with pytest.raises(ETLConstructionError):
        manager.etl_data(shop_files(tmp_path), "shop")  # no such files there
    with pytest.raises(InvalidDatasetNameError):
        manager.etl_data(shop_files(), "no/slashes")


def test_no_silent_overwrite(manager: DataManager) -> None:
    first = manager.etl_data(shop_files(), "shop")
    assert first.data_source is not None
    with pytest.raises(DataSourceExistsError, match="'shop' already exists"):
        manager.etl_data(shop_files(), "shop")
    with pytest.raises(DataSourceExistsError):
        manager.add_data_source(first.data_source)
    smaller = first.data_source.derive("shop")
    smaller.tables["orders"].rows = smaller.tables["orders"].rows[:2]
    manager.add_data_source(smaller, overwrite=True)
    assert len(manager.get_data("shop").rows("orders")) == 2
    assert manager.etl_data(shop_files(), "shop", overwrite=True).succeeded
    assert len(manager.get_data("shop").rows("orders")) == 6


def test_derive_and_delete_with_master_protection(manager: DataManager) -> None:
    manager.etl_data(shop_files(), "shop")
    derived = manager.derive_data("shop", "what-if")
    assert derived.kind is DataKind.DERIVED
    assert manager.get_data_keys() == ["shop", "what-if"]
    assert manager.get_data("what-if").derived_from == "shop"
    with pytest.raises(DataSourceExistsError):
        manager.derive_data("shop", "what-if")
    with pytest.raises(DataSourceNotFoundError):
        manager.derive_data("ghost", "x")

    with pytest.raises(ProtectedDataError, match="'shop' is master data"):
        manager.delete_data("shop", protect_master=True)
    manager.delete_data("what-if", protect_master=True)  # derived data may go
    manager.delete_data("shop")
    assert manager.get_data_keys() == []
    with pytest.raises(DataSourceNotFoundError):
        manager.delete_data("shop")


def test_manager_wide_master_protection(tmp_path: Path) -> None:
    manager = StatelessDataManager(shop_schemas(), protect_master_data=True)
    manager.etl_data(shop_files(), "shop")
    with pytest.raises(ProtectedDataError):
        manager.delete_data("shop")
    manager.delete_data("shop", protect_master=False)
    assert not manager.has_data("shop")
