"""Batch reads on the row runners: several statements per call, damaged rows, SQLite times."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from results_flow.backends.sql import store as sql
from results_flow.backends.sql.store import SqlBackend
from results_flow.errors import CorruptRecordError
from results_flow.records import Record, parse_time

from .conftest import url_for


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlBackend]:
    store = SqlBackend.from_url(url_for(request.param, tmp_path, request))
    store.clear()
    yield store
    store.close()


def record(n: int) -> Record:
    return Record(model_type="Point", namespace="default", data=f'{{"n":{n}}}')


def test_batches_of_several_statements_read_every_row(
    backend: SqlBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards the chunking of read_many/exists_many (3 IDs per statement, 10 IDs asked)."""
    for n in range(7):
        backend.insert(f"b/{n}", record(n))
    monkeypatch.setattr(sql, "SQL_IDS_PER_STATEMENT", 3)
    asked = [f"b/{n}" for n in range(10)] + ["b/1"]
    found = backend.read_many(asked)
    assert sorted(found) == [f"b/{n}" for n in range(7)]
    assert found["b/4"].data == '{"n":4}'
    assert found["b/4"].created_at.tzinfo is UTC
    assert backend.exists_many(asked) == set(found)
    assert backend.read_many([]) == {}
    assert backend.exists_many([]) == set()


def test_batches_carry_ids_with_any_allowed_character(backend: SqlBackend) -> None:
    """Guards the one-parameter batch (IDs one per line on PostgreSQL, JSON on SQLite):
    separators, quotes, braces and SQL words inside IDs are only text."""
    odd = ["b/with space", "b/{x,y}", 'b/"q"', "b/it's", "b/NULL", "b/é,ü", "b/E'x'"]
    for n, result_id in enumerate(odd):
        backend.insert(result_id, record(n))
    asked = [*odd, "b/with", "b/x", "b/NULL ", "b/{x"]
    assert sorted(backend.read_many(asked)) == sorted(odd)
    assert backend.exists_many(asked) == set(odd)


def test_a_damaged_time_in_a_batch_names_the_id(tmp_path: Path) -> None:
    store = SqlBackend.from_url(f"sqlite:///{tmp_path / 'r.db'}")
    store.insert("ok", record(1))
    store.insert("bad", record(2))
    with sqlite3.connect(tmp_path / "r.db") as conn:
        conn.execute("UPDATE results_flow_records SET updated_at = 'yesterday' WHERE id = 'bad'")
    with pytest.raises(CorruptRecordError, match="'bad'"):
        store.read_many(["ok", "bad"])
    store.close()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-03 19:42:47.123456", datetime(2026, 12, 3, 19, 42, 47, 123456, UTC)),
        ("2026-12-03 19:42:47", datetime(2026, 12, 3, 19, 42, 47, tzinfo=UTC)),
        ("2026-12-03", datetime(2026, 12, 3, tzinfo=UTC)),
        ("2026-12-03T21:42:47+02:00", datetime(2026, 12, 3, 19, 42, 47, tzinfo=UTC)),
        ("2026-12-03T19:42:47Z", datetime(2026, 12, 3, 19, 42, 47, tzinfo=UTC)),
    ],
)
def test_parse_time_gives_utc(text: str, expected: datetime) -> None:
    """Guards the fast path for naive SQLite times (reparsed with an offset)."""
    moment = parse_time(text)
    assert moment == expected
    assert moment.tzinfo is UTC
