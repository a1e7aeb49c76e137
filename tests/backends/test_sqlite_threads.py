"""SQLite connections per thread: released when the thread ends, all closed by close()."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from results_flow import Record, SqliteBackend

#: A long-lived worker that makes a fresh 8-thread pool per flow run, 100 runs, with
#: 256 descriptors. Each thread keeping its connection failed from about the 19th pool.
WORKER = textwrap.dedent(
    """
    import os, resource, sys
    from concurrent.futures import ThreadPoolExecutor
    from results_flow import Record, SqliteBackend

    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    backend = SqliteBackend(sys.argv[1])

    def work(run, item):
        result_id = f"runs/{run}/{item}"
        backend.insert(result_id, Record("Sample", "threads", '{"n": 1}'))
        backend.upsert(result_id, Record("Sample", "threads", '{"n": 2}'))
        if backend.read(result_id) is None or not backend.exists(result_id):
            raise SystemExit(f"{result_id} not read back")
        backend.read_many([result_id])
        backend.list_ids(f"runs/{run}")

    for run in range(100):
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(work, [run] * 16, range(16)))
    print(len(os.listdir("/proc/self/fd")))
    """
)


def test_short_lived_thread_pools_do_not_run_out_of_descriptors(tmp_path: Path) -> None:
    """Regression (issue 8, item 5): each ended thread's connection is closed."""
    done = subprocess.run(
        [sys.executable, "-c", WORKER, str(tmp_path / "results.db")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # 800 threads came and went; what stays open is SQLAlchemy's bounded pool and the like.
    assert int(done.stdout.split()[-1]) < 64


def open_files_under(folder: Path) -> list[str]:
    """Paths under ``folder`` this process holds open."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed while listing
            continue
        if target.startswith(str(folder)):
            found.append(target)
    return found


def test_close_closes_the_connections_of_threads_still_running(tmp_path: Path) -> None:
    backend = SqliteBackend(tmp_path / "results.db")
    backend.insert("a", Record("Sample", "threads", "{}"))
    opened = threading.Event()
    release = threading.Event()
    found: list[bool] = []

    def reader() -> None:
        found.append(backend.read("a") is not None)
        opened.set()
        release.wait(60)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        assert opened.wait(60)
        assert open_files_under(tmp_path)
        backend.close()
        assert open_files_under(tmp_path) == []
    finally:
        release.set()
        thread.join(60)
    assert found == [True]
