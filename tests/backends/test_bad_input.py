"""Bad input gets a named error that says what was wrong, and loses nothing stored."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from results_flow import (
    CorruptRecordError,
    FileBackend,
    InvalidResultIdError,
    ResultsFlowError,
    ResultsManager,
    SetBehavior,
    StoreUnavailableError,
    UnknownModelError,
    UnsupportedStoreUrlError,
)
from tests.backends.models import Person

JOHN = Person(name="John", age=30)

INVALID_IDS = [
    "../x",
    "a/../../etc",
    "/abs",
    "a//b",
    "",
    "a/./b",
    "a/b/",
    "a\x00b",
    "a\\b",
    "a\nb",
    ".hidden",
    "x" * 5000,
    ["a", ""],
    ["a/b"],
    [],
]


@pytest.mark.parametrize("bad_id", INVALID_IDS, ids=repr)
def test_invalid_ids_raise_and_touch_nothing(manager: ResultsManager, bad_id: str) -> None:
    manager.set("kept/one", JOHN)
    for call in (
        lambda: manager.set(bad_id, JOHN, SetBehavior.OVERWRITE),
        lambda: manager.get(bad_id),
        lambda: manager.exists(bad_id),
        lambda: manager.delete(bad_id),
        lambda: manager.list_ids(bad_id),
        lambda: manager.get_many(["kept/one", bad_id]),
    ):
        with pytest.raises(InvalidResultIdError) as info:
            call()
        assert isinstance(info.value, ValueError)
    assert manager.list_ids() == ["kept/one"]
    assert manager.get("kept/one") == JOHN


def test_invalid_id_message_names_the_segment() -> None:
    rm = ResultsManager("memory://")
    with pytest.raises(InvalidResultIdError, match=r"segment '\.\.' in result ID '\.\./x'"):
        rm.set("../x", JOHN)
    with pytest.raises(InvalidResultIdError, match="longer than 200 bytes"):
        rm.get("a/" + "y" * 5000)


def test_nothing_escapes_the_file_root(tmp_path: Path) -> None:
    rm = ResultsManager(tmp_path / "store")
    for bad in ("../escape", "a/../../escape", "/tmp/escape"):
        with pytest.raises(InvalidResultIdError):
            rm.set(bad, JOHN)
    assert not (tmp_path / "escape.json").exists()
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "store" / "link").symlink_to(outside)
    with pytest.raises(InvalidResultIdError, match="outside"):
        rm.set("link/x", JOHN)
    assert list(outside.iterdir()) == []


def test_file_backend_refuses_folder_segment_that_collides_with_a_record(tmp_path: Path) -> None:
    rm = ResultsManager(tmp_path)
    rm.set("a", JOHN)
    with pytest.raises(InvalidResultIdError, match="a.json"):
        rm.set("a.json/b", JOHN)
    assert rm.get("a") == JOHN


def test_corrupt_file_names_its_path_and_others_stay_readable(tmp_path: Path) -> None:
    rm = ResultsManager(tmp_path)
    rm.set("good", JOHN)
    rm.set("bad", JOHN)
    path = FileBackend(tmp_path).path_for("bad")
    path.write_text('{"format": "results_flow/1", "model_type": "Per')
    with pytest.raises(CorruptRecordError, match=str(path)):
        rm.get("bad")
    assert rm.get("good") == JOHN
    assert rm.list_ids() == ["bad", "good"]


def test_foreign_json_file_names_its_path(tmp_path: Path) -> None:
    rm = ResultsManager(tmp_path)
    rm.set("good", JOHN)
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"name": "John", "age": 30}')
    with pytest.raises(CorruptRecordError, match=r"foreign\.json.*not a results_flow record"):
        rm.get("foreign")
    assert rm.get("good") == JOHN


def test_record_of_unregistered_type_names_tag_and_namespace(tmp_path: Path) -> None:
    rm = ResultsManager(tmp_path)
    rm.set("good", JOHN)
    text = FileBackend(tmp_path).path_for("good").read_text().replace('"Person"', '"Ghost"')
    FileBackend(tmp_path).path_for("ghost").write_text(text)
    with pytest.raises(UnknownModelError, match=r"'ghost'.*'Ghost'.*'default'"):
        rm.get("ghost")
    assert rm.get("good") == JOHN


@pytest.mark.parametrize(
    "url",
    ["ftp://host/x", "redis://localhost", "mysql://root@localhost/test", "sqlite://", "   "],
)
def test_unknown_or_unusable_url_is_named(url: str) -> None:
    with pytest.raises(UnsupportedStoreUrlError) as info:
        ResultsManager.from_url(url)
    assert url.strip() in str(info.value) or "non-empty" in str(info.value)


def test_unreachable_postgres_names_the_url_without_password() -> None:
    url = "postgresql://user:secret@127.0.0.1:1/results"
    with pytest.raises(StoreUnavailableError, match=r"127\.0\.0\.1:1/results") as info:
        ResultsManager.from_url(url)
    assert "secret" not in str(info.value)


def test_unopenable_sqlite_file_is_named(tmp_path: Path) -> None:
    not_a_db = tmp_path / "junk.db"
    not_a_db.write_bytes(b"this is not a database file at all" * 100)
    with pytest.raises(ResultsFlowError, match="junk.db"):
        ResultsManager.from_url(f"sqlite:///{not_a_db}")


def test_sqlite_driver_errors_are_mapped_to_named_errors(tmp_path: Path) -> None:
    """The one mapping helper turns a locked database into StoreBusyError."""
    from results_flow import SqliteBackend, StoreBusyError

    db = tmp_path / "busy.db"
    backend = SqliteBackend(db, busy_timeout=0.2)
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        rm = ResultsManager(backend=backend)
        with pytest.raises(StoreBusyError, match="busy.db"):
            rm.set("x", JOHN)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert ResultsManager(backend=backend).set("x", JOHN) is True


OUT_OF_DESCRIPTORS = """
import os, resource, sys
from pydantic import BaseModel
from results_flow import ResultsManager, StoreUnavailableError

