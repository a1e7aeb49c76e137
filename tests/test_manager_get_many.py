"""``get_many`` with records that no longer validate (issue 8 item 14): one bad record
never spoils a batch silently or half-way; ``on_invalid`` says what happens, on the sync
and async managers alike and on every backend."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import BaseModel

from results_flow import (
    AsyncResultsManager,
    InvalidResultsError,
    MemoryBackend,
    ResultsManager,
    ResultValidationError,
)
from tests.backends.conftest import KINDS, url_for

BATCH = 200
OLD = (7, 42, 99, 150, 160, 170, 199)


class Point(BaseModel):
    """The model as it is now: ``label`` was added after some records were stored."""

    x: int
    label: str


class OldPoint(BaseModel):
    x: int


@dataclass
class Store:
    """Opens sync and async managers on one store (a memory store is shared, not reopened)."""

    url: str
    memory: MemoryBackend | None = None

    def sync(self) -> ResultsManager:
        if self.memory is not None:
            return ResultsManager(backend=self.memory)
        return ResultsManager.from_url(self.url)

    def aio(self) -> AsyncResultsManager:
        if self.memory is not None:
            return AsyncResultsManager(backend=self.memory)
        return AsyncResultsManager.from_url(self.url)


@pytest.fixture(params=KINDS)
def filled(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A store of BATCH points, of which the OLD ones were written by the older model."""
    url = url_for(request.param, tmp_path, request)
    store = Store(url, MemoryBackend("get-many") if url == "memory://" else None)
    rm = store.sync()
    for i in range(BATCH):
        rm.set(f"pts/{i}", OldPoint(x=i) if i in OLD else Point(x=i, label=str(i)))
    yield store
    rm.clear()


def ids() -> list[str]:
    return [f"pts/{i}" for i in range(BATCH)] + ["pts/missing"]


def test_raise_counts_every_bad_id_names_the_first_few_and_keeps_the_rest(filled: Store) -> None:
    with filled.sync() as rm, pytest.raises(InvalidResultsError) as caught:
        rm.get_many(ids(), Point)
    error = caught.value
    assert isinstance(error, ResultValidationError)  # old `except` clauses still catch it
    message = str(error)
    assert message.startswith(f"{len(OLD)} of {BATCH} stored results no longer validate")
    assert "'pts/7', 'pts/42', 'pts/99', 'pts/150', 'pts/160' and 2 more" in message
    assert "as Point" in message and "on_invalid" in message
    assert sorted(error.invalid) == sorted(f"pts/{i}" for i in OLD)
    assert len(error.found) == BATCH - len(OLD)
    assert error.found["pts/0"] == Point(x=0, label="0")
    copy = pickle.loads(pickle.dumps(error))  # crosses process pools intact
    assert str(copy) == message and copy.invalid.keys() == error.invalid.keys()


def test_skip_leaves_bad_ids_out_like_missing_ones(filled: Store) -> None:
    with filled.sync() as rm:
        found = rm.get_many(ids(), Point, on_invalid="skip")
    assert len(found) == BATCH - len(OLD)
    assert not {f"pts/{i}" for i in OLD} & set(found)
    assert "pts/missing" not in found


def test_async_manager_has_the_same_choices(filled: Store) -> None:
    async def read() -> tuple[InvalidResultsError, dict[str, Point]]:
        async with filled.aio() as rm:
            with pytest.raises(InvalidResultsError) as caught:
                await rm.get_many(ids(), Point)
            return caught.value, await rm.get_many(ids(), Point, on_invalid="skip")

    error, skipped = asyncio.run(read())
    assert len(error.invalid) == len(OLD) and len(error.found) == len(skipped)
    assert len(skipped) == BATCH - len(OLD)


def test_unregistered_tags_count_as_invalid_and_bad_choices_are_refused() -> None:
    rm = ResultsManager.from_url("memory://get-many-tags")
    rm.set("a", OldPoint(x=1))  # OldPoint is not registered: no class to read it as
    with pytest.raises(InvalidResultsError, match=r"^1 of 1 stored result no longer validate"):
        rm.get_many(["a"])
    assert rm.get_many(["a"], on_invalid="skip") == {}
    with pytest.raises(ValueError, match="on_invalid must be one of"):
        rm.get_many(["a"], OldPoint, on_invalid="collect")  # type: ignore[arg-type]
