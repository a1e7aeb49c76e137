"""The results-flow command, run in-process through cyclopts on real stores, plus one
real call of the installed console script."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel
from rich.console import Console

from results_flow import FileBackend, Record, ResultsManager, SqliteBackend, register_model
from results_flow.cli import app
from results_flow.codec import encode
from results_flow.transfer import to_jsonl_line
from tests.s3_server import S3Server

NAMESPACE = "cli_test"


@register_model(namespace=NAMESPACE)
class Reading(BaseModel):
    sensor: str
    value: float


@pytest.fixture(autouse=True)
def _registered() -> None:
    """Keep the test model registered even if another test cleared the registry."""
    register_model(Reading, namespace=NAMESPACE)


@dataclass
class Outcome:
    code: int
    out: str
    err: str


def run(*tokens: str, terminal: bool = False, width: int = 300) -> Outcome:
    """Invoke the app in-process with consoles that capture what it prints."""
    out = Console(file=io.StringIO(), width=width)
    err = Console(file=io.StringIO(), width=300, force_terminal=terminal)
    try:
        code = app(list(tokens), console=out, error_console=err, result_action="return_value")
    except SystemExit as exc:  # cyclopts exits on usage errors
        code = exc.code
    return Outcome(int(code or 0), out.file.getvalue(), err.file.getvalue())  # type: ignore[attr-defined]


@pytest.fixture
def db(tmp_path: Path) -> str:
    """The URL of a SQLite store holding four readings, one with metadata."""
    url = f"sqlite:///{tmp_path / 'results.db'}"
    with ResultsManager.from_url(url) as store:
        for i, sensor in enumerate(["t1", "t2", "h1"]):
            group = "temp" if sensor.startswith("t") else "humidity"
            store.set(f"sensors/{group}/{sensor}", Reading(sensor=sensor, value=i + 0.5))
        store.set("runs/r1", Reading(sensor="t1", value=9.0), metadata={"flow": "daily"})
    return url


def content(record: Record | None) -> tuple[object, ...]:
    """A record's envelope with its data as a JSON value: backends may space the text differently."""
    assert record is not None
    return (
        record.model_type,
        record.namespace,
        json.loads(record.data),
        record.created_at,
        record.updated_at,
        record.metadata,
    )


def ids_in(url: str) -> list[str]:
    with ResultsManager.from_url(url) as store:
        return store.list_ids()


def test_ls_lists_ids_by_prefix(db: str) -> None:
    every = run("ls", "--store", db)
    assert every.code == 0
    assert every.out.split() == [
        "runs/r1",
        "sensors/humidity/h1",
        "sensors/temp/t1",
        "sensors/temp/t2",
    ]
    assert json.loads(run("ls", "sensors/temp", "--store", db, "--json").out) == [
        "sensors/temp/t1",
        "sensors/temp/t2",
    ]
    long = run("ls", "runs", "-l", "--store", db)
    assert "runs/r1" in long.out and "Reading" in long.out and NAMESPACE in long.out
    rows = json.loads(run("ls", "runs", "-l", "--json", "--store", db).out)
    assert rows[0]["id"] == "runs/r1" and rows[0]["size"] > 0
    nothing = run("ls", "sensors/te", "--store", db)
    assert (nothing.code, nothing.out, "no results under 'sensors/te'" in nothing.err) == (
        0,
        "",
        True,
    )


