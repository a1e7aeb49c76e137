"""The file store among files it did not write: foreign, undecodable, symlinks, FIFOs
(issue 8 items 6, 8, 9; issue 11 item 7; issue 12 item 3's prefix walk)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from results_flow import (
    FileBackend,
    ResultsManager,
    SetBehavior,
    cleanup,
    maintenance,
    stray,
    transfer,
)
from results_flow.errors import (
    CorruptRecordError,
    InvalidResultIdError,
    StoreError,
    StoreUnavailableError,
)
from results_flow.legacy import check_resultsmanager_store
from tests.backends.models import Person

JOHN = Person(name="John", age=30)
FOREIGN = ["raw/input-2024.csv", "notes.txt", ".env", ".git/HEAD", "people/notes.txt"]


def _foreign_files(root: Path) -> None:
    for name in FOREIGN:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)


def test_clear_deletes_records_and_keeps_foreign_files(tmp_path: Path) -> None:
    rm = ResultsManager(tmp_path)
    for rid in ("people/john", "people/ann", "runs/r1/a/b", "top"):
        rm.set(rid, JOHN)
    _foreign_files(tmp_path)
    rm.clear()
    assert rm.list_ids() == []
    for name in FOREIGN:
        assert (tmp_path / name).read_text() == name
    assert not (tmp_path / "runs").exists()  # made by the store, empty once cleared
    assert (tmp_path / "people").is_dir()  # still holds notes.txt
    rm.set("runs/r1/a/b", JOHN)  # the store works on after a clear
    assert rm.list_ids() == ["runs/r1/a/b"]


def test_undecodable_file_names_are_stray_and_every_command_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rm = ResultsManager(tmp_path)
    rm.set("docs/good", JOHN)
    os.makedirs(os.path.join(os.fsencode(tmp_path), b"docs"), exist_ok=True)
    for raw in (b"docs/r\xe9sum\xe9.json", b"r\xe9sum\xe9.json"):
        with open(os.path.join(os.fsencode(tmp_path), raw), "wb") as handle:
            handle.write(b"{}")
    os.mkdir(os.path.join(os.fsencode(tmp_path), b"f\xe9"))
    assert rm.list_ids() == ["docs/good"]
    assert rm.list_ids("docs") == ["docs/good"]
    report = maintenance.verify(rm)
    assert report.ok
    assert sorted(report.orphans) == sorted(
        [
            f"{tmp_path}/docs/r\\xe9sum\\xe9.json",
            f"{tmp_path}/f\\xe9/",
            f"{tmp_path}/r\\xe9sum\\xe9.json",
        ]
    )
    json.dumps(report.model_dump(mode="json"))  # printable everywhere
    out = tmp_path.parent / "export.jsonl"
    assert transfer.export_jsonl(rm, out).written == 1
    target = ResultsManager(tmp_path.parent / "copy")
    assert transfer.migrate(rm, target).written == 1
    result = _cli("verify", "--import", "tests.backends.models", "--store", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "r\\xe9sum\\xe9.json" in result.stdout + result.stderr
    rm.clear()
    assert os.path.exists(os.path.join(os.fsencode(tmp_path), b"r\xe9sum\xe9.json"))


def test_a_lone_surrogate_in_an_id_is_invalid(tmp_path: Path) -> None:
    rm = ResultsManager(tmp_path)
    for bad in ("r\udce9sum\udce9", "a/" + "x" * 120 + "\ud800", ["ok", "\udfff"]):
        with pytest.raises(InvalidResultIdError, match="forbidden character"):
            rm.set(bad, JOHN)
    with pytest.raises(InvalidResultIdError):
        rm.list_ids("a\udc80")


def test_symlinked_record_is_stray_never_followed_and_deletable(tmp_path: Path) -> None:
    store, outside = tmp_path / "store", tmp_path / "outside"
    rm = ResultsManager(store)
    rm.set("people/john", JOHN)
    outside.mkdir()
    ResultsManager(outside).set("secret", JOHN)
    link = store / "people" / "linked.json"
    link.symlink_to(outside / "secret.json")
    assert rm.list_ids() == ["people/john"]
    assert not rm.exists("people/linked")
    with pytest.raises(CorruptRecordError, match="symlink, not a record file"):
        rm.get("people/linked")
    assert maintenance.verify(rm).orphans == [str(link)]
    assert maintenance.stats(rm).count == 1
    assert cleanup.plan_gc(rm, maintenance.parse_age("0s")).ids == ["people/john"]
    assert transfer.migrate(rm, ResultsManager(tmp_path / "copy")).written == 1
    assert rm.delete("people/linked")
    assert not link.is_symlink()
    assert ResultsManager(outside).get("secret") == JOHN  # the target is untouched


def test_symlinked_folder_is_never_walked(tmp_path: Path) -> None:
    store, outside = tmp_path / "store", tmp_path / "outside"
    rm = ResultsManager(store)
    rm.set("people/john", JOHN)
    ResultsManager(outside).set("elsewhere/x", JOHN)
    (store / "people" / "away").symlink_to(outside / "elsewhere")
    (store / "away").symlink_to(outside)
    assert rm.list_ids() == ["people/john"]
    assert rm.list_ids("people") == ["people/john"]
    assert rm.list_ids("people/away") == []
    assert rm.list_ids("away/elsewhere") == []
    assert sorted(maintenance.verify(rm).orphans) == [
        str(store / "away"),
        str(store / "people" / "away"),
    ]
    with pytest.raises(InvalidResultIdError, match="symlink"):
        rm.get("away/elsewhere/x")
    rm.clear()
    assert ResultsManager(outside).list_ids() == ["elsewhere/x"]


def test_fifo_named_like_a_record_never_hangs(tmp_path: Path) -> None:
    # In a child process, so that a regression hangs the child, not the test run.
    script = f"""
