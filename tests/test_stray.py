"""Cleaning a file store of the temporary files killed writers leave (``gc --stray``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest

from results_flow import FileBackend, MemoryBackend, Record, stray
from results_flow import maintenance as mt
from results_flow.errors import MaintenanceError
from tests.test_cli import run

#: Writes one record and hangs in the fsync of its temporary file, before the rename.
HANGING_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from results_flow import FileBackend, Record

    store, ready = sys.argv[1], Path(sys.argv[2])

    def hang(fd):
        ready.touch()
        time.sleep(3600)

    os.fsync = hang
    FileBackend(store).insert("runs/r1/half", Record("Sample", "stray", '{"n": 1}'))
    """
)

HOURS_AGO = time.time() - 2 * 3600


def killed_writer_temp(root: Path, tmp_path: Path) -> Path:
    """Start a real writer, SIGKILL it between write and rename; its temp file."""
    ready = tmp_path / "ready"
    writer = subprocess.Popen(
        [sys.executable, "-c", HANGING_WRITER, str(root), str(ready)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert writer.poll() is None, "the writer ended before it hung"
            assert time.monotonic() < deadline, "the writer never reached its fsync"
            time.sleep(0.05)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(60)
    (temp,) = (root / "runs" / "r1").glob(".half.json.*.tmp")
    return temp


def age(path: Path) -> None:
    os.utime(path, (HOURS_AGO, HOURS_AGO), follow_symlinks=False)


def foreign_files(root: Path, outside: Path) -> list[Path]:
    """Files the store did not write, all old, some named almost like its temp files."""
    made = {
        "notes.txt": "mine",
        ".env": "SECRET=1",
        "raw/input.csv": "a,b",
        ".git/.x.json.abcdefgh.tmp": "git's",  # a hidden folder is never the store's
        "runs/.UP.json.ABCDEFGH.tmp": "not mkstemp's alphabet",
        "runs/.a.json.abc.tmp": "not 8 random characters",
        "runs/.a.txt.abcdefgh.tmp": "not a record's temp file",
        "runs/x.json/.a.json.abcdefgh.tmp": "not in a record folder",
    }
    paths = []
    for name, text in made.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        paths.append(path)
    link = root / "runs" / ".l.json.abcdefgh.tmp"
    link.symlink_to(outside)
    fifo = root / "runs" / ".f.json.abcdefgh.tmp"
    os.mkfifo(fifo)
    undecodable = Path(
        os.fsdecode(os.fsencode(root / "runs") + b"/.r\xe9sum\xe9.json.abcdefgh.tmp")
    )
    undecodable.write_text("a name the store never writes")
    paths += [link, fifo, undecodable]
    for path in [*paths, outside]:
        age(path)
    return paths


def test_gc_stray_removes_only_a_killed_writers_old_temp_file(tmp_path: Path) -> None:
    """Regression (issue 13, item 7): verify listed such files, nothing removed them."""
    root = tmp_path / "store"
    backend = FileBackend(root)
    backend.insert("runs/r1/done", Record("Sample", "stray", '{"n": 0}'))
    temp = killed_writer_temp(root, tmp_path)
    outside = tmp_path / "outside.txt"
    outside.write_text("not the store's")
    foreign = foreign_files(root, outside)
    url = f"file://{root}"

    assert str(temp) in mt.verify(backend).orphans
    young = run("gc", "--stray", "--yes", "--store", url)
    assert (young.code, "removed 0 stray temporary file(s) older than 1 hour" in young.out) == (
        0,
        True,
    )
    assert temp.exists()  # a writer may still be at work on a fresh one

    age(temp)
    refused = run("gc", "--stray", "--store", url)  # no answer on stdin means no
    assert (refused.code, "Delete 1 stray temporary file(s)" in refused.err) == (1, True)
    assert temp.exists()
    cleaned = json.loads(run("gc", "--stray", "--yes", "--json", "--store", url).out)
    assert cleaned["stray"] == {"location": url, "removed": 1, "kept": 0}
    assert cleaned["records"] is None
    assert not temp.exists()
    assert all(os.path.lexists(path) for path in foreign)
    assert outside.read_text() == "not the store's"
    assert backend.list_ids() == ["runs/r1/done"]


def test_plan_and_remove_stray_from_python(tmp_path: Path) -> None:
    root = tmp_path / "store"
    FileBackend(root)
    temp = root / "a" / ".b.json.k2j4_9xq.tmp"
    temp.parent.mkdir()
    temp.write_text("half")
    assert stray.plan_stray(FileBackend(root)).paths == []  # too young
    plan = stray.plan_stray(FileBackend(root), timedelta(0))
    assert plan.paths == [str(temp)]
    temp.write_text("rewritten after the plan")
    os.utime(temp, (time.time() + 60, time.time() + 60))  # touched after the cutoff
    assert stray.remove_stray(FileBackend(root), plan).kept == 1
    assert temp.exists()
    with pytest.raises(MaintenanceError, match="zero or more"):
        stray.plan_stray(FileBackend(root), timedelta(minutes=-1))
    with pytest.raises(MaintenanceError, match="planned for"):
        stray.remove_stray(MemoryBackend("other"), plan)
    assert stray.plan_stray(MemoryBackend()).paths == []
