"""A record nested thousands of levels deep is a damaged record, never a bare
``RecursionError`` (issue 21 item 5): ``get`` names it, ``get_many`` handles it by
``on_invalid`` (so ``results_map`` goes on), on the sync and async managers and every
backend that parses stored text, and every CLI command goes on or stops with one line.
Records are planted the way a broken or hostile writer would: straight into the file,
the row or the object."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import BaseModel
from rich.console import Console

from results_flow import (
    AsyncResultsManager,
    CorruptRecordError,
    InvalidResultsError,
    ResultsFlowError,
    ResultsManager,
    ResultValidationError,
    register_model,
)
from results_flow.cli import app
from results_flow.legacy import check_resultsmanager_store
from tests.backends.conftest import url_for
from tests.s3_server import S3Server

NAMESPACE = "deep_records_test"
DEPTH = 5_000
#: About 10 KB: small enough for any store, deep enough for any recursive parser.
DEEP = "[" * DEPTH + "]" * DEPTH


@register_model(namespace=NAMESPACE)
class Leaf(BaseModel):
    x: int


def _document(data: str, metadata: str = "{}") -> str:
    return (
        '{"format": "results_flow/1", "model_type": "Leaf", "namespace": "' + NAMESPACE + '", '
        '"created_at": "2026-01-01T00:00:00+00:00", "updated_at": "2026-01-01T00:00:00+00:00", '
        f'"metadata": {metadata}, "data": {data}}}'
    )


def _plant(kind: str, url: str, part: str, request: pytest.FixtureRequest) -> None:
    """Replace the stored ``deep/one`` with one whose ``part`` (data or metadata) is DEEP."""
    with ResultsManager.from_url(url) as store:
        backend: Any = store.backend
        if kind == "file":
            document = _document(DEEP) if part == "data" else _document("{}", '{"m": ' + DEEP + "}")
            Path(backend._file_of("deep/one")).write_text(document)
        elif kind == "s3":
            s3: S3Server = request.getfixturevalue("s3_server")
            body = _document(DEEP) if part == "data" else _document("{}", '{"m": ' + DEEP + "}")
            key = f"{backend.prefix}/{backend.key_for('deep/one')}"
            s3.client().put_object(Bucket=s3.bucket, Key=key, Body=body.encode())
        else:
            value = DEEP if part == "data" else '{"m": ' + DEEP + "}"
            engine = sa.create_engine(backend.database_url)
            with engine.begin() as conn:
                conn.execute(
                    backend.table.update()
                    .where(backend.table.c.id == "deep/one")
                    .values({part: value})
                )
            engine.dispose()


#: Where a deep part is parsed when read: every store that keeps text (memory keeps objects).
PLANTS = [
    ("file", "data"),
    ("file", "metadata"),
    ("sqlite", "metadata"),
    ("postgres", "metadata"),
    ("s3", "data"),
]


@pytest.fixture(params=PLANTS, ids=["-".join(plant) for plant in PLANTS])
def planted(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    kind, part = request.param
    url = url_for(kind, tmp_path, request)
    with ResultsManager.from_url(url) as store:
        store.set("deep/ok", Leaf(x=1))
        store.set("deep/one", Leaf(x=2))
    _plant(kind, url, part, request)
    return url


def _get_reads_it(url: str) -> bool:
    """Whether ``get`` reads the planted part: a SQL row's metadata is a column of its
    own, which ``get`` (reading only the type tag, namespace and data) never parses."""
    return not url.startswith(("sqlite", "postgresql"))


def test_get_names_the_damaged_record(planted: str) -> None:
    with ResultsManager.from_url(planted) as store:
        if _get_reads_it(planted):
            with pytest.raises(CorruptRecordError, match="deep/one|deep.one"):
                store.get("deep/one")
        else:
            assert store.get("deep/one") == Leaf(x=2)
        with pytest.raises(CorruptRecordError, match="deep/one|deep.one"):
            store.record("deep/one")


def test_get_many_takes_it_by_on_invalid(planted: str) -> None:
    with ResultsManager.from_url(planted) as store:
        assert store.get_many(["deep/ok", "deep/one"], on_invalid="skip") == {"deep/ok": Leaf(x=1)}
        with pytest.raises(InvalidResultsError) as raised:
            store.get_many(["deep/ok", "deep/one"])
        assert set(raised.value.invalid) == {"deep/one"}


def test_the_async_manager_does_the_same(planted: str) -> None:
    async def main() -> None:
        async with AsyncResultsManager.from_url(planted) as store:
            if _get_reads_it(planted):
                with pytest.raises(CorruptRecordError):
                    await store.get("deep/one")
            else:
                assert await store.get("deep/one") == Leaf(x=2)
            with pytest.raises(CorruptRecordError):
                await store.record("deep/one")
            found = await store.get_many(["deep/ok", "deep/one"], on_invalid="skip")
            assert found == {"deep/ok": Leaf(x=1)}

    asyncio.run(main())


def _cli(*tokens: str) -> tuple[int, str]:
    out = Console(file=io.StringIO(), width=300)
    err = Console(file=io.StringIO(), width=300)
    code: Any = app(list(tokens), console=out, error_console=err, result_action="return_value")
    return int(code or 0), err.file.getvalue()  # type: ignore[attr-defined]


@pytest.mark.parametrize("part", ["data", "metadata"])
@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_every_command_goes_on_or_stops_with_one_line(
    kind: str, part: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = url_for(kind, tmp_path, request)
    with ResultsManager.from_url(url) as store:
        store.set("deep/ok", Leaf(x=1))
        store.set("deep/one", Leaf(x=2))
    _plant(kind, url, part, request)
    for command in (
        ["ls", "-l"],
        ["show", "deep/one"],
        ["verify"],
        ["stats"],
        ["export", str(tmp_path / "out.jsonl")],
        ["migrate", "--to", str(tmp_path / "copy")],
        ["gc", "--older-than", "1d", "--yes"],
    ):
        code, errors = _cli(*command, "--store", url)  # a RecursionError would raise here
        assert code in (0, 1), (command, errors)
        assert "Traceback" not in errors and len(errors.splitlines()) <= 2, (command, errors)


def test_metadata_too_deep_to_read_back_is_refused_when_written(tmp_path: Path) -> None:
    deep: Any = {}
    for _ in range(300):  # deeper than any reader takes, shallower than json.dumps fails
        deep = {"m": deep}
    with ResultsManager(tmp_path / "store") as store:
        with pytest.raises(ResultValidationError, match="metadata"):
            store.set("deep/meta", Leaf(x=1), metadata=deep)
        assert not store.exists("deep/meta")


def test_the_legacy_import_names_a_deep_original(tmp_path: Path) -> None:
    folder = tmp_path / "legacy_files"
    folder.mkdir()
    (folder / "one.json").write_text('{"model_type": "Leaf", "data": {"x": ' + DEEP + "}}")
    with pytest.raises(CorruptRecordError, match="one.json"):
        check_resultsmanager_store(folder)
    database = tmp_path / "legacy.db"
    with sqlite3.connect(database) as db:
        db.execute(
            "CREATE TABLE results (id TEXT PRIMARY KEY, model_type TEXT, namespace TEXT,"
            " data TEXT, created_at TEXT, updated_at TEXT)"
        )
        db.execute(
            "INSERT INTO results VALUES ('one', 'Leaf', NULL, ?, NULL, NULL)",
            ('{"x": ' + DEEP + "}",),
        )
    with pytest.raises(CorruptRecordError, match="one"):
        check_resultsmanager_store(database)
    big = "9" * 5_000  # over Python's 4,300-digit limit for int()
    (folder / "one.json").write_text('{"model_type": "Leaf", "data": {"x": ' + big + "}}")
    with pytest.raises(ResultsFlowError):
        check_resultsmanager_store(folder)


def test_an_export_line_nested_deep_is_a_named_error(tmp_path: Path) -> None:
    line = json.loads(_document("{}"))
    line["id"] = "deep/one"
    text = json.dumps(line)[:-1] + ', "more": ' + DEEP + "}\n"
    source = tmp_path / "deep.jsonl"
    source.write_text(text)
    code, errors = _cli("import", str(source), "--store", str(tmp_path / "target"))
    assert code == 1 and "line 1" in errors, errors


def test_a_write_over_a_deep_row_is_a_conflict_not_a_crash(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'results.db'}"
    with ResultsManager.from_url(url) as store:
        store.set("deep/one", Leaf(x=2))
    _plant("sqlite", url, "data", None)  # type: ignore[arg-type]
    with ResultsManager.from_url(url) as store:
        with pytest.raises(ResultsFlowError, match="deep/one"):
            store.set("deep/one", Leaf(x=2), behavior="raise_if_different")
        assert store.set("deep/one", Leaf(x=3), behavior="overwrite")
        assert store.get("deep/one") == Leaf(x=3)