import os
from results_flow import ResultsManager, maintenance, SetBehavior
from results_flow.errors import CorruptRecordError
from tests.backends.models import Person
rm = ResultsManager({str(tmp_path)!r})
rm.set("q/good", Person(name="a", age=1))
os.mkfifo({str(tmp_path / "q" / "pipe.json")!r})
assert rm.list_ids() == ["q/good"]
assert not rm.exists("q/pipe")
try:
    rm.get("q/pipe")
except CorruptRecordError as exc:
    assert "FIFO" in str(exc), exc
else:
    raise SystemExit("no error")
report = maintenance.verify(rm)
assert report.ok and report.orphans == [{str(tmp_path / "q" / "pipe.json")!r}], report
assert maintenance.stats(rm).count == 1
rm.clear()
assert os.path.exists({str(tmp_path / "q" / "pipe.json")!r})
assert rm.set("q/pipe", Person(name="b", age=2), SetBehavior.OVERWRITE)
assert rm.get("q/pipe") == Person(name="b", age=2)
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_list_ids_walks_only_the_prefix_folder(tmp_path: Path) -> None:
    rm = ResultsManager(tmp_path)
    for rid in ("g/a", "g/a/x", "g/a/y/z", "g/ab", "g/b/q", "g/a.json.x"):
        rm.set(rid, JOHN)
    sibling = tmp_path / "g" / "b"
    sibling.chmod(0)  # the walk of g/a must not even look into g/b
    try:
        assert rm.list_ids("g/a") == ["g/a", "g/a/x", "g/a/y/z"]
        assert rm.list_ids("g/a/y") == ["g/a/y/z"]
        assert rm.list_ids("g/nothing") == []
        assert rm.list_ids("nothing/at/all") == []
    finally:
        sibling.chmod(0o755)


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root reads every folder; test_walk_errors_are_mapped covers it"
)
def test_unreadable_subfolder_is_a_named_error_not_missing_ids(tmp_path: Path) -> None:
    rm = ResultsManager(tmp_path)
    rm.set("open/a", JOHN)
    rm.set("closed/b", JOHN)
    closed = tmp_path / "closed"
    closed.chmod(0)
    try:
        with pytest.raises(StoreUnavailableError, match=str(closed)):
            rm.list_ids()
        with pytest.raises(StoreUnavailableError, match=str(closed)):
            maintenance.verify(rm)
    finally:
        closed.chmod(0o755)


def _fail_scandir_of(monkeypatch: pytest.MonkeyPatch, ending: str, error: OSError) -> None:
    """Listing a folder whose path ends in ``ending`` fails as the OS would (root reads
    every folder, so a real chmod 0 proves nothing here)."""
    real = os.scandir

    def failing(path: str) -> object:
        if str(path).endswith(ending):
            raise type(error)(error.errno, error.strerror, path)
        return real(path)

    monkeypatch.setattr(os, "scandir", failing)


def test_walk_errors_are_mapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rm = ResultsManager(tmp_path)
    rm.set("a/b", JOHN)
    _fail_scandir_of(monkeypatch, "/a", OSError(5, "Input/output error"))
    with pytest.raises(StoreError, match=f"{tmp_path}/a.*Input/output error"):
        rm.list_ids()
    with pytest.raises(StoreError):
        FileBackend(tmp_path).stray_paths()
    monkeypatch.setattr(
        os, "scandir", lambda path: (_ for _ in ()).throw(PermissionError(13, "denied", path))
    )
    with pytest.raises(StoreUnavailableError, match=str(tmp_path)):
        rm.list_ids()


@pytest.mark.parametrize("walk", ["plan_stray", "check_resultsmanager_store"])
def test_the_other_walks_raise_on_an_unreadable_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, walk: str
) -> None:
    # os.walk's default skips a folder it cannot read: temp files or results in it
    # would silently drop out of ``gc --stray`` or an import from the original store.
    rm = ResultsManager(tmp_path)
    rm.set("a/b", JOHN)
    temp = tmp_path / "a" / ".b.json.abcd1234.tmp"
    temp.write_text("{}")
    os.utime(temp, (0, 0))

    def found() -> int:  # the temp file, or the one result, under a/
        if walk == "plan_stray":
            return len(stray.plan_stray(rm, timedelta(0)).paths)
        return check_resultsmanager_store(tmp_path)

    assert found() == 1
    _fail_scandir_of(monkeypatch, "/a", PermissionError(13, "Permission denied"))
    with pytest.raises(StoreUnavailableError, match=f"{tmp_path}/a.*Permission denied"):
        found()


def test_overwrite_replaces_a_special_file_at_the_ids_path(tmp_path: Path) -> None:
    rm = ResultsManager(tmp_path)
    target = tmp_path / "t.txt"
    target.write_text("keep")
    (tmp_path / "s.json").symlink_to(target)
    with pytest.raises(CorruptRecordError):
        rm.set("s", JOHN)
    assert rm.set("s", JOHN, SetBehavior.OVERWRITE)
    assert rm.get("s") == JOHN
    assert target.read_text() == "keep"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "results-flow"), *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
