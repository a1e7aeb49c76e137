"""StatefulDataManager: a folder of JSON files that survives the process."""

from __future__ import annotations

import multiprocessing
from multiprocessing.synchronize import Barrier
from pathlib import Path

from results_flow.data import DataKind, DataSource, StatefulDataManager
from results_flow.errors import DataSourceExistsError
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


WRITERS = 6
TRIALS = 5


def add_each_name(folder: str, writer: int, barrier: Barrier, outcomes: list[str]) -> None:
    """One racing process: add datasets new-0 .. new-4, each marked with this writer."""
    manager = StatefulDataManager(folder)
    manager.startup()
    for trial in range(TRIALS):
        mine = DataSource(f"new-{trial}", kind=DataKind.DERIVED, derived_from=f"writer-{writer}")
        barrier.wait()
        try:
            manager.add_data_source(mine)
        except DataSourceExistsError:
            outcomes.append(f"{trial}:exists")
        else:
            outcomes.append(f"{trial}:stored:writer-{writer}")


def test_of_processes_adding_the_same_new_name_exactly_one_wins(tmp_path: Path) -> None:
    # Regression (issue 13 item 10): a check-then-replace let several writers report
    # "stored" while the last os.replace silently overwrote the others' data.
    context = multiprocessing.get_context("spawn")
    with context.Manager() as shared:
        barrier = shared.Barrier(WRITERS)
        outcomes = shared.list()
        processes = [
            context.Process(target=add_each_name, args=(str(tmp_path), w, barrier, outcomes))
            for w in range(WRITERS)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        assert [p.exitcode for p in processes] == [0] * WRITERS
        results = list(outcomes)
    stored = loaded(tmp_path)
    for trial in range(TRIALS):
        mine = [r for r in results if r.startswith(f"{trial}:")]
        winners = [r.split(":", 2)[2] for r in mine if ":stored:" in r]
        assert len(mine) == WRITERS
        assert len(winners) == 1, mine
        assert stored.get_data(f"new-{trial}").derived_from == winners[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"new-{t}.json" for t in range(TRIALS)]
