"""Bulk work keeps the collector off its objects and leaves the collector as it found
it: the streamed load freezes older objects (issue 12 item 4), ``get_many`` pauses
collection while it decodes (issue 12 item 1)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel, field_validator

from results_flow import ResultsManager
from results_flow.data import DatabaseDataManager, File, schema
from results_flow.gc_pause import collection_paused, older_objects_frozen
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


def test_collection_is_paused_in_the_block_and_back_on_after_an_error() -> None:
    inside: list[bool] = []

    def fail() -> None:
        inside.append(gc.isenabled())
        raise KeyError("x")

    assert gc.isenabled()
    with pytest.raises(KeyError), collection_paused():
        fail()
    assert inside == [False]
    assert gc.isenabled()


def test_collection_left_off_by_the_caller_stays_off() -> None:
    gc.disable()
    try:
        with collection_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_get_many_decodes_with_collection_paused_and_restores_it(tmp_path: Path) -> None:
    """Guards the pause in decode_many: it is on while models are validated, off after,
    also when a stored record no longer validates."""
    seen: list[bool] = []

    class Loose(BaseModel):
        n: int

    class Probe(BaseModel):
        n: int

        @field_validator("n")
        @classmethod
        def note(cls, n: int) -> int:
            seen.append(gc.isenabled())
            if n < 0:
                raise ValueError("negative")
            return n

    manager = ResultsManager.from_url(f"sqlite:///{tmp_path / 'r.db'}")
    manager.set("p/1", Probe(n=1))
    manager.set("p/2", Loose(n=-1))
    before = len(seen)
    found = manager.get_many(["p/1", "p/2"], Probe, on_invalid="skip")
    assert seen[before:] == [False, False]
    assert found == {"p/1": Probe(n=1)}
    assert gc.isenabled()
    manager.close()
