"""File store writes: clear() against live writers, permissions after the umask, new
folders fsynced, damaged records replaced (issue 8 items 7, 10, 11, 13)."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sqlite3
import stat
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from results_flow import FileBackend, ResultsManager, SetBehavior, maintenance
from results_flow.errors import CorruptRecordError, StoreUnavailableError
from tests.backends import workers
from tests.backends.models import Person

JOHN = Person(name="John", age=30)


def test_clear_races_writers_without_a_single_error(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'store'}"
    rm = ResultsManager.from_url(url)
    (tmp_path / "store" / "notes.txt").write_text("mine")
    with ProcessPoolExecutor(3, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(workers.clear_race_writer, url, w, 300) for w in range(3)]
        clears = 0
        while not all(future.done() for future in futures) or clears < 5:
            rm.clear()  # never raises, however the writers interleave
            clears += 1
        errors = [error for future in futures for error in future.result()]
    assert errors == []
    assert (tmp_path / "store" / "notes.txt").read_text() == "mine"
    rm.clear()
    assert rm.list_ids() == []


@pytest.mark.parametrize("mask", [0o002, 0o022, 0o077])
def test_new_files_and_folders_follow_the_umask(tmp_path: Path, mask: int) -> None:
    previous = os.umask(mask)
    try:
        rm = ResultsManager(tmp_path / "store")
        rm.set("group/shared/x", JOHN)
        with rm.backend.lock("group/shared/x"):
            pass
    finally:
        os.umask(previous)
    record = rm.backend.path_for("group/shared/x")
    assert stat.S_IMODE(record.stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE(record.parent.stat().st_mode) == 0o777 & ~mask
    lock_files = list((tmp_path / "store" / ".results_flow" / "locks").rglob("*.lock"))
    assert lock_files
    assert {stat.S_IMODE(path.stat().st_mode) for path in lock_files} == {0o666 & ~mask}


def test_permission_errors_name_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rm = ResultsManager(tmp_path)
    rm.set("a/b", JOHN)
    # A process keeps its lock files open once used: a store it has not locked in yet.
    fresh = ResultsManager(tmp_path / "fresh")
    real_open, real_lstat = os.open, os.lstat
    record = str(rm.backend.path_for("a/b"))

    def denied_open(path: str, *args: object, **kwargs: object) -> int:
        if str(path).endswith((".json", ".tmp", ".lock")):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", denied_open)
    with pytest.raises(StoreUnavailableError, match=f"{record}: Permission denied"):
        rm.get("a/b")
    with pytest.raises(StoreUnavailableError, match=r"lock file .*\.lock"):
        fresh.set("a/c", JOHN)
    with (
        pytest.raises(StoreUnavailableError, match=r"lock file .*\.lock"),
        fresh.backend.lock("a/c"),
    ):
        pass
    monkeypatch.setattr(os, "open", real_open)

    def denied_lstat(path: str, *args: object, **kwargs: object) -> os.stat_result:
        if str(path) == record:
            raise PermissionError(13, "Permission denied", path)
        return real_lstat(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "lstat", denied_lstat)
    with pytest.raises(StoreUnavailableError, match=record):
        rm.exists("a/b")


@pytest.mark.skipif(os.geteuid() == 0, reason="root opens any file whatever its mode")
def test_unreadable_record_and_lock_folder_are_unavailable(tmp_path: Path) -> None:
    rm = ResultsManager(tmp_path)
    rm.set("a/b", JOHN)
    record = rm.backend.path_for("a/b")
    record.chmod(0)
    # A process keeps its lock files open once used: a store it has not locked in yet.
    fresh = ResultsManager(tmp_path / "fresh")
    locks = tmp_path / "fresh" / ".results_flow" / "locks"
    locks.chmod(0o500)
    try:
        with pytest.raises(StoreUnavailableError, match=str(locks)):
            fresh.set("new/id", JOHN)
        with pytest.raises(StoreUnavailableError, match=str(record)):
            rm.get("a/b")
    finally:
        record.chmod(0o644)
        locks.chmod(0o755)


def test_new_parent_folders_are_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rm = ResultsManager(tmp_path)
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    rm.set("a/b/c/x", JOHN)
    root = str(tmp_path)
    # Each new folder's entry in its parent, then the record's entry in its folder.
    for folder in (root, f"{root}/a", f"{root}/a/b", f"{root}/a/b/c"):
        assert folder in synced
    assert synced.index(root) < synced.index(f"{root}/a/b/c")


def test_overwrite_replaces_a_damaged_file_record(tmp_path: Path) -> None:
    rm = ResultsManager(tmp_path)
    rm.set("bad", JOHN)
    path = rm.backend.path_for("bad")
    path.write_text('{"format": "results_flow/1", "model_type": "Per')
    with pytest.raises(CorruptRecordError, match=str(path)):
        rm.set("bad", JOHN, SetBehavior.SKIP_IF_EXISTS)
    assert rm.set("bad", JOHN, SetBehavior.OVERWRITE)
    assert rm.get("bad") == JOHN


@pytest.mark.parametrize(
    ("column", "value"),
    [("metadata", "{not json"), ("metadata", "[1, 2]"), ("created_at", "yesterday")],
)
def test_sqlite_row_with_damaged_envelope_is_named_and_verify_goes_on(
    tmp_path: Path, column: str, value: str
) -> None:
    db = tmp_path / "results.db"
    rm = ResultsManager.from_url(f"sqlite:///{db}")
    for rid in ("a", "bad", "z"):
        rm.set(rid, JOHN)
    rm.close()
    with sqlite3.connect(db) as conn:
        conn.execute(f"UPDATE results_flow_records SET {column} = ? WHERE id = 'bad'", (value,))
    rm = ResultsManager.from_url(f"sqlite:///{db}")
    with pytest.raises(CorruptRecordError, match="'bad'"):
        rm.record("bad")
    assert rm.get("bad") == JOHN  # get reads only the tag, namespace and data it validates
    report = maintenance.verify(rm)
    assert [(failure.id, failure.kind) for failure in report.failures] == [("bad", "corrupt")]
    assert report.valid == 2
    if column == "metadata":  # an overwrite keeps the stored creation time, damaged or not
        assert rm.set("bad", JOHN, SetBehavior.OVERWRITE)
        assert rm.get("bad") == JOHN
    rm.close()


def test_file_backend_survives_a_missing_lock_folder(tmp_path: Path) -> None:
    backend = FileBackend(tmp_path)
    rm = ResultsManager(backend=backend)
    rm.set("w", JOHN)  # the lock files in use, then removed with their folder
    shutil.rmtree(tmp_path / ".results_flow" / "locks")
    rm.set("x", JOHN)
    with rm.lock("y"):
        rm.set("y", JOHN)
    assert rm.list_ids() == ["w", "x", "y"]


def test_sqlite_lock_folder_that_cannot_be_made_is_named(tmp_path: Path) -> None:
    db = tmp_path / "results.db"
    rm = ResultsManager.from_url(f"sqlite:///{db}")
    (tmp_path / ".results.db.locks").write_text("a file where the lock folder goes")
    with (
        pytest.raises(StoreUnavailableError, match=r"lock folder .*\.results\.db\.locks"),
        rm.backend.lock("x"),
    ):
        pass
    rm.close()
