"""results_flow.maintenance on real stores: memory, files and SQLite (PostgreSQL in test_cli)."""

from __future__ import annotations

import io
import json
import os
import re
import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel

from results_flow import (
    CorruptRecordError,
    FileBackend,
    InvalidResultIdError,
    MemoryBackend,
    Record,
    ResultConflictError,
    ResultNotFoundError,
    ResultsBackend,
    ResultsManager,
    SetBehavior,
    SqliteBackend,
    StoreError,
    StoreUnavailableError,
    register_model,
)
from results_flow import cleanup as cl
from results_flow import maintenance as mt
from results_flow import transfer as tr
from results_flow.codec import encode
from results_flow.errors import MaintenanceError, ModelModuleImportError, ResultValidationError

NAMESPACE = "maintenance_test"


@register_model(namespace=NAMESPACE)
class Sample(BaseModel):
    name: str
    score: float


@pytest.fixture(autouse=True)
def _registered() -> None:
    """Keep the test model registered even if another test cleared the registry."""
    register_model(Sample, namespace=NAMESPACE)


class MinimalBackend(ResultsBackend):
    """A custom backend with only the abstract methods: maintenance needs nothing more."""

    def __init__(self) -> None:
        self.location = "minimal://"
        self.records: dict[str, Record] = {}

    def read(self, result_id: str) -> Record | None:
        return self.records.get(result_id)

    def insert(self, result_id: str, record: Record) -> Record | None:
        existing = self.records.get(result_id)
        if existing is None:
            self.records[result_id] = record
        return existing

    def upsert(self, result_id: str, record: Record) -> None:
        previous = self.records.get(result_id)
        self.records[result_id] = record if previous is None else record.replacing(previous)

    def delete(self, result_id: str) -> bool:
        return self.records.pop(result_id, None) is not None

    def list_ids(self, prefix: str | None = None) -> list[str]:
        return sorted(
            i for i in self.records if prefix is None or i == prefix or i.startswith(prefix + "/")
        )


