"""Issue 23 items 1-2: find results by what made them, and delete many at once, the same
on every backend (memory, file, SQLite, PostgreSQL, S3, the custom store), through both
managers; a SQL table made before the find columns gets them when a store opens it."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from results_flow import AsyncResultsManager, Record, ResultsManager, UnknownModelError
from results_flow.backends.sql.store import SqlBackend
from results_flow.errors import MaintenanceError
from results_flow.query import RecordQuery
from results_flow.settings import INDEX_KEY_MAX_LENGTH
from tests.backends.models import Item, Person

LONG_FLOW = "f" * (INDEX_KEY_MAX_LENGTH + 20)


def made_by(flow: str, task: str, run: str, version: str, **params: object) -> dict[str, object]:
    """Metadata as a results task writes it."""
    return {
        "flow_name": flow,
        "task_name": task,
        "flow_run_id": run,
        "task_run_id": f"{run}-task",
        "parameters": params,
        "version": version,
    }


def fill(manager: ResultsManager) -> None:
    rows = [
        ("daily/score/a", made_by("daily", "score", "run-1", "v1", n=1, city="Oslo")),
        ("daily/score/b", made_by("daily", "score", "run-1", "v1", n=2, city="Rome")),
        ("daily/score/c", made_by("daily", "score", "run-2", "v2", n=3, city="3")),
        ("daily/clean/a", made_by("daily", "clean", "run-2", "v1", n=1, flag=True)),
        ("weekly/score/a", made_by("weekly", "score", "run-3", "v1", n=1.5)),
        (f"{'long'}/x", made_by(LONG_FLOW, "score", "run-4", "7")),
    ]
    for result_id, metadata in rows:
        manager.set(result_id, Item(index=1, writer=result_id), metadata=metadata)
    manager.set("plain/p", Person(name="p", age=1))  # no metadata


def test_find_by_each_filter(manager: ResultsManager) -> None:
    fill(manager)
    assert manager.find(flow="daily") == [
        "daily/clean/a",
        "daily/score/a",
        "daily/score/b",
        "daily/score/c",
    ]
    assert manager.find(task="score", flow="daily") == [
        "daily/score/a",
        "daily/score/b",
        "daily/score/c",
    ]
    assert manager.find(flow_run="run-2") == ["daily/clean/a", "daily/score/c"]
    assert manager.find(version="v2") == ["daily/score/c"]
    assert manager.find(task="score", version="v1") == [
        "daily/score/a",
        "daily/score/b",
        "weekly/score/a",
    ]
    # A parameter matches as text: a number by its JSON, a string as itself.
    assert manager.find(params={"n": 1}) == ["daily/clean/a", "daily/score/a"]
    assert manager.find(params={"n": "1"}) == ["daily/clean/a", "daily/score/a"]
    assert manager.find(params={"n": "1.5"}) == ["weekly/score/a"]
    assert manager.find(params={"city": 3}) == ["daily/score/c"]
    assert manager.find(params={"flag": True}) == ["daily/clean/a"]
    assert manager.find(params={"n": 1, "city": "Oslo"}) == ["daily/score/a"]
    assert manager.find(params={"missing": 1}) == []
    # A value longer than the indexed part is still found exactly.
    assert manager.find(flow=LONG_FLOW) == ["long/x"]
    assert manager.find(flow=LONG_FLOW[:-1]) == []
    assert manager.find(version="7") == ["long/x"]
    # Prefix and filters together; no filter is every ID.
    assert manager.find("daily/score", flow_run="run-1") == ["daily/score/a", "daily/score/b"]
    assert manager.find("daily/score/") == ["daily/score/a", "daily/score/b", "daily/score/c"]
    assert manager.find() == manager.list_ids()
    assert manager.find(flow="nobody") == []


def test_find_by_age(manager: ResultsManager) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=40)
    old = Record(
        "Item",
        "default",
        '{"index": 0}',
        long_ago,
        long_ago,
        made_by("daily", "score", "run-0", "v0"),
    )
    manager.backend.insert("daily/score/old", old)
    fill(manager)
    assert manager.find(older_than=timedelta(days=30)) == ["daily/score/old"]
    assert manager.find(older_than=timedelta(days=30), flow="weekly") == []
    assert manager.find(older_than=timedelta(days=30), task="score") == ["daily/score/old"]
    assert len(manager.find(older_than=timedelta(0))) == 8
    with pytest.raises(MaintenanceError, match="zero or more"):
        manager.find(older_than=timedelta(days=-1))


def test_find_invalid_needs_the_models(manager: ResultsManager) -> None:
    fill(manager)
    manager.backend.upsert(
        "daily/score/b",
        Record(
            "Item",
            "default",
            '{"index": "five"}',
            metadata=made_by("daily", "score", "run-1", "v1"),
        ),
    )
    assert manager.find(invalid=True, flow="daily") == ["daily/score/b"]
    assert manager.find(invalid=True, flow="weekly") == []
    manager.backend.upsert(
        "daily/ghost", Record("Ghost", "default", "{}", metadata=made_by("daily", "g", "r", "v"))
    )
    with pytest.raises(UnknownModelError, match="import the module"):
        manager.find(invalid=True, flow="daily")


def test_find_skips_damaged_records(manager: ResultsManager) -> None:
    fill(manager)
    if isinstance(manager.backend, SqlBackend):  # damaged metadata beside good columns
        with manager.backend.engine.begin() as conn:
            damage = "UPDATE results_flow_records SET metadata = '[' WHERE id = 'daily/score/a'"
            conn.execute(sa.text(damage))
    else:  # a document that cannot be decoded (the memory store keeps any text)
        manager.backend.upsert("daily/score/a", Record("Item", "default", "{not json"))
    assert manager.find(params={"n": 1}) == ["daily/clean/a"]
    assert manager.find(flow="daily", params={"n": 1}) == ["daily/clean/a"]


def test_delete_many_counts_what_was_there(manager: ResultsManager) -> None:
    fill(manager)
    ids = manager.find(flow="daily")
    assert manager.delete_many([*ids, "not/there", ids[0]]) == 4
    assert manager.find(flow="daily") == []
    assert manager.delete_many([]) == 0
    assert manager.list_ids() == ["long/x", "plain/p", "weekly/score/a"]


async def test_async_manager_finds_and_deletes_the_same(store_url: str) -> None:
    sync = ResultsManager.from_url(store_url)
    rm = (
        AsyncResultsManager(backend=sync.backend)
        if store_url == "memory://"
        else AsyncResultsManager.from_url(store_url)
    )
    try:
        fill(sync)
        for filters in (
            {"flow": "daily", "task": "score"},
            {"flow_run": "run-2"},
            {"params": {"n": 1}},
            {"flow": LONG_FLOW},
        ):
            assert await rm.find(**filters) == sync.find(**filters)  # type: ignore[arg-type]
        assert await rm.find("daily", older_than=timedelta(0)) == sync.find("daily")
        assert await rm.delete_many(["daily/score/a", "daily/score/b", "nope"]) == 2
        assert sync.find(flow="daily") == ["daily/clean/a", "daily/score/c"]
    finally:
        await rm.close()
        sync.close()


def test_the_default_find_and_delete_many_agree_with_a_fast_override(
    manager: ResultsManager,
) -> None:
    """Every store's find_ids gives what the ABC's default (list + read + match) gives."""
    from results_flow.backends.base import ResultsBackend

    fill(manager)
    backend = manager.backend
    for query in (
        RecordQuery(flow="daily"),
        RecordQuery(prefix="daily", task="score", version="v1"),
        RecordQuery(params=(("n", "1"),)),
        RecordQuery(flow=LONG_FLOW),
        RecordQuery(updated_before=datetime.now(UTC) + timedelta(seconds=5)),
    ):
        assert backend.find_ids(query) == ResultsBackend.find_ids(backend, query), query


# --- a SQL table made before the find columns ------------------------------------------

OLD_TABLE = """CREATE TABLE results_flow_records (
    id VARCHAR(1024) NOT NULL PRIMARY KEY, model_type VARCHAR(255) NOT NULL,
    namespace VARCHAR(255) NOT NULL, data TEXT NOT NULL, metadata TEXT NOT NULL,
    created_at {time} NOT NULL, updated_at {time} NOT NULL)"""
OLD_ROWS = [
    ("runs/a", json.dumps(made_by("daily", "score", "run-1", "v1", n=1))),
    ("runs/b", json.dumps(made_by("daily", "clean", "run-1", "v1", n=2))),
    ("runs/c", "{}"),
    ("runs/d", "not json"),  # a damaged row stays damaged, and the upgrade goes on
]


def check_old_store_upgraded(url: str) -> None:
    with ResultsManager.from_url(url) as manager:
        assert manager.find(flow_run="run-1") == ["runs/a", "runs/b"]
        assert manager.find(task="clean", params={"n": 2}) == ["runs/b"]
        assert manager.get("runs/a", Item) == Item(index=1)
        manager.set("runs/e", Item(index=2), metadata=made_by("daily", "score", "run-9", "v2"))
        assert manager.find(version="v2") == ["runs/e"]
    with ResultsManager.from_url(url) as again:  # a second open finds the columns there
        assert again.find(flow="daily") == ["runs/a", "runs/b", "runs/e"]


def test_an_old_sqlite_store_gets_the_find_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(OLD_TABLE.format(time="DATETIME"))
        for result_id, metadata in OLD_ROWS:
            conn.execute(
                "INSERT INTO results_flow_records VALUES (?, 'Item', 'default', ?, ?, ?, ?)",
                (
                    result_id,
                    '{"index": 1}',
                    metadata,
                    "2026-01-01 00:00:00.000000",
                    "2026-01-01 00:00:00.000000",
                ),
            )
    check_old_store_upgraded(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        indexes = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
        plan = " ".join(
            str(row)
            for row in conn.execute(
                "EXPLAIN QUERY PLAN SELECT id FROM results_flow_records WHERE flow_run_id = 'run-1'"
            )
        )
    assert {"results_flow_records_by_flow_run", "results_flow_records_by_task"} <= indexes
    assert "results_flow_records_by_flow_run" in plan


def test_an_old_postgres_store_gets_the_find_columns(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text(OLD_TABLE.format(time="TIMESTAMP WITH TIME ZONE")))
        for result_id, metadata in OLD_ROWS:
            conn.execute(
                sa.text(
                    "INSERT INTO results_flow_records VALUES (:id, 'Item', 'default', :data, :meta, now(), now())"
                ),
                {"id": result_id, "data": '{"index": 1}', "meta": metadata},
            )
    check_old_store_upgraded(postgres_url)
    with engine.begin() as conn:
        names = set(
            conn.execute(
                sa.text("SELECT indexname FROM pg_indexes WHERE tablename = 'results_flow_records'")
            ).scalars()
        )
    engine.dispose()
    assert {"results_flow_records_by_flow_run", "results_flow_records_by_flow_task"} <= names


async def test_an_old_sqlite_store_opened_by_the_async_store_first(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(OLD_TABLE.format(time="DATETIME"))
        conn.execute(
            "INSERT INTO results_flow_records VALUES ('runs/a', 'Item', 'default', '{}', ?, "
            "'2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000')",
            (json.dumps(made_by("daily", "score", "run-1", "v1")),),
        )
    rm = AsyncResultsManager.from_url(f"sqlite:///{path}")
    assert await rm.find(flow_run="run-1") == ["runs/a"]
    await rm.close()
    asyncio.get_running_loop()  # the test ran in a loop: the upgrade never blocked it for long
