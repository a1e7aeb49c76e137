"""StatefulDataManager: a folder of JSON files that survives the process."""

from __future__ import annotations

from pathlib import Path

from results_flow.data import StatefulDataManager
from tests.data.models import shop_files, shop_schemas


def loaded(folder: Path) -> StatefulDataManager:
    manager = StatefulDataManager(folder, shop_schemas())
    manager.startup()
    return manager


def test_datasets_survive_a_restart(tmp_path: Path) -> None:
    first = loaded(tmp_path)
    first.etl_data(shop_files(), "shop")
    first.derive_data("shop", "copy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.json", "shop.json"]

    second = loaded(tmp_path)
    assert second.startup_errors == []
    assert second.get_data_keys() == ["copy", "shop"]
    assert second.get_data("shop").rows("orders") == first.get_data("shop").rows("orders")
    assert second.get_data("copy").derived_from == "shop"


def test_startup_loads_the_good_items_and_reports_the_corrupt_one(tmp_path: Path) -> None:
    first = loaded(tmp_path)
    first.etl_data(shop_files(), "a")
    first.derive_data("a", "b")
    first.derive_data("a", "c")
    (tmp_path / "b.json").write_text('{"format": "results_flow.dataset/1", "name": "b", tru')
    (tmp_path / "misnamed.json").write_bytes((tmp_path / "c.json").read_bytes())

    second = loaded(tmp_path)
    assert second.get_data_keys() == ["a", "c"]
    problems = {e.path.name: str(e.error) for e in second.startup_errors}
    assert set(problems) == {"b.json", "misnamed.json"}
    assert "not a stored results_flow dataset" in problems["b.json"]
    assert "holds dataset 'c', not 'misnamed'" in problems["misnamed.json"]
    assert str(tmp_path / "b.json") in str(second.startup_errors[0])


def test_a_file_not_loaded_is_never_overwritten(tmp_path: Path) -> None:
    first = loaded(tmp_path)
    first.etl_data(shop_files(), "shop")
    other = StatefulDataManager(tmp_path, shop_schemas())  # no startup()
    assert other.has_data("shop")


def test_delete_removes_the_file_and_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    manager = loaded(tmp_path)
    manager.etl_data(shop_files(), "shop")
    manager.etl_data(shop_files(), "shop", overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["shop.json"]
    manager.delete_data("shop")
    assert list(tmp_path.iterdir()) == []
    assert loaded(tmp_path).get_data_keys() == []