@pytest.fixture(params=["memory", "file", "sqlite", "custom"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ResultsManager]:
    backends: dict[str, ResultsBackend] = {
        "custom": MinimalBackend(),
        "memory": MemoryBackend("maintenance"),
        "file": FileBackend(tmp_path / "files"),
        "sqlite": SqliteBackend(tmp_path / "results.db"),
    }
    with ResultsManager(backend=backends[request.param]) as manager:
        yield manager


def fill(store: ResultsManager, count: int = 5) -> None:
    for i in range(count):
        group = "a" if i % 2 else "b"
        store.set(f"{group}/x/{i}", Sample(name=f"s{i}", score=i / 2), metadata={"run": i})


def stamped(days_ago: float, data: str = '{"name": "old", "score": 1.0}') -> Record:
    moment = datetime.now(UTC) - timedelta(days=days_ago)
    return Record(
        "Sample", NAMESPACE, data, created_at=moment, updated_at=moment, metadata={"k": 1}
    )


def as_tuple(record: Record) -> tuple[object, ...]:
    """A record's content with data compared as JSON (backends may space it differently)."""
    return (
        record.model_type,
        record.namespace,
        json.loads(record.data),
        record.created_at,
        record.updated_at,
        record.metadata,
    )


class Counter:
    """A ProgressSink that remembers what it was told."""

    def __init__(self) -> None:
        self.total: int | None = -1
        self.done = 0

    def start(self, total: int | None) -> None:
        self.total = total

    def advance(self, count: int) -> None:
        self.done += count


def test_scan_reads_in_batches_in_id_order(store: ResultsManager) -> None:
    fill(store, 5)
    sink = Counter()
    ids = [rid for rid, _ in mt.scan(store, batch_size=2, progress=sink)]
    assert ids == sorted(ids)
    assert len(ids) == 5
    assert (sink.total, sink.done) == (5, 5)
    assert [rid for rid, _ in mt.iter_records(store.backend, "a")] == ["a/x/1", "a/x/3"]


def test_stats_groups_by_prefix_model_and_namespace(store: ResultsManager) -> None:
    fill(store, 5)
    report = mt.stats(store, depth=2)
    assert report.count == 5
    assert report.corrupt == 0
    assert {k: g.count for k, g in report.by_prefix.items()} == {"a/x": 2, "b/x": 3}
    assert report.by_model[f"{NAMESPACE}:Sample"].count == 5
    assert report.by_namespace[NAMESPACE].size == report.size > 0
    assert report.oldest_update is not None and report.oldest_update <= report.newest_update  # type: ignore[operator]
    with pytest.raises(MaintenanceError):
        mt.stats(store, depth=0)


def test_verify_passes_registered_valid_records(store: ResultsManager) -> None:
    fill(store, 3)
    report = mt.verify(store)
    assert report.ok
    assert (report.checked, report.valid, report.orphans) == (3, 3, [])


def test_verify_names_invalid_and_unknown_records(store: ResultsManager) -> None:
    fill(store, 2)
    store.backend.insert("bad/score", stamped(0, '{"name": "x", "score": "high"}'))
    store.backend.insert("bad/ghost", Record("Ghost", NAMESPACE, "{}"))
    report = mt.verify(store)
    kinds = {f.id: f.kind for f in report.failures}
    assert kinds == {"bad/score": "invalid", "bad/ghost": "unknown_model"}
    invalid = next(f for f in report.failures if f.kind == "invalid")
    assert invalid.detail.startswith("score:")
    assert "bad/score" in invalid.message


def test_verify_isolates_a_corrupt_file_and_reports_stray_files(tmp_path: Path) -> None:
    """Regression: one undecodable file must not hide the other records of its batch."""
    backend = FileBackend(tmp_path / "files")
    store = ResultsManager(backend=backend)
    fill(store, 3)
    (tmp_path / "files" / "b" / "x" / "broken.json").write_text("{not json")
    (tmp_path / "files" / "b" / "x" / ".2.json.abc.tmp").write_text("half")
    report = mt.verify(store)
    assert report.checked == 4
    assert [(f.id, f.kind) for f in report.failures] == [("b/x/broken", "corrupt")]
    assert "broken.json" in report.failures[0].message
    assert report.orphans == [str(tmp_path / "files" / "b" / "x" / ".2.json.abc.tmp")]
    with pytest.raises(CorruptRecordError, match=r"broken\.json"):
        list(mt.iter_records(store))
    assert mt.stats(store).corrupt == 1


def test_export_import_round_trip_keeps_envelopes(store: ResultsManager, tmp_path: Path) -> None:
    fill(store, 4)
    store.backend.insert("old/one", stamped(40))
    path = tmp_path / "out.jsonl"
    exported = tr.export_jsonl(store, path)
    assert exported.written == 5
    assert len(path.read_text().splitlines()) == 5
    assert path.stat().st_mode & 0o044  # readable like any new file, not mkstemp's 0600
    target = FileBackend(tmp_path / "restored")
    imported = tr.import_jsonl(target, path)
    assert (imported.read, imported.written, imported.skipped) == (5, 5, 0)
    source = dict(mt.iter_records(store))
    restored = dict(mt.iter_records(target))
    assert {k: as_tuple(v) for k, v in restored.items()} == {
        k: as_tuple(v) for k, v in source.items()
    }
    again = tr.import_jsonl(target, path)
    assert (again.written, again.skipped) == (0, 5)


def test_import_conflicts_follow_set_behavior(tmp_path: Path) -> None:
    target = MemoryBackend()
    target.insert("a", stamped(1, '{"name": "mine", "score": 0.0}'))
    line = tr.to_jsonl_line("a", stamped(2))
    with pytest.raises(ResultConflictError, match="'a'"):
        tr.import_jsonl(target, io.StringIO(line + "\n"))
    skipped = tr.import_jsonl(target, io.StringIO(line), on_conflict=SetBehavior.SKIP_IF_EXISTS)
    assert skipped.skipped == 1
    tr.import_jsonl(target, io.StringIO(line), on_conflict=SetBehavior.OVERWRITE)
    stored = target.read("a")
    assert stored is not None and json.loads(stored.data)["name"] == "old"


@pytest.mark.parametrize(
    ("line", "error", "match"),
    [
        ("{oops", CorruptRecordError, "in.jsonl line 2 is not valid JSON"),
        ('{"format": "results_flow/1"}', CorruptRecordError, 'line 2 has no string "id"'),
        ('{"id": "a/../b", "format": "results_flow/1"}', InvalidResultIdError, "line 2"),
        ('{"id": "a", "format": "other"}', CorruptRecordError, "line 2 is not a results_flow"),
    ],
)
def test_import_names_the_bad_line(
    tmp_path: Path, line: str, error: type[Exception], match: str
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(tr.to_jsonl_line("ok", stamped(0)) + "\n" + line + "\n")
    target = MemoryBackend()
    with pytest.raises(error, match=match):
        tr.import_jsonl(target, path)
    assert target.list_ids() == ["ok"]


def test_import_of_a_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailableError, match=r"nope\.jsonl"):
        tr.import_jsonl(MemoryBackend(), tmp_path / "nope.jsonl")


def test_export_line_stays_one_line_for_pretty_printed_data() -> None:
    record = Record("Sample", NAMESPACE, '{\n  "name": "x",\n  "score": 1.0\n}')
    line = tr.to_jsonl_line("p", record)
    assert "\n" not in line
    result_id, back = tr.from_jsonl_line(line, "here")
    assert (result_id, as_tuple(back)) == ("p", as_tuple(record))


def test_failed_export_leaves_no_file(tmp_path: Path) -> None:
    backend = FileBackend(tmp_path / "files")
    ResultsManager(backend=backend).set("a", Sample(name="a", score=1))
    (tmp_path / "files" / "z.json").write_text("garbage")
    with pytest.raises(CorruptRecordError):
        tr.export_jsonl(backend, tmp_path / "out.jsonl")
    assert list(tmp_path.glob("*out.jsonl*")) == []


def test_export_writes_through_links_into_fifos_and_keeps_the_files_mode(
    tmp_path: Path,
) -> None:
    """It renamed a new file over whatever was at the path: a symlink, a FIFO, a device
    node became a regular file, and a private file a world-readable one."""
    store = ResultsManager(backend=FileBackend(tmp_path / "files"))
    store.set("a", Sample(name="a", score=1))
    kept = tmp_path / "kept.jsonl"
    kept.write_text("old\n")
    kept.chmod(0o600)
    link = tmp_path / "link.jsonl"
    link.symlink_to(kept)
    tr.export_jsonl(store, link)
    assert link.is_symlink() and '"id": "a"' in kept.read_text()
    assert kept.stat().st_mode & 0o777 == 0o600
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with ThreadPoolExecutor(1) as pool:
        reader = pool.submit(fifo.read_text)
        tr.export_jsonl(store, fifo)
        assert '"id": "a"' in reader.result(timeout=30)
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_export_refuses_the_stores_own_files(tmp_path: Path) -> None:
    sqlite = ResultsManager(f"sqlite:///{tmp_path / 'r.db'}")
    sqlite.set("a", Sample(name="a", score=1))
    for name in ("r.db", "r.db-wal"):
        with pytest.raises(MaintenanceError, match="into its own files"):
            tr.export_jsonl(sqlite, tmp_path / name)
    files = ResultsManager(backend=FileBackend(tmp_path / "files"))
    with pytest.raises(MaintenanceError, match="into its own files"):
        tr.export_jsonl(files, tmp_path / "files" / "out.jsonl")
    assert sqlite.get("a", Sample) == Sample(name="a", score=1)


def test_migrate_copies_envelopes_and_reruns_cleanly(store: ResultsManager, tmp_path: Path) -> None:
    fill(store, 3)
    target = SqliteBackend(tmp_path / "target.db")
    sink = Counter()
    report = tr.migrate(store, target, progress=sink)
    assert (report.read, report.written, sink.done) == (3, 3, 3)
    assert {k: as_tuple(v) for k, v in mt.iter_records(target)} == {
        k: as_tuple(v) for k, v in mt.iter_records(store)
    }
    assert tr.migrate(store, target).skipped == 3
    with pytest.raises(MaintenanceError, match="onto itself"):
        tr.migrate(store, store.backend)


def test_plan_delete(store: ResultsManager) -> None:
    fill(store, 4)
    assert cl.plan_delete(store, prefix="a").ids == ["a/x/1", "a/x/3"]
    assert cl.plan_delete(store, "b/x/0").ids == ["b/x/0"]
    with pytest.raises(ResultNotFoundError, match="b/x/9"):
        cl.plan_delete(store, "b/x/9")
    with pytest.raises(MaintenanceError):
        cl.plan_delete(store)
    report = cl.delete_planned(store, cl.plan_delete(store, prefix="b"))
    assert (report.deleted, store.list_ids()) == (2, ["a/x/1", "a/x/3"])


def test_gc_deletes_only_records_older_than_the_cutoff(store: ResultsManager) -> None:
    store.backend.insert("old/1", stamped(40))
    store.backend.insert("old/2", stamped(31))
    store.backend.insert("recent", stamped(2))
    plan = cl.plan_gc(store, timedelta(days=30))
    assert plan.ids == ["old/1", "old/2"]
    # A record rewritten after the plan was made is kept.
    store.backend.upsert("old/2", stamped(0))
    report = cl.delete_planned(store, plan)
    assert (report.deleted, report.kept) == (1, 1)
    assert store.list_ids() == ["old/2", "recent"]
    with pytest.raises(MaintenanceError, match="zero or more"):
        cl.plan_gc(store, timedelta(days=-1))
    with pytest.raises(MaintenanceError, match="planned for"):
        cl.delete_planned(MemoryBackend("other"), plan)


def test_open_store_does_not_create_a_missing_store(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailableError, match=r"missing\.db"):
        mt.open_store(f"sqlite:///{tmp_path}/missing.db", create=False)
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreUnavailableError, match="plain"):
        mt.open_store(str(tmp_path / "plain"), create=False)
    assert not (tmp_path / "missing.db").exists()
    assert not (tmp_path / "plain" / ".results_flow").exists()
    with mt.open_store(f"file://{tmp_path}/new") as created:
        assert created.list_ids() == []
    with mt.open_store(f"file://{tmp_path}/new", create=False) as reopened:
        assert reopened.list_ids() == []