class P(BaseModel):
    x: int

rm = ResultsManager(sys.argv[1])
rm.set("kept", P(x=1))
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
held = []
try:
    while True:
        held.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    pass
try:  # a new store: new connections, and no descriptor for them
    ResultsManager(sys.argv[1]).set("new", P(x=2))
except StoreUnavailableError as exc:
    print(exc)
for fd in held:
    os.close(fd)
print(rm.get("kept", P).x, ResultsManager(sys.argv[1]).exists("new"))
"""


def test_a_process_out_of_file_descriptors_is_told_so_and_loses_nothing(tmp_path: Path) -> None:
    """SQLite says only "unable to open database file"; the error adds why."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    done = subprocess.run(
        [sys.executable, "-c", OUT_OF_DESCRIPTORS, url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert "no file descriptor left (EMFILE)" in lines[0] and "r.db" in lines[0], done.stdout
    assert lines[1] == "1 False"


def test_a_sqlite_store_whose_folder_is_a_file_is_named(tmp_path: Path) -> None:
    """It was a FileExistsError traceback from mkdir."""
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(StoreUnavailableError, match="cannot create the folder of the SQLite"):
        ResultsManager(f"sqlite:///{tmp_path / 'afile' / 'x.db'}")


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_sqlite_file_removed_under_an_open_store_fails_the_next_write(
    tmp_path: Path, how: str
) -> None:
    """SQLite went on writing to the unlinked file: acknowledged writes were lost."""
    db = tmp_path / "r.db"
    rm = ResultsManager(f"sqlite:///{db}")
    rm.set("a", Person(name="a", age=1))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    if how == "replaced":
        ResultsManager(f"sqlite:///{db}").set("other", Person(name="o", age=2))
    with pytest.raises(StoreUnavailableError, match="removed or replaced while this store"):
        rm.set("b", Person(name="b", age=2))
