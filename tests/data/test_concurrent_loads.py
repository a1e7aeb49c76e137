"""DatabaseDataManager under concurrent writers, on SQLite and the real PostgreSQL.

Regressions of issue 21: two streamed ``etl_data`` runs into one new dataset name left
the loser with ``StoreUnavailableError: table already exists`` (SQLite) or a bare
``StoreError`` (PostgreSQL) instead of ``DataSourceExistsError``, and with
``overwrite=True`` on both one failed instead of replacing the other (item 9); 20
processes starting managers at once on a fresh PostgreSQL database raced on creating
the catalogue table, 3 to 9 of them failing with duplicate-key or "already exists"
errors (item 10).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from results_flow.data import DatabaseDataManager, File, schema
from results_flow.errors import DataSourceExistsError, ResultsFlowError

KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
#: Rows per file: enough that one streamed load lasts far longer than the other's check
#: of the name, so both runs find the name free before either commits.
ROWS = 20_000
ROUNDS = 3
STARTERS = 20


class Item(BaseModel):
    id: int
    writer: str


SCHEMAS = [schema("items", Item, primary_key="id")]


@pytest.fixture(params=KINDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'datasets.db'}"
    return str(request.getfixturevalue("postgres_url"))


def items_file(folder: Path, writer: str) -> File:
    path = folder / writer / "items.csv"
    path.parent.mkdir(parents=True)
    path.write_text("id,writer\n" + "".join(f"{i},{writer}\n" for i in range(ROWS)))
    return File.from_path(path)


def race(url: str, tmp_path: Path, name: str, *, overwrite: bool) -> dict[str, str]:
    """Two managers (engines of their own) stream ``name`` at once; each writer's outcome."""
    writers = {w: items_file(tmp_path / name, w) for w in ("a", "b")}
    managers = {w: DatabaseDataManager(url, SCHEMAS) for w in writers}
    barrier = threading.Barrier(len(writers))
    outcomes: dict[str, str] = {}

    def load(writer: str) -> None:
        manager = managers[writer]
        barrier.wait()
        try:
            result = manager.etl_data([writers[writer]], name, overwrite=overwrite)
            outcomes[writer] = result.status
        except DataSourceExistsError:
            outcomes[writer] = "refused"
        except Exception as exc:  # the regression: any other error is reported as such
            outcomes[writer] = f"{type(exc).__name__}: {exc}"

    for manager in managers.values():
        manager.startup()
    threads = [threading.Thread(target=load, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for manager in managers.values():
        manager.close()
    return outcomes


def stored_writers(url: str, name: str) -> set[str]:
    reader = DatabaseDataManager(url, SCHEMAS)
    try:
        rows = reader.get_data(name).rows("items", Item)
    finally:
        reader.close()
    assert len(rows) == ROWS
    return {row.writer for row in rows}


def test_two_streamed_loads_of_one_new_name_leave_one_and_refuse_the_other(
    url: str, tmp_path: Path
) -> None:
    for round in range(ROUNDS):
        name = f"race{round}"
        outcomes = race(url, tmp_path, name, overwrite=False)
        assert sorted(outcomes.values()) == ["refused", "success"], outcomes
        [winner] = [w for w, outcome in outcomes.items() if outcome == "success"]
        assert stored_writers(url, name) == {winner}


def test_two_streamed_overwrites_of_one_new_name_both_succeed(url: str, tmp_path: Path) -> None:
    for round in range(ROUNDS):
        name = f"race{round}"
        outcomes = race(url, tmp_path, name, overwrite=True)
        assert outcomes == {"a": "success", "b": "success"}, outcomes
        assert len(stored_writers(url, name)) == 1  # one writer's rows, never a mix


def start_managers(url: str, barrier: Any, outcomes: Any) -> None:
    """In a child process: for each round, start a manager on a catalogue of its own once
    every sibling is ready. The child leaves with ``os._exit`` once its outcomes are sent:
    a forked copy of the test session would otherwise run the session's inherited exit
    hooks (a Dask or Prefect import registers some), whose failure is not this test's."""
    code = 1
    try:
        for round in range(ROUNDS):
            manager = DatabaseDataManager(url, SCHEMAS, catalogue=f"catalogue_{round}")
            with manager.engine.connect():
                pass  # connected before the barrier: the startups meet at the server
            barrier.wait()
            try:
                manager.startup()
                outcomes.put("started")
            except ResultsFlowError as exc:
                outcomes.put(f"{type(exc).__name__}: {exc}")
            finally:
                manager.close()
        code = 0
    finally:
        outcomes.close()
        outcomes.join_thread()
        os._exit(code)


def test_managers_starting_at_once_in_many_processes_all_start(url: str) -> None:
    """20 processes call startup() at once where the catalogue table does not exist yet
    (a new catalogue name each round, as on a fresh database)."""
    context = multiprocessing.get_context("fork")  # the children share this imported code
    barrier = context.Barrier(STARTERS)
    outcomes = context.Queue()
    children = [
        context.Process(target=start_managers, args=(url, barrier, outcomes))
        for _ in range(STARTERS)
    ]
    for child in children:
        child.start()
    found = [outcomes.get(timeout=300) for _ in range(STARTERS * ROUNDS)]
    for child in children:
        child.join(timeout=60)
    assert Counter(found) == Counter({"started": STARTERS * ROUNDS})
    assert [child.exitcode for child in children] == [0] * STARTERS
    for round in range(ROUNDS):
        reader = DatabaseDataManager(url, SCHEMAS, catalogue=f"catalogue_{round}")
        assert reader.get_data_keys() == []
        reader.close()