def test_import_model_modules(tmp_path: Path) -> None:
    (tmp_path / "maint_models_mod.py").write_text(
        "from pydantic import BaseModel\n"
        "from results_flow import register_model\n"
        "@register_model(namespace='maint_import')\n"
        "class Thing(BaseModel):\n    n: int\n"
    )
    assert mt.import_model_modules(["maint_models_mod"], search_path=str(tmp_path)) == [
        "maint_models_mod"
    ]
    with pytest.raises(ModelModuleImportError, match="no_such_models_module"):
        mt.import_model_modules(["no_such_models_module"], search_path=str(tmp_path))


def test_parse_age_and_human_age() -> None:
    assert mt.parse_age("30d") == timedelta(days=30)
    assert mt.parse_age("1d12h") == timedelta(days=1, hours=12)
    assert mt.parse_age("90m") == timedelta(minutes=90)
    for bad in (
        "-5d",
        "5",
        "soon",
        "5d-",
        "",
        "\uff11d",
        "\u0663d",
    ):  # fullwidth, Arabic-Indic digits
        with pytest.raises(MaintenanceError, match="is not an age such as 30d"):
            mt.parse_age(bad)
    with pytest.raises(MaintenanceError, match="too long"):
        mt.parse_age("9999999999d")
    assert mt.human_age(timedelta(days=30)) == "30 days"
    assert mt.human_age(timedelta(days=1, hours=12)) == "1 day 12 hours"
    assert mt.human_age(timedelta(days=-5)) == "-5 days"
    assert mt.human_age(timedelta(0)) == "0 seconds"


