"""SQLite compute-once locks: one byte of one kept-open lock file per ID (issue 9 item 5).

Guards what the per-ID lock files gave before: exclusion across threads and processes,
no wait between unrelated IDs, a killed holder freeing its IDs; and what they lacked: a
process keeps one descriptor and one lock file however many IDs it locks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from results_flow import ResultsManager
from results_flow.errors import LockTimeoutError, StoreUnavailableError


def _store(tmp_path: Path) -> ResultsManager:
    return ResultsManager.from_url(f"sqlite:///{tmp_path / 'results.db'}")


def _try_in_process(tmp_path: Path, rid: str) -> str:
    """Take ``rid``'s lock from another process: "acquired" or "timeout"."""
    script = f"""
from results_flow import ResultsManager
from results_flow.errors import LockTimeoutError
rm = ResultsManager.from_url({f"sqlite:///{tmp_path / 'results.db'}"!r})
try:
    with rm.backend.lock({rid!r}, timeout=0.3):
        print("acquired")
except LockTimeoutError:
    print("timeout")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_one_id_excludes_other_threads_and_other_ids_do_not_wait(tmp_path: Path) -> None:
    rm = _store(tmp_path)
    acquired: dict[str, float | None] = {}  # when each thread got in; None: timed out

    def take(rid: str, timeout: float, name: str) -> None:
        try:
            with rm.backend.lock(rid, timeout=timeout):
                acquired[name] = time.monotonic()
        except LockTimeoutError:
            acquired[name] = None

    calls = (("runs/a", 0.3, "a now"), ("runs/b", 0.3, "b"), ("runs/a", 30, "a later"))
    threads = [threading.Thread(target=take, args=args) for args in calls]
    with rm.backend.lock("runs/a"):
        for thread in threads:
            thread.start()
        threads[0].join()
        threads[1].join()
        released = time.monotonic()
    threads[2].join()
    assert acquired["a now"] is None
    assert acquired["b"] is not None and acquired["b"] < released
    assert acquired["a later"] is not None and acquired["a later"] >= released
    rm.close()


def test_two_stores_on_one_file_in_one_process_exclude_each_other(tmp_path: Path) -> None:
    one, two = _store(tmp_path), _store(tmp_path)
    with (
        one.backend.lock("a"),
        pytest.raises(LockTimeoutError),
        two.backend.lock("a", timeout=0.2),
    ):
        pass
    with two.backend.lock("a", timeout=0):
        pass
    one.close()
    two.close()


def test_another_process_waits_for_the_id_but_not_for_others(tmp_path: Path) -> None:
    rm = _store(tmp_path)
    with rm.backend.lock("runs/a"):
        assert _try_in_process(tmp_path, "runs/a") == "timeout"
        assert _try_in_process(tmp_path, "runs/b") == "acquired"
    assert _try_in_process(tmp_path, "runs/a") == "acquired"
    rm.close()


def test_a_killed_holder_frees_its_id(tmp_path: Path) -> None:
    script = f"""
import time
from results_flow import ResultsManager
rm = ResultsManager.from_url({f"sqlite:///{tmp_path / 'results.db'}"!r})
with rm.backend.lock("a"):
    print("in", flush=True)
    time.sleep(600)
"""
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "in\n"
        assert _try_in_process(tmp_path, "a") == "timeout"
    finally:
        holder.kill()
        holder.wait()
    assert _try_in_process(tmp_path, "a") == "acquired"


def test_a_forked_child_does_not_inherit_its_parents_locks(tmp_path: Path) -> None:
    rm = _store(tmp_path)
    with rm.backend.lock("a"):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit code
            try:
                with rm.backend.lock("a", timeout=0.2):
                    os._exit(1)  # the parent's lock did not exclude the child
            except LockTimeoutError:
                pass
            with rm.backend.lock("b", timeout=5):
                os._exit(0)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    rm.close()


def test_one_lock_file_and_descriptor_however_many_ids(tmp_path: Path) -> None:
    rm = _store(tmp_path)
    with rm.backend.lock("warm-up"):
        pass
    before = _open_descriptors()
    for n in range(2000):
        with rm.backend.lock(f"runs/{n % 30}/r{n}"):
            pass
    assert _open_descriptors() == before
    assert [p.name for p in (tmp_path / ".results.db.locks").iterdir()] == ["ids.lock"]
    rm.close()


def test_a_removed_lock_folder_is_made_again_and_still_excludes(tmp_path: Path) -> None:
    rm = _store(tmp_path)
    with rm.backend.lock("a"):
        pass
    shutil.rmtree(tmp_path / ".results.db.locks")
    with rm.backend.lock("a"):
        # A new process finds the new lock file, the one this process now locks.
        assert _try_in_process(tmp_path, "a") == "timeout"
    rm.close()


def test_a_lock_file_that_cannot_be_opened_is_named(tmp_path: Path) -> None:
    rm = _store(tmp_path)
    (tmp_path / ".results.db.locks").mkdir()
    (tmp_path / ".results.db.locks" / "ids.lock").mkdir()  # a folder where the file goes
    with (
        pytest.raises(StoreUnavailableError, match=r"lock file .*ids\.lock"),
        rm.backend.lock("x"),
    ):
        pass
    rm.close()
