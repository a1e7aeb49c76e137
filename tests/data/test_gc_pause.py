"""The streamed load leaves the objects older than it out of full collections, and
leaves the collector as it found it (issue 12 item 4)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from results_flow.data import DatabaseDataManager, File, schema
from results_flow.data.gc_pause import older_objects_frozen
from tests.data.test_sql_rows import Sale


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_objects_older_than_the_block_are_frozen_until_it_ends(unfrozen: None) -> None:
    with older_objects_frozen():
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0


def test_an_existing_freeze_is_left_alone(unfrozen: None) -> None:
    gc.freeze()
    frozen = gc.get_freeze_count()
    # Frozen objects that die leave the count, so it may only fall; a second freeze
    # would take these newer objects in and raise it.
    newer = [[] for _ in range(10_000)]
    with older_objects_frozen():
        assert gc.get_freeze_count() <= frozen
    assert 0 < gc.get_freeze_count() <= frozen
    assert len(newer) == 10_000


def test_an_error_in_the_block_still_unfreezes(unfrozen: None) -> None:
    with pytest.raises(KeyError), older_objects_frozen():
        raise KeyError("x")
    assert gc.get_freeze_count() == 0


def test_a_streamed_load_ends_with_nothing_frozen(unfrozen: None, tmp_path: Path) -> None:
    lines = [f"{i},c{i},{i}.5,2024-01-02,true," for i in range(1, 30)]
    path = tmp_path / "sales.csv"
    path.write_text("id,customer,amount,day,paid,note\n" + "\n".join(lines) + "\n")
    manager = DatabaseDataManager(
        f"sqlite:///{tmp_path / 'd.db'}", [schema("sales", Sale, primary_key="id")], chunk_rows=10
    )
    result = manager.etl_data([File.from_path(path)], "sales")
    assert result.succeeded
    assert gc.get_freeze_count() == 0
    assert len(manager.get_data("sales").rows("sales")) == 29
    manager.close()