def test_gc_age_before_the_calendar_is_a_named_error(store: ResultsManager) -> None:
    """Regression (issue 8, item 16): ``gc --older-than 99999999d`` was an OverflowError."""
    with pytest.raises(MaintenanceError, match="99,999,999 days reaches back before the year 1"):
        cl.plan_gc(store, timedelta(days=99_999_999))


def test_a_prefix_may_end_with_a_slash(store: ResultsManager, tmp_path: Path) -> None:
    """Regression (issue 13, item 3): ``models/`` was "empty segment in result ID"."""
    fill(store, 5)
    assert [rid for rid, _ in mt.scan(store, "a/")] == ["a/x/1", "a/x/3"]
    assert mt.stats(store, "a/x/").count == 2
    assert mt.verify(store, "b/").checked == 3
    assert tr.export_jsonl(store, tmp_path / "a.jsonl", "a/").written == 2
    assert cl.plan_gc(store, timedelta(0), "a/").ids == ["a/x/1", "a/x/3"]
    assert cl.plan_delete(store, prefix="b/x/").ids == ["b/x/0", "b/x/2", "b/x/4"]
    for bad in ("/", "a//", "a/../"):
        with pytest.raises(InvalidResultIdError):
            cl.plan_delete(store, prefix=bad)


class ShortNamespaceBackend(MinimalBackend):
    """A custom store that cannot hold long namespaces and does not say so up front."""

    def insert(self, result_id: str, record: Record) -> Record | None:
        if len(record.namespace) > 20:
            raise StoreError(f"{self.location}: namespace too long for {result_id!r}")
        return super().insert(result_id, record)


def test_migrate_copies_what_fits_when_the_target_refuses_at_write(tmp_path: Path) -> None:
    source = SqliteBackend(tmp_path / "source.db")
    for i in range(6):
        source.insert(f"r/{i}", stamped(1))
    source.insert("r/long", Record("Sample", "n" * 30, "{}"))
    target = ShortNamespaceBackend()
    report = tr.migrate(source, target)
    assert (report.read, report.written, report.skipped) == (7, 6, 0)
    assert [(r.id, "namespace too long" in r.reason) for r in report.refused] == [("r/long", True)]
    assert not report.ok
    assert target.list_ids() == [f"r/{i}" for i in range(6)]


