"""Moving in from the original ResultsManager (issue 13 item 12): its file store and its
SQLite store, written here in the original's formats, imported with IDs, type names,
namespaces, data and times kept, from Python and from ``results-flow import``."""

from __future__ import annotations

import io
import json
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import BaseModel
from rich.console import Console

from results_flow import ResultsManager, register_model
from results_flow.cli import app
from results_flow.errors import CorruptRecordError, InvalidResultIdError, StoreUnavailableError
from results_flow.legacy import check_resultsmanager_store, import_resultsmanager

NAMESPACE = "legacy_test"
WHEN = datetime(2023, 4, 5, 6, 7, 8, tzinfo=UTC)


@register_model(namespace=NAMESPACE)
class Person(BaseModel):
    name: str
    age: int


@pytest.fixture(autouse=True)
def _registered() -> None:
    register_model(Person, namespace=NAMESPACE)


RESULTS = {
    "people/john": ("Person", NAMESPACE, {"name": "John", "age": 30}),
    "people/jane": ("Person", NAMESPACE, {"name": "Jane", "age": 28}),
    "teams/engineering": ("Team", "default", {"name": "Eng", "members": [{"name": "J"}]}),
}


def original_file_store(root: Path) -> Path:
    """A folder as the original FileBackend left it: ``<id>.json`` per result."""
    for result_id, (model_type, namespace, data) in RESULTS.items():
        path = root / f"{result_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"model_type": model_type, "namespace": namespace, "data": data}
        path.write_text(json.dumps(doc, indent=2))
        os.utime(path, (WHEN.timestamp(), WHEN.timestamp()))
    return root


def original_sqlite_store(path: Path) -> Path:
    """A database as the original SqliteBackend left it: one ``results`` table."""
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE results (id TEXT PRIMARY KEY, model_type TEXT, namespace TEXT, "
            "data TEXT, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, "
            "updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)"
        )
        for i, (result_id, (model_type, namespace, data)) in enumerate(RESULTS.items()):
            conn.execute(
                "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?)",
                (
                    result_id,
                    model_type,
                    namespace,
                    json.dumps(data),
                    "2023-04-05 06:07:08",  # CURRENT_TIMESTAMP's form, UTC
                    f"2023-04-0{6 + i}T10:00:00.250000",
                ),
            )
    conn.close()
    return path


def run(*tokens: str) -> tuple[int, str, str]:
    out, err = Console(file=io.StringIO(), width=300), Console(file=io.StringIO(), width=300)
    try:
        code = app(list(tokens), console=out, error_console=err, result_action="return_value")
    except SystemExit as exc:
        code = exc.code
    return int(code or 0), out.file.getvalue(), err.file.getvalue()  # type: ignore[attr-defined]


def test_the_original_file_store_imports_with_ids_types_namespaces_data_and_times(
    tmp_path: Path,
) -> None:
    source = original_file_store(tmp_path / "original")
    with ResultsManager.from_url(f"sqlite:///{tmp_path / 'new.db'}") as store:
        report = import_resultsmanager(store, source)
        assert (report.read, report.written, report.skipped, report.ok) == (3, 3, 0, True)
        assert store.list_ids() == sorted(RESULTS)
        for result_id, (model_type, namespace, data) in RESULTS.items():
            record = store.record(result_id)
            assert (record.model_type, record.namespace) == (model_type, namespace)
            assert json.loads(record.data) == data
            assert record.created_at == record.updated_at == WHEN
        assert store.get("people/john") == Person(name="John", age=30)
        again = import_resultsmanager(store, source)
        assert (again.written, again.skipped) == (0, 3)


def test_the_original_sqlite_store_imports_with_its_times(tmp_path: Path) -> None:
    source = original_sqlite_store(tmp_path / "original.db")
    before = source.read_bytes()
    with ResultsManager(tmp_path / "new") as store:
        report = import_resultsmanager(store, source)
        assert (report.read, report.written) == (3, 3)
        assert store.get("people/jane") == Person(name="Jane", age=28)
        team = store.record("teams/engineering")
        assert (team.model_type, team.namespace) == ("Team", "default")
        assert team.created_at == WHEN
        assert team.updated_at == datetime(2023, 4, 8, 10, 0, 0, 250000, tzinfo=UTC)
    assert source.read_bytes() == before  # read only, never changed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "original.db"]


@pytest.mark.parametrize(
    ("content", "error", "said"),
    [
        ("{not json", CorruptRecordError, "bad.json is not a ResultsManager result"),
        ('{"namespace": "x", "data": {}}', CorruptRecordError, 'no "model_type"'),
        ('{"model_type": "X", "data": [1]}', CorruptRecordError, '"data" is not a JSON object'),
        ('{"model_type": "X", "data": {"v": NaN}}', CorruptRecordError, "NaN"),
    ],
)
def test_a_bad_file_is_named_before_anything_is_stored(
    tmp_path: Path, content: str, error: type[Exception], said: str
) -> None:
    source = original_file_store(tmp_path / "original")
    (source / "bad.json").write_text(content)
    with pytest.raises(error, match=said) as caught:
        check_resultsmanager_store(source)
    assert str(source / "bad.json") in str(caught.value)


def test_a_bad_id_or_store_is_named(tmp_path: Path) -> None:
    db = original_sqlite_store(tmp_path / "original.db")
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO results (id, model_type, namespace, data) VALUES "
            "('a//b', 'X', 'default', '{}')"
        )
    conn.close()
    with pytest.raises(InvalidResultIdError, match="original.db row id='a//b'"):
        check_resultsmanager_store(db)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(StoreUnavailableError, match="notes.txt is neither a folder nor"):
        check_resultsmanager_store(tmp_path / "notes.txt")
    with pytest.raises(StoreUnavailableError, match="not found"):
        check_resultsmanager_store(tmp_path / "missing")
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(CorruptRecordError, match="not a ResultsManager SQLite store"):
        check_resultsmanager_store(other)


@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_the_command_imports_either_format_and_reports(tmp_path: Path, kind: str) -> None:
    if kind == "file":
        source = original_file_store(tmp_path / "original")
    else:
        source = original_sqlite_store(tmp_path / "original.db")
    url = f"sqlite:///{tmp_path / 'new.db'}"
    code, out, err = run("import", "--from-resultsmanager", str(source), "--store", url)
    assert (code, err) == (0, "")
    assert out.startswith(f"imported 3 result(s) from {source} to ")
    code, out, _ = run("import", "--from-resultsmanager", str(source), "--store", url, "--json")
    assert code == 0 and json.loads(out)["skipped"] == 3
    code, _, err = run(
        "import",
        "--from-resultsmanager",
        str(source),
        "--store",
        url,
        "--on-conflict",
        "raise-if-exists",
    )
    assert code == 1 and "--on-conflict overwrite" in err
    with ResultsManager.from_url(url) as store:
        assert store.get("people/john", Person) == Person(name="John", age=30)


def test_the_command_stores_nothing_from_a_bad_original_and_wants_one_source(
    tmp_path: Path,
) -> None:
    source = original_file_store(tmp_path / "original")
    (source / "people" / "bad.json").write_text('{"data": {}}')
    target = tmp_path / "new.db"
    code, _, err = run(
        "import", "--from-resultsmanager", str(source), "--store", f"sqlite:///{target}"
    )
    assert (code, err.count("\n")) == (1, 1)
    assert "bad.json" in err and not target.exists()
    code, _, err = run("import", "x.jsonl", "--from-resultsmanager", str(source))
    assert code == 2 and "one of them" in err
    code, _, err = run("import")
    assert code == 2
