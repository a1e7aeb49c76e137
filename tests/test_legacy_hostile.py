"""The legacy import reads only a real table of the original's shape, in bounded work
(issue 21 item 11: a ``results`` VIEW over an endless recursive query ran without end
and filled the disk with sort spill files)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from results_flow import CorruptRecordError, legacy
from results_flow.legacy import check_resultsmanager_store

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = "id, model_type, namespace, data, created_at, updated_at"
ENDLESS = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
    "SELECT 'r' || i AS id, 'M' AS model_type, NULL AS namespace, "
    "'{\"x\": ' || i || '}' AS data, NULL AS created_at, NULL AS updated_at FROM n"
)
#: Run a check of the original in a child whose files may not grow past 20 MB (SQLite's
#: unlinked sort spill files included: a spill beyond it fails with "disk is full").
CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000_000, 20_000_000))
from results_flow.legacy import check_resultsmanager_store
from results_flow.errors import CorruptRecordError
try:
    check_resultsmanager_store(sys.argv[1])
except CorruptRecordError as exc:
    print("named:", exc)
"""


def _original(path: Path, *statements: str) -> Path:
    with sqlite3.connect(path) as db:
        for statement in statements:
            db.execute(statement)
    db.close()
    return path


def _check_in_a_bounded_child(original: Path, tmp_path: Path) -> str:
    spill = tmp_path / "sqlite_tmp"
    spill.mkdir()
    env = {**os.environ, "SQLITE_TMPDIR": str(spill), "PYTHONPATH": str(ROOT)}
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(original)],
            capture_output=True,
            text=True,
            timeout=120,  # a guard for the test run, not a measurement
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the import of a hostile original did not end")
    assert done.returncode == 0, done.stderr[-2000:]
    assert not list(spill.iterdir())
    return done.stdout


@pytest.mark.parametrize("order", ["", " ORDER BY id DESC"], ids=["plain view", "view with a sort"])
def test_a_view_over_an_endless_query_is_refused_at_once(tmp_path: Path, order: str) -> None:
    original = _original(tmp_path / "original.db", f"CREATE VIEW results AS {ENDLESS}{order}")
    out = _check_in_a_bounded_child(original, tmp_path)
    # Refused for what it is, before a row is read: not stopped by the full disk.
    assert out.startswith("named:") and "'results' is view, not a table" in out, out


def test_a_computed_column_is_refused(tmp_path: Path) -> None:
    original = _original(
        tmp_path / "generated.db",
        "CREATE TABLE results (id TEXT PRIMARY KEY, model_type TEXT, namespace TEXT, "
        "created_at TEXT, updated_at TEXT, "
        "data TEXT GENERATED ALWAYS AS (printf('%.*c', 900000000, 'x')) VIRTUAL)",
        "INSERT INTO results (id, model_type) VALUES ('a', 'M')",
    )
    with pytest.raises(CorruptRecordError, match="data missing or computed"):
        check_resultsmanager_store(original)


def test_a_table_of_another_shape_is_refused(tmp_path: Path) -> None:
    original = _original(tmp_path / "other.db", "CREATE TABLE results (id TEXT, data TEXT)")
    with pytest.raises(CorruptRecordError, match="model_type, namespace, created_at"):
        check_resultsmanager_store(original)


def test_the_original_shape_is_read_in_id_order_with_or_without_an_index(tmp_path: Path) -> None:
    for name, key in (("keyed.db", " PRIMARY KEY"), ("plain.db", "")):
        original = _original(
            tmp_path / name,
            f"CREATE TABLE results (id TEXT{key}, model_type TEXT, namespace TEXT, "
            "data TEXT, created_at TEXT, updated_at TEXT)",
            f"INSERT INTO results ({COLUMNS}) VALUES ('b', 'M', NULL, '{{}}', NULL, NULL)",
            f"INSERT INTO results ({COLUMNS}) VALUES ('a', 'M', NULL, '{{}}', NULL, NULL)",
        )
        ids = [result_id for result_id, _ in legacy.read_resultsmanager_store(original)]
        assert sorted(ids) == ["a", "b"]
        if key:
            assert ids == ["a", "b"]


def test_a_read_that_works_too_long_for_one_row_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bound itself, made tiny, on a real SQLite read."""
    original = _original(
        tmp_path / "small.db",
        "CREATE TABLE results (id TEXT PRIMARY KEY, model_type TEXT, namespace TEXT, "
        "data TEXT, created_at TEXT, updated_at TEXT)",
        f"INSERT INTO results ({COLUMNS}) VALUES ('a', 'M', NULL, '{{}}', NULL, NULL)",
    )
    monkeypatch.setattr(legacy, "_STEPS_PER_CALL", 1)
    monkeypatch.setattr(legacy, "LEGACY_SQLITE_STEPS_PER_ROW", 3)
    with pytest.raises(CorruptRecordError, match="more than 3 SQLite steps"):
        check_resultsmanager_store(original)