class DownBackend(MinimalBackend):
    """A store that stops answering after its first write."""

    def insert(self, result_id: str, record: Record) -> Record | None:
        if self.records:
            raise StoreUnavailableError(f"cannot reach {self.location}")
        return super().insert(result_id, record)


def test_an_unreachable_target_stops_a_migration(tmp_path: Path) -> None:
    source = MemoryBackend("down-source")
    for i in range(3):
        source.insert(f"r/{i}", stamped(1))
    with pytest.raises(StoreUnavailableError):
        tr.migrate(source, DownBackend())


@pytest.fixture
def odd_namespaces(tmp_path: Path) -> SqliteBackend:
    """A SQLite store of 12 records, two of them with namespaces PostgreSQL refuses."""
    source = SqliteBackend(tmp_path / "source.db")
    for i in range(10):
        source.insert(f"r/{i:02}", stamped(1))
    source.insert("r/03x", Record("Sample", "n" * 256, "{}"))
    source.insert("r/07x", Record("Sample", "bad\x00ns", "{}"))
    return source


@pytest.mark.postgres
def test_migrate_to_postgresql_copies_every_record_that_fits(
    odd_namespaces: SqliteBackend, postgres_url: str
) -> None:
    """Regression (issue 8, item 15): the copy stopped at the first refused record."""
    target = ResultsManager.from_url(postgres_url)
    with target:
        report = tr.migrate(odd_namespaces, target)
        assert (report.read, report.written, report.skipped) == (12, 10, 0)
        reasons = {refusal.id: refusal.reason for refusal in report.refused}
        assert sorted(reasons) == ["r/03x", "r/07x"]
        assert "namespace is 256 characters long" in reasons["r/03x"]
        assert "NUL" in reasons["r/07x"]
        assert target.list_ids() == [f"r/{i:02}" for i in range(10)]
        again = tr.migrate(odd_namespaces, target)
        assert (again.written, again.skipped, len(again.refused)) == (0, 10, 2)


@pytest.mark.postgres
def test_import_to_postgresql_copies_every_record_that_fits(
    odd_namespaces: SqliteBackend, postgres_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "odd.jsonl"
    tr.export_jsonl(odd_namespaces, path)
    with ResultsManager.from_url(postgres_url) as target:
        report = tr.import_jsonl(target, path)
        assert (report.read, report.written, len(report.refused)) == (12, 10, 2)
        assert len(target.list_ids()) == 10


def test_verify_knows_prefect_result_blobs_without_import(tmp_path: Path) -> None:
    """Regression (issue 9 item 9): ResultsStorage records were unknown_model in verify."""
    import subprocess
    import sys

    from results_flow.blobs import PrefectResultBlob

    url = f"sqlite:///{tmp_path / 'results.db'}"
    store = ResultsManager.from_url(url)
    store.set("prefect/k1", PrefectResultBlob.of(b'{"result": 1}'))
    store.set("prefect/k2", PrefectResultBlob.of(b"\xff binary"))
    code = "import sys; from results_flow.cli import main; sys.argv[0] = 'results-flow'; main()"
    done = subprocess.run(
        [sys.executable, "-c", code, "verify", "--store", url, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"valid": 2' in done.stdout


@pytest.mark.parametrize(
    ("line_data", "error"),
    [
        ('{"s": "\\ud800"}', "holds data no store can keep"),
        ('{"x": NaN}', "NaN is not a JSON value"),
        ('{"x": -Infinity}', "-Infinity is not a JSON value"),
        ('{"x": ' + "[" * 100_000 + "]" * 100_000 + "}", "is not valid JSON"),
    ],
)
def test_import_lines_no_store_can_keep_are_named(line_data: str, error: str) -> None:
    """They ended in a TypeError or RecursionError traceback, or stored NaN."""
    line = tr.to_jsonl_line("p", encode("p", Sample(name="a", score=1), None, None))
    line = line[: line.rindex('"data": ') + len('"data": ')] + line_data + "}"
    with pytest.raises(CorruptRecordError, match=re.escape(error)):
        tr.from_jsonl_line(line, "here line 1")


def test_metadata_that_is_not_json_is_refused() -> None:
    store = ResultsManager.from_url("memory://nan-metadata")
    for bad in ({"loss": float("nan")}, {"best": float("inf")}):
        with pytest.raises(ResultValidationError, match="metadata must be JSON-serializable"):
            store.set("a", Sample(name="a", score=1), metadata=bad)
    assert not store.exists("a")
