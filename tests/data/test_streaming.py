"""Streaming ETL into DatabaseDataManager (issue 12 item 4): CSV files larger than one
chunk load with the same rows and the same messages as the in-memory pipeline, and
keys and foreign keys are checked across chunk borders, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import BaseModel

from results_flow.data import (
    DatabaseDataManager,
    File,
    FileSchema,
    ForeignKey,
    Severity,
    SimpleETLFactory,
    schema,
)
from results_flow.data.database import _StreamedDataSource

CHUNK = 50
KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


class Client(BaseModel):
    id: int
    name: str
    email: str | None = None


class Purchase(BaseModel):
    id: int
    client_id: int
    amount: float
    at: datetime | None = None


def schemas() -> list[FileSchema]:
    return [
        # purchases first: streaming must still read the referenced clients before them
        schema(
            "purchases",
            Purchase,
            primary_key="id",
            foreign_keys=[ForeignKey("client_id", "clients", "id")],
        ),
        schema("clients", Client, primary_key="id", unique=["email"]),
    ]


@pytest.fixture(params=KINDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'datasets.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def manager(url: str) -> Iterator[DatabaseDataManager]:
    made = DatabaseDataManager(url, schemas(), chunk_rows=CHUNK)
    made.startup()
    yield made
    made.close()


def write(folder: Path, clients: list[str], purchases: list[str]) -> list[File]:
    (folder / "clients.csv").write_text("id,name,email\n" + "\n".join(clients) + "\n")
    (folder / "purchases.csv").write_text("id,client_id,amount,at\n" + "\n".join(purchases) + "\n")
    return [File.from_path(folder / "purchases.csv"), File.from_path(folder / "clients.csv")]


def clean(clients: int = 230, purchases: int = 170) -> tuple[list[str], list[str]]:
    client_rows = [
        f"{i},client {i},{'' if i % 3 else f'c{i}@x.org'}" for i in range(1, clients + 1)
    ]
    purchase_rows = [
        # the last clients are in the last chunk of clients.csv
        f"{i},{clients - i % 40},{i * 1.5},{'' if i % 4 else '2024-01-02T03:04:05'}"
        for i in range(1, purchases + 1)
    ]
    return client_rows, purchase_rows


def count(manager: DatabaseDataManager, dataset: str, table: str) -> int:
    sql = manager.table_name(dataset, table)
    with manager.engine.connect() as conn:
        return int(conn.execute(sa.text(f'SELECT count(*) FROM "{sql}"')).scalar_one())


def in_memory_messages(files: list[File], **options: object) -> list[str]:
    result = SimpleETLFactory(schemas(), **options).build_pipeline(files, "mem").run()  # type: ignore[arg-type]
    return sorted(str(m) for m in result.validation_result.messages)


def test_files_of_several_chunks_load_every_row(
    manager: DatabaseDataManager, tmp_path: Path
) -> None:
    files = write(tmp_path, *clean())

    result = manager.etl_data(files, "big")

    assert result.succeeded, result.validation_result.messages
    assert count(manager, "big", "clients") == 230
    assert count(manager, "big", "purchases") == 170
    assert isinstance(result.data_source, _StreamedDataSource)  # streamed, not in memory
    assert len(result.data_source.tables["clients"]) == 230  # read back when used
    assert result.data_source.rows("purchases")[0] == Purchase(
        id=1, client_id=229, amount=1.5, at=None
    )
    # the empty-cell counts cover the whole file, not one chunk
    assert sorted(str(m) for m in result.validation_result.messages) == in_memory_messages(files)


def test_duplicates_across_chunk_borders_fail_with_the_in_memory_messages(
    manager: DatabaseDataManager, tmp_path: Path
) -> None:
    clients, purchases = clean()
    clients[120] = "10,again,"  # row 121 repeats the key of row 10, two chunks later
    clients[200] = "201,dup mail,c3@x.org"  # unique email of row 3, four chunks later
    files = write(tmp_path, clients, purchases)

    result = manager.etl_data(files, "dups")

    assert not result.succeeded
    texts = sorted(str(m) for m in result.validation_result.messages)
    assert texts == in_memory_messages(files)
    assert any("row 121: primary key 'id' = 10 repeats row 10" in t for t in texts)
    assert any("row 201: unique 'email' = 'c3@x.org' repeats row 3" in t for t in texts)
    assert not manager.has_data("dups")  # the chunks inserted before are rolled back
    with manager.engine.connect() as conn:
        assert not [t for t in sa.inspect(conn).get_table_names() if "dups" in t]


def test_foreign_keys_are_checked_against_every_chunk(
    manager: DatabaseDataManager, tmp_path: Path
) -> None:
    clients, purchases = clean()
    purchases[150] = "151,999,1.0,"  # no client 999
    purchases[20] = "21,230,2.0,"  # the very last client: found across the chunk border
    files = write(tmp_path, clients, purchases)

    result = manager.etl_data(files, "fks")

    assert not result.succeeded
    texts = sorted(str(m) for m in result.validation_result.messages)
    assert texts == in_memory_messages(files)
    failing = [m for m in result.validation_result.messages if m.code == "foreign_key_violation"]
    assert [(m.table, m.column, m.row) for m in failing] == [("purchases", "client_id", 151)]


def test_going_on_past_errors_loads_the_valid_rows_of_every_chunk(url: str, tmp_path: Path) -> None:
    clients, purchases = clean()
    clients[120] = "10,again,"
    purchases[150] = "151,999,1.0,"
    purchases[99] = "100,1,not a number,"
    files = write(tmp_path, clients, purchases)
    factory = SimpleETLFactory(schemas(), fail_on=_critical())
    manager = DatabaseDataManager(url, schemas(), etl_factory=factory, chunk_rows=CHUNK)
    try:
        result = manager.etl_data(files, "partial")
        assert result.succeeded
        assert count(manager, "partial", "clients") == 229
        assert count(manager, "partial", "purchases") == 168
        texts = sorted(str(m) for m in result.validation_result.messages)
        assert texts == in_memory_messages(files, fail_on=_critical())
    finally:
        manager.close()


def _critical() -> Severity:
    return Severity.CRITICAL


@pytest.mark.usefixtures("prefect_harness")
def test_etl_flow_stage_records_stay_small_and_a_rerun_skips(
    manager: DatabaseDataManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from results_flow import ResultsManager
    from results_flow.data import flow

    monkeypatch.setattr(flow, "STAGE_CHUNK_ROWS", CHUNK)
    store = ResultsManager(f"sqlite:///{tmp_path / 'stages.db'}")
    files = write(tmp_path, *clean())

    result = flow.etl_flow(manager, files, "flowed", store=store)

    assert result.succeeded, result.validation_result.summary()
    assert count(manager, "flowed", "clients") == 230
    assert count(manager, "flowed", "purchases") == 170
    stages = store.list_ids("etl/flowed")
    assert [s.rsplit("/", 1)[1] for s in stages] == ["extract", "load", "transform", "validate"]
    for stage_id in stages:
        # a row count and chunk IDs, not 400 rows: well under the ~20 kB the rows take
        assert len(store.record(stage_id).to_document()) < 6_000, stage_id
    staged = store.get(stages[3], flow.StagedTables)
    assert {t.name: (t.rows, len(t.chunks)) for t in staged.tables} == {
        "clients": (230, 5),
        "purchases": (170, 4),
    }
    assert len(store.get(staged.tables[0].chunks[0], flow.RowChunk).rows) == CHUNK

    again = flow.etl_flow(manager, files, "flowed", store=store)
    assert again.succeeded and store.list_ids("etl/flowed") == stages

    clients, purchases = clean()
    clients[120] = "10,again,"
    purchases[150] = "151,999,1.0,"
    bad = write(tmp_path, clients, purchases)
    failed = flow.etl_flow(manager, bad, "flowed2", store=store, raise_on_failure=False)
    assert not failed.succeeded
    assert sorted(str(m) for m in failed.validation_result.messages) == in_memory_messages(bad)
    store.close()


def test_rows_after_a_skipped_malformed_row_keep_their_file_numbers(
    manager: DatabaseDataManager, tmp_path: Path
) -> None:
    clients, purchases = clean()
    clients[70] = "71,too,many,cells"  # row 71, in the second chunk, skipped
    clients[129] = "10,again,"  # row 130 repeats row 10
    files = write(tmp_path, clients, purchases)

    result = manager.etl_data(files, "skips")

    texts = sorted(str(m) for m in result.validation_result.messages)
    assert texts == in_memory_messages(files)
    assert any("row 130: primary key 'id' = 10 repeats row 10" in t for t in texts)
    assert any("row 71 (line 72)" in t for t in texts)


@pytest.mark.usefixtures("prefect_harness")
def test_etl_flow_stages_stream_chunk_by_chunk_into_the_database(
    manager: DatabaseDataManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each stage reads and writes one chunk record at a time: no record and no table the
    flow builds holds more than a chunk of rows, and the dataset stays in the database."""
    from results_flow import ResultsManager
    from results_flow.data import flow

    monkeypatch.setattr(flow, "STAGE_CHUNK_ROWS", CHUNK)
    largest: list[int] = []
    inserted = DatabaseDataManager.add_table_chunks

    def watched(self: DatabaseDataManager, name: str, chunks, **options):  # type: ignore[no-untyped-def]
        def seen():  # type: ignore[no-untyped-def]
            for chunk in chunks:
                largest.append(len(chunk))
                yield chunk

        return inserted(self, name, seen(), **options)

    monkeypatch.setattr(DatabaseDataManager, "add_table_chunks", watched)
    store = ResultsManager(f"sqlite:///{tmp_path / 'stages.db'}")
    files = write(tmp_path, *clean())

    result = flow.etl_flow(manager, files, "chunked", store=store)

    assert result.succeeded, result.validation_result.summary()
    assert sorted(largest) and max(largest) <= CHUNK and sum(largest) == 400
    assert isinstance(result.data_source, _StreamedDataSource)  # loaded by the database
    assert result.data_source._loaded is None  # and not read back into memory
    assert count(manager, "chunked", "clients") == 230
    for chunk_id in store.list_ids("etl-rows/chunked"):
        assert len(store.get(chunk_id, flow.RowChunk).rows) <= CHUNK
    # the stage records carry the Prefect layer's ID recipe: a 32-digit run key
    run_key = flow.run_key(files, manager.etl_factory.build_pipeline(files, "chunked"))
    assert len(run_key) == 32
    assert store.list_ids("etl/chunked") == [
        f"etl/chunked/{run_key}/{stage}" for stage in ("extract", "load", "transform", "validate")
    ]
    store.close()


@pytest.mark.usefixtures("prefect_harness")
def test_etl_flow_streamed_validation_gives_the_in_memory_messages(
    manager: DatabaseDataManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from results_flow import ResultsManager
    from results_flow.data import flow

    monkeypatch.setattr(flow, "STAGE_CHUNK_ROWS", CHUNK)
    clients, purchases = clean()
    clients[70] = "71,too,many,cells"  # a skipped row: later rows keep their file numbers
    clients[129] = "10,again,"  # repeats row 10, two chunks earlier
    purchases[150] = "151,999,1.0,"  # no client 999
    files = write(tmp_path, clients, purchases)
    store = ResultsManager(f"sqlite:///{tmp_path / 'stages.db'}")

    failed = flow.etl_flow(manager, files, "bad", store=store, raise_on_failure=False)

    assert not failed.succeeded
    texts = sorted(str(m) for m in failed.validation_result.messages)
    assert texts == in_memory_messages(files)
    assert any("row 130: primary key 'id' = 10 repeats row 10" in t for t in texts)
    assert not manager.has_data("bad")
    store.close()