def test_store_comes_from_the_environment(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESULTS_FLOW_STORE", db)
    assert run("ls", "runs").out.split() == ["runs/r1"]


def test_show_prints_data_and_metadata(db: str) -> None:
    shown = run("show", "runs/r1", "--store", db)
    assert shown.code == 0
    for text in ("runs/r1", f"{NAMESPACE}:Reading", '"flow": "daily"', '"value": 9.0'):
        assert text in shown.out
    doc = json.loads(run("show", "runs/r1", "--json", "--store", db).out)
    assert doc["data"] == {"sensor": "t1", "value": 9.0}
    assert doc["metadata"] == {"flow": "daily"}
    assert doc["model_type"] == "Reading" and "created_at" in doc


def test_missing_id_is_a_one_line_error(db: str) -> None:
    for command in ("show", "rm"):
        missing = run(command, "runs/nope", "--store", db)
        assert missing.code == 1
        assert missing.out == ""
        assert missing.err.count("\n") == 1
        assert missing.err.startswith("error: no result stored under 'runs/nope'")


def test_bad_store_url_is_a_one_line_error(tmp_path: Path) -> None:
    bad = run("ls", "--store", "nosuch://somewhere")
    assert (bad.code, bad.err.count("\n")) == (1, 1)
    assert "unknown store URL scheme 'nosuch'" in bad.err
    missing = run("stats", "--store", f"sqlite:///{tmp_path / 'typo.db'}")
    assert missing.code == 1
    assert "no results_flow store at" in missing.err and "typo.db" in missing.err
    assert not (tmp_path / "typo.db").exists()
    invalid = run("ls", "a//b", "--store", "memory://")
    assert (invalid.code, "empty segment" in invalid.err) == (1, True)


def test_rm_refuses_without_confirmation(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    before = ids_in(db)
    refused = run("rm", "--prefix", "sensors", "--store", db)  # stdin cannot be read
    assert refused.code == 1
    assert "not confirmed; nothing deleted" in refused.err
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    assert run("rm", "runs/r1", "--store", db).code == 1
    assert ids_in(db) == before


def test_rm_deletes_after_yes_or_a_confirmation(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    confirmed = run("rm", "--prefix", "sensors/temp", "--store", db)
    assert confirmed.code == 0
    assert "Delete 2 results under 'sensors/temp'" in confirmed.err
    assert "deleted 2 result(s)" in confirmed.out
    assert run("rm", "runs/r1", "--yes", "--store", db).code == 0
    assert ids_in(db) == ["sensors/humidity/h1"]
    report = json.loads(run("rm", "--prefix", "sensors", "-y", "--json", "--store", db).out)
    assert report["deleted"] == 1
    assert run("rm", "--store", db).code == 1  # neither ID nor --prefix


def test_stats_counts_and_sizes(db: str) -> None:
    shown = run("stats", "--store", db)
    assert shown.code == 0
    assert "4 results" in shown.out and "sensors" in shown.out
    report = json.loads(run("stats", "--depth", "2", "--json", "--store", db).out)
    assert report["count"] == 4
    assert {k: v["count"] for k, v in report["by_prefix"].items()} == {
        "runs/r1": 1,
        "sensors/humidity": 1,
        "sensors/temp": 2,
    }
    assert report["by_model"][f"{NAMESPACE}:Reading"]["size"] == report["size"]


def test_verify_reports_corrupt_unknown_and_invalid_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"cli_models_{uuid.uuid4().hex[:8]}"
    namespace = f"cli_import_{module}"
    (tmp_path / f"{module}.py").write_text(
        "from pydantic import BaseModel\n"
        "from results_flow import register_model\n"
        f"@register_model(namespace={namespace!r})\n"
        "class Gadget(BaseModel):\n    size: int\n"
    )
    monkeypatch.chdir(tmp_path)
    backend = FileBackend(tmp_path / "store")
    store = f"file://{backend.root}"
    backend.insert("gadgets/ok", Record("Gadget", namespace, '{"size": 3}'))
    backend.insert("gadgets/bad", Record("Gadget", namespace, '{"size": "huge"}'))
    backend.insert("gadgets/ghost", Record("Ghost", namespace, "{}"))
    (backend.root / "gadgets" / "torn.json").write_text('{"format": "results_flow/1", "da')

    without = run("verify", "--store", store, "--json")
    assert without.code == 1
    assert {f["kind"] for f in json.loads(without.out)["failures"]} == {"unknown_model", "corrupt"}

    checked = run("verify", "--import", module, "--store", store)
    assert checked.code == 1
    assert "1 of 4 results valid" in checked.out
    report = json.loads(run("verify", "--import", module, "--json", "--store", store).out)
    kinds = {f["id"]: f["kind"] for f in report["failures"]}
    assert kinds == {
        "gadgets/bad": "invalid",
        "gadgets/ghost": "unknown_model",
        "gadgets/torn": "corrupt",
    }
    torn = next(f for f in report["failures"] if f["kind"] == "corrupt")
    assert str(backend.root / "gadgets" / "torn.json") in torn["message"]

    clean = run("verify", "gadgets/ok", "--import", module, "--store", store)
    assert (clean.code, "1 of 1 results valid" in clean.out) == (0, True)
    unknown = run("verify", "--import", "no_such_module_xyz", "--store", store)
    assert (unknown.code, "no_such_module_xyz" in unknown.err) == (1, True)


def test_export_import_round_trip(db: str, tmp_path: Path) -> None:
    path = tmp_path / "backup.jsonl"
    exported = run("export", str(path), "--store", db)
    assert exported.code == 0
    assert "exported 4 result(s)" in exported.out
    target = f"sqlite:///{tmp_path / 'restored.db'}"
    imported = run("import", str(path), "--store", target, "--json")
    assert json.loads(imported.out)["written"] == 4
    original = SqliteBackend(db.removeprefix("sqlite:///"))
    restored = SqliteBackend(tmp_path / "restored.db")
    assert restored.list_ids() == original.list_ids()
    for result_id in original.list_ids():
        assert content(restored.read(result_id)) == content(original.read(result_id))
    again = run("import", str(path), "--store", target)
    assert "imported 0 result(s)" in again.out and "4 already there" in again.out


def test_import_from_a_fifo_reads_it_once(db: str, tmp_path: Path) -> None:
    """Read through first and then again, a pipe (``<(zcat backup.gz)``) imported nothing."""
    path = tmp_path / "backup.jsonl"
    assert run("export", str(path), "--store", db).code == 0
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    target = f"sqlite:///{tmp_path / 'restored.db'}"
    with ThreadPoolExecutor(1) as pool:
        pool.submit(fifo.write_bytes, path.read_bytes())
        imported = run("import", str(fifo), "--store", target, "--json")
    assert json.loads(imported.out)["written"] == 4


def test_import_conflict_is_a_one_line_error(db: str, tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    path.write_text(
        json.dumps(
            {
                "id": "runs/r1",
                "format": "results_flow/1",
                "model_type": "Reading",
                "namespace": NAMESPACE,
                "created_at": "2024-01-01T00:00:00+00:00",
                "updated_at": "2024-01-01T00:00:00+00:00",
                "metadata": {},
                "data": {"sensor": "t1", "value": -1.0},
            }
        )
    )
    conflict = run("import", str(path), "--store", db)
    assert (conflict.code, "'runs/r1'" in conflict.err, conflict.err.count("\n")) == (1, True, 1)
    assert "one.jsonl line 1: " in conflict.err  # the line, not only the ID
    assert run("import", str(path), "--on-conflict", "overwrite", "--store", db).code == 0
    assert json.loads(run("show", "runs/r1", "--json", "--store", db).out)["data"]["value"] == -1.0


def test_export_to_stdout_and_import_from_stdin(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run("export", "-", "--prefix", "sensors", "--store", db).code == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["id"] for line in lines] == [
        "sensors/humidity/h1",
        "sensors/temp/t1",
        "sensors/temp/t2",
    ]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))
    target = str(tmp_path / "folder_store")
    assert run("import", "-", "--store", target).code == 0
    assert ids_in(target) == [json.loads(line)["id"] for line in lines]


def test_progress_bar_on_a_terminal(db: str, tmp_path: Path) -> None:
    shown = run("export", str(tmp_path / "x.jsonl"), "--store", db, terminal=True)
    assert shown.code == 0
    assert len((tmp_path / "x.jsonl").read_text().splitlines()) == 4


@pytest.mark.postgres
def test_migrate_sqlite_to_postgresql(db: str, postgres_url: str) -> None:
    moved = run("migrate", "--to", postgres_url, "--store", db)
    assert moved.code == 0
    assert "copied 4 result(s)" in moved.out
    source = SqliteBackend(db.removeprefix("sqlite:///"))
    with ResultsManager.from_url(postgres_url) as target:
        assert target.list_ids() == source.list_ids()
        for result_id in source.list_ids():
            assert content(target.record(result_id)) == content(source.read(result_id))
        assert target.get("runs/r1") == Reading(sensor="t1", value=9.0)
    rerun = json.loads(run("migrate", "--to", postgres_url, "--json", "--store", db).out)
    assert (rerun["written"], rerun["skipped"]) == (0, 4)
    onto_itself = run("migrate", "--to", db, "--store", db)
    assert (onto_itself.code, "onto itself" in onto_itself.err) == (1, True)


def test_gc_deletes_records_older_than(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = SqliteBackend(db.removeprefix("sqlite:///"))
    long_ago = datetime.now(UTC) - timedelta(days=45)
    data = '{"sensor": "t9", "value": 1.0}'
    backend.insert(
        "old/a", Record("Reading", NAMESPACE, data, created_at=long_ago, updated_at=long_ago)
    )
    before = backend.list_ids()
    refused = run("gc", "--older-than", "30d", "--store", db)
    assert (refused.code, backend.list_ids()) == (1, before)
    assert "Delete 1 result(s) last updated before" in refused.err
    pruned = run("gc", "--older-than", "30d", "--yes", "--store", db)
    assert pruned.code == 0
    assert "deleted 1 result(s)" in pruned.out
    assert "old/a" not in backend.list_ids()
    nothing = json.loads(run("gc", "--older-than", "12h", "--json", "--store", db).out)
    assert nothing["deleted"] == 0
    assert run("gc", "--older-than", "soon", "--store", db).code == 2


def test_installed_command_runs(db: str) -> None:
    command = Path(sys.executable).parent / "results-flow"
    done = subprocess.run(
        [str(command), "ls", "sensors", "--json", "--store", db],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["sensors/humidity/h1", "sensors/temp/t1", "sensors/temp/t2"]
    missing = subprocess.run(
        [str(command), "show", "nope", "--store", db],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (missing.returncode, missing.stderr.count("\n")) == (1, 1)


def test_importing_the_cli_does_not_import_prefect() -> None:
    probe = "import sys, results_flow.cli; print('prefect' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"


def test_every_prefix_may_end_with_a_slash(db: str, tmp_path: Path) -> None:
    """Regression (issue 13, item 3): the README's ``ls models/ -l`` failed."""
    assert run("ls", "sensors/", "--store", db).out.split() == [
        "sensors/humidity/h1",
        "sensors/temp/t1",
        "sensors/temp/t2",
    ]
    assert "runs/r1" in run("ls", "runs/", "-l", "--store", db).out
    assert json.loads(run("stats", "sensors/temp/", "--json", "--store", db).out)["count"] == 2
    assert "1 of 1 results valid" in run("verify", "runs/", "--store", db).out
    exported = run("export", str(tmp_path / "t.jsonl"), "--prefix", "sensors/temp/", "--store", db)
    assert "exported 2 result(s)" in exported.out
    gone = run("rm", "--prefix", "sensors/temp/", "--yes", "--store", db)
    assert (gone.code, "deleted 2 result(s)" in gone.out) == (0, True)
    pruned = run("gc", "--older-than", "0s", "--prefix", "runs/", "--yes", "--store", db)
    assert (pruned.code, ids_in(db)) == (0, ["sensors/humidity/h1"])


def test_show_wraps_long_strings_instead_of_cutting_them(tmp_path: Path) -> None:
    """Regression (issue 13, item 4): long strings were cut at the terminal width."""
    url = f"sqlite:///{tmp_path / 'long.db'}"
    sensor = "s" * 150 + "-END"
    with ResultsManager.from_url(url) as store:
        store.set("long", Reading(sensor=sensor, value=1.0), metadata={"note": "m" * 150 + "-TAIL"})
    shown = run("show", "long", "--store", url, width=60)
    assert shown.code == 0
    assert max(len(line) for line in shown.out.splitlines()) <= 60
    joined = "".join(shown.out.split())  # the wrapped pieces, whitespace aside
    assert sensor in joined and "m" * 150 + "-TAIL" in joined


@pytest.mark.parametrize("kind", ["sqlite", "file", "folder"])
@pytest.mark.parametrize("problem", ["missing", "not an export"])
def test_failed_import_creates_no_store(tmp_path: Path, kind: str, problem: str) -> None:
    """Regression (issue 13, item 5): a failed import left a new, empty store behind."""
    where = tmp_path / ("new.db" if kind == "sqlite" else "new_store")
    url = {"sqlite": f"sqlite:///{where}", "file": f"file://{where}", "folder": str(where)}[kind]
    source = tmp_path / "input.jsonl"
    if problem == "not an export":
        source.write_text("sensor,value\nt1,0.5\n")
    failed = run("import", str(source), "--store", url)
    assert (failed.code, failed.err.count("\n")) == (1, 1)
    assert "input.jsonl" in failed.err
    assert not where.exists()


def test_import_conflict_suggests_the_command_line_flag(db: str, tmp_path: Path) -> None:
    """Regression (issue 13, item 6): the hint named SetBehavior, a Python argument."""
    path = tmp_path / "backup.jsonl"
    assert run("export", str(path), "--store", db).code == 0
    taken = run("import", str(path), "--on-conflict", "raise-if-exists", "--store", db)
    assert (taken.code, taken.err.count("\n")) == (1, 1)
    assert "already exists" in taken.err and "--on-conflict overwrite" in taken.err
    assert "SetBehavior" not in taken.err and "behavior=" not in taken.err


def test_gc_ages_read_as_people_write_them(db: str) -> None:
    """Regression (issue 8 item 16, issue 13 item 6): overflow traceback, negative ages,
    durations printed as ``30 days, 0:00:00``."""
    negative = run("gc", "--older-than", "-5d", "--store", db)
    assert (negative.code, negative.err.count("\n")) == (2, 1)
    assert "'-5d' is not an age such as 30d" in negative.err
    for age in ("99999999d", "9999999999d"):
        huge = run("gc", "--older-than", age, "--store", db)
        assert (huge.code, huge.err.count("\n"), huge.out) == (2, 1, "")
        assert huge.err.startswith("error: ") and "Traceback" not in huge.err
    kept = run("gc", "--older-than", "30d", "--yes", "--store", db)
    assert "deleted 0 result(s) older than 30 days from" in kept.out
    assert "1 day 12 hours" in run("gc", "--older-than", "1d12h", "--store", db).out
    neither = run("gc", "--store", db)
    assert (neither.code, "gc needs a rule: --older-than AGE" in neither.err) == (2, True)


def test_verify_json_stays_json_when_a_models_module_prints(tmp_path: Path) -> None:
    """Regression (issue 13, item 6): the module's print went into the JSON on stdout."""
    module = f"noisy_models_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        "from pydantic import BaseModel\n"
        "from results_flow import register_model\n"
        "print('loading models...')\n"
        "@register_model(namespace='noisy')\n"
        "class Gadget(BaseModel):\n    size: int\n"
    )
    store = tmp_path / "store"
    FileBackend(store).insert("g", Record("Gadget", "noisy", '{"size": 1}'))
    command = Path(sys.executable).parent / "results-flow"
    done = subprocess.run(
        [str(command), "verify", "--import", module, "--json", "--store", str(store)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["valid"] == 1
    assert "loading models..." in done.stderr


@pytest.mark.postgres
def test_migrate_reports_records_the_target_cannot_hold(tmp_path: Path, postgres_url: str) -> None:
    """Regression (issue 8, item 15): the copy stopped at the first refused record."""
    source = SqliteBackend(tmp_path / "odd.db")
    for i in range(11):
        source.insert(f"r/{i:02}", Record("Reading", NAMESPACE, '{"sensor": "a", "value": 1}'))
    source.insert("r/05x", Record("Reading", "n" * 300, "{}"))
    url = f"sqlite:///{source.path}"
    moved = run("migrate", "--to", postgres_url, "--store", url)
    assert moved.code == 1
    assert "copied 11 result(s)" in moved.out
    assert "'r/05x'" in moved.err and "300 characters" in moved.err
    assert "1 result(s) not copied" in moved.err
    assert len(ids_in(postgres_url)) == 11
    report = json.loads(run("migrate", "--to", postgres_url, "--json", "--store", url).out)
    assert [refusal["id"] for refusal in report["refused"]] == ["r/05x"]


# -- on an object store (issue 10 item 4) ---------------------------------------------


def test_ls_stats_verify_and_lossless_migrate_sqlite_s3_file(
    db: str, s3_server: S3Server, tmp_path: Path
) -> None:
    s3 = s3_server.url()
    moved = run("migrate", "--to", s3, "--store", db)
    assert moved.code == 0, moved.err
    assert "copied 4 result(s)" in moved.out
    folder = f"file://{tmp_path / 'files'}"
    assert run("migrate", "--to", folder, "--store", s3).code == 0

    source = SqliteBackend(db.removeprefix("sqlite:///"))
    with ResultsManager.from_url(s3) as middle, ResultsManager.from_url(folder) as target:
        assert middle.list_ids() == target.list_ids() == source.list_ids()
        for result_id in source.list_ids():
            assert content(middle.record(result_id)) == content(source.read(result_id))
            assert content(target.record(result_id)) == content(source.read(result_id))
        assert target.get("runs/r1") == Reading(sensor="t1", value=9.0)

    listed = json.loads(run("ls", "sensors", "--json", "--store", s3).out)
    assert [entry if isinstance(entry, str) else entry["id"] for entry in listed] == [
        "sensors/humidity/h1",
        "sensors/temp/t1",
        "sensors/temp/t2",
    ]
    stats = run("stats", "--json", "--store", s3)
    assert stats.code == 0, stats.err
    assert json.loads(stats.out)["count"] == 4
    verified = run("verify", "--json", "--store", s3)
    assert verified.code == 0, verified.err
    rerun = json.loads(run("migrate", "--to", s3, "--json", "--store", db).out)
    assert (rerun["written"], rerun["skipped"]) == (0, 4)


def test_cli_names_a_missing_bucket_in_one_line(s3_server: S3Server) -> None:
    shown = run("ls", "--store", f"s3://no-such-bucket/p?endpoint={s3_server.endpoint}")
    assert shown.code != 0
    assert "no-such-bucket" in shown.err and "Traceback" not in shown.err


def test_ctrl_c_is_one_line_and_exit_code_130(tmp_path: Path) -> None:
    """It exited 130 with nothing said; what was imported before it stays."""
    big = tmp_path / "big.jsonl"
    record = encode("x", Reading(sensor="t", value=1.0), NAMESPACE, None)
    big.write_text("".join(to_jsonl_line(f"r/{i}", record) + "\n" for i in range(50_000)))
    db = tmp_path / "into.db"
    command = [
        sys.executable,
        "-m",
        "results_flow.cli",
        "import",
        str(big),
        "--store",
        f"sqlite:///{db}",
    ]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not db.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)  # some records in
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130 and err.startswith("error: interrupted"), err
    assert 0 < len(SqliteBackend(db).list_ids()) < 50_000


def test_export_to_dev_stdout_into_a_pipe(db: str) -> None:
    """/dev/stdout resolved to 'pipe:[N]', no path: the export failed. The summary goes
    to stderr, as with '-'."""
    command = [sys.executable, "-m", "results_flow.cli", "export", "/dev/stdout", "--store", db]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    assert len(done.stdout.splitlines()) == 4 and "exported 4 result(s)" in done.stderr


def test_cli_reads_a_custom_store_registered_by_entry_point(tmp_path: Path) -> None:
    """Issue 20 item 12: a store from outside the package (tests/custom_backend) is a
    store URL like any other for the CLI."""
    from tests.backends.conftest import CUSTOM_SCHEME, custom_store_installed

    custom_store_installed()
    url = f"{CUSTOM_SCHEME}://{tmp_path / 'tiny'}"
    with ResultsManager.from_url(url) as store:
        store.set("runs/r1", Reading(sensor="t1", value=9.0))
    assert json.loads(run("ls", "--store", url, "--json").out) == ["runs/r1"]
    doc = json.loads(run("show", "runs/r1", "--json", "--store", url).out)
    assert doc["data"] == {"sensor": "t1", "value": 9.0}, doc
