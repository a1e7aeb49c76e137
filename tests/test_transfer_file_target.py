"""Copies into a file store go on past IDs it cannot hold (issue 21 item 13: a folder
segment ending in ``.json`` stopped ``migrate`` and ``import`` after 10 of 12 records)."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.console import Console

from results_flow import FileBackend, ResultsManager, register_model
from results_flow.cli import app
from results_flow.records import Record
from results_flow.transfer import export_jsonl, import_jsonl, migrate

NAMESPACE = "file_target_test"
#: IDs a SQLite store keeps and a file store cannot: a folder named like a record file.
UNFIT = ["runs/a.json/x", "b.json/c/d"]


@register_model(namespace=NAMESPACE)
class Count(BaseModel):
    n: int


def _source(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'source.db'}"
    with ResultsManager(url) as store:
        register_model(Count, namespace=NAMESPACE)
        for i in range(10):
            store.set(f"runs/r{i}", Count(n=i))
        for result_id in UNFIT:
            store.set(result_id, Count(n=-1))
    return url


def _assert_copied(report: Any, target: Path) -> None:
    assert (report.read, report.written) == (12, 10), report
    assert sorted(refusal.id for refusal in report.refused) == sorted(UNFIT)
    assert all("'.json'" in refusal.reason for refusal in report.refused)
    assert not report.ok
    with ResultsManager(str(target)) as store:
        assert len(store.list_ids()) == 10


def test_file_backend_names_an_id_it_cannot_hold(tmp_path: Path) -> None:
    backend = FileBackend(tmp_path / "files")
    record = Record(model_type="Count", namespace=NAMESPACE, data='{"n":1}')
    assert backend.unfit_reason("runs/a.json/x", record) is not None
    assert backend.unfit_reason("runs/x.json", record) is None  # a record file name is fine
    assert backend.unfit_reason("top", record) is None


def test_migrate_into_a_file_store_copies_the_rest_and_reports(tmp_path: Path) -> None:
    target = tmp_path / "files"
    with ResultsManager(_source(tmp_path)) as source, ResultsManager(str(target)) as dest:
        _assert_copied(migrate(source, dest), target)


def test_import_into_a_file_store_copies_the_rest_and_reports(tmp_path: Path) -> None:
    export = tmp_path / "all.jsonl"
    with ResultsManager(_source(tmp_path)) as source:
        export_jsonl(source, export)
    target = tmp_path / "files"
    with ResultsManager(str(target)) as dest:
        _assert_copied(import_jsonl(dest, export), target)


def test_legacy_import_into_a_file_store_copies_the_rest_and_reports(tmp_path: Path) -> None:
    original = tmp_path / "original.db"
    with sqlite3.connect(original) as db:
        db.execute(
            "CREATE TABLE results (id TEXT PRIMARY KEY, model_type TEXT, namespace TEXT,"
            " data TEXT, created_at TEXT, updated_at TEXT)"
        )
        for result_id in [f"runs/r{i}" for i in range(10)] + UNFIT:
            db.execute(
                "INSERT INTO results VALUES (?, 'Count', ?, ?, ?, ?)",
                (result_id, NAMESPACE, json.dumps({"n": 1}), "2026-01-01", "2026-01-01"),
            )
    from results_flow.legacy import import_resultsmanager

    target = tmp_path / "files"
    with ResultsManager(str(target)) as dest:
        _assert_copied(import_resultsmanager(dest, original), target)


def test_the_cli_migrates_the_rest_and_names_the_refused(tmp_path: Path) -> None:
    out = Console(file=io.StringIO(), width=300)
    err = Console(file=io.StringIO(), width=300)
    target = tmp_path / "files"
    code = app(
        ["migrate", "--to", str(target), "--store", _source(tmp_path)],
        console=out,
        error_console=err,
        result_action="return_value",
    )
    text = out.file.getvalue() + err.file.getvalue()  # type: ignore[attr-defined]
    assert code == 1, text
    assert "copied 10 result(s)" in text and "2 result(s) not copied" in text, text
    assert all(result_id in text for result_id in UNFIT), text
