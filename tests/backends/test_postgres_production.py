"""PostgreSQL as production uses it (issue 8): many workers computing once, bounded
waits against a silent server, and lost advisory locks named, never ignored."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from results_flow import ResultsManager, SetBehavior
from results_flow.backends import PostgresBackend
from results_flow.backends.sql.pg_bounds import PgBounds
from results_flow.errors import (
    LockLostError,
    LockTimeoutError,
    StoreUnavailableError,
    UnsupportedStoreUrlError,
)
from results_flow.prefect import results_map, results_task, stores
from tests.backends import pg_workers
from tests.backends.models import Item
from tests.backends.pg_workers import IDS, Square

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
THREADS = 64
PROCESSES = 4
#: A hang guard, not a timed assertion: far above every bound these tests set.
HANG_GUARD = 120


@pytest.fixture
def pg_store(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Path]]:
    """The session database as the default store, and the body-run log.

    The URL is new for each test, so no manager cached by an earlier test (whose table
    the ``postgres_url`` fixture dropped) answers for it; it is closed after the test.
    """
    url = f"{postgres_url}?application_name=rf_{uuid.uuid4().hex[:8]}"
    calls = tmp_path / "calls.log"
    monkeypatch.setenv("RESULTS_FLOW_STORE", url)
    monkeypatch.setenv("RF_PG_CALLS", str(calls))
    yield url, calls
    cached = stores._managers.pop((os.getpid(), url), None)
    if cached is not None:
        cached.close()


def _admin(url: str) -> sa.Engine:
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))


def _lock_holder_pid(url: str, result_id: str) -> int:
    """The backend pid of the session holding the advisory lock of ``result_id``."""
    engine = _admin(url)
    try:
        with engine.connect() as conn:
            key = conn.execute(
                sa.text("SELECT hashtextextended(:id, 0)"), {"id": result_id}
            ).scalar_one()
            pids = conn.execute(
                sa.text(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND classid = CAST(:hi AS oid) AND objid = CAST(:lo AS oid)"
                    " AND objsubid = 1"
                ),
                {"hi": (key >> 32) & 0xFFFFFFFF, "lo": key & 0xFFFFFFFF},
            ).scalars()
            found = list(pids)
    finally:
        engine.dispose()
    if len(found) != 1:
        raise RuntimeError(f"expected one holder of {result_id!r}, found {found}")
    return found[0]


def _terminate(url: str, pid: int) -> None:
    engine = _admin(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    finally:
        engine.dispose()


def _in_thread(call: Callable[[], Any]) -> BaseException | None:
    """Run ``call`` in a thread and return what it raised (None if nothing); a call
    still blocked after HANG_GUARD seconds fails the test instead of hanging it."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_GUARD)
    if thread.is_alive():
        pytest.fail(f"call still blocked after {HANG_GUARD}s")
    return outcome[0]


# --- item 1: compute-once locks never starve the pool --------------------------------


@pytest.mark.slow
def test_64_threads_and_4_processes_compute_each_of_200_ids_once(
    pg_store: tuple[str, Path], tmp_path: Path
) -> None:
    """Regression: each held lock kept a pooled connection, so 24 threads already ran
    the store's pool dry ("QueuePool limit of size 5 overflow 10 reached")."""
    _, calls = pg_store
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    env["RF_PG_SLEEP"] = "0.01"
    os.environ["RF_PG_SLEEP"] = "0.01"
    go = tmp_path / "go"
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.backends.pg_workers", str(go), str(1000 + p)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(PROCESSES)
    ]
    try:
        with ThreadPoolExecutor(THREADS) as pool:
            barrier = threading.Barrier(THREADS)

            def worker(seed: int) -> list[Square]:
                barrier.wait()
                if seed == 0:
                    go.touch()
                return pg_workers.ask_all(seed)

            results = list(pool.map(worker, range(THREADS)))
        for process in workers:
            out, err = process.communicate(timeout=600)
            assert process.returncode == 0, err[-3000:]
            assert "200 results, 0 wrong" in out
    finally:
        os.environ.pop("RF_PG_SLEEP", None)
        for process in workers:
            if process.poll() is None:
                process.kill()
    counts = Counter(calls.read_text().split())
    assert counts == Counter({str(n): 1 for n in IDS})
    for answers in results:
        assert [(r.n, r.square) for r in answers] == [(n, n * n) for n in IDS]
        # Every worker sees the one stored result, whoever computed it.
        assert [r.pid for r in answers] == [r.pid for r in results[0]]


def test_results_map_over_40_items_on_the_default_thread_pool(
    pg_store: tuple[str, Path], prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: 40 concurrent lock holders on the default ThreadPoolTaskRunner
    failed "26 of 40 submitted runs did not complete"."""
    from prefect import flow

    monkeypatch.setenv("RF_PG_SLEEP", "0.5")  # all 40 hold their lock at once

    @flow
    def squares() -> list[int]:
        report = results_map(pg_workers.square, list(range(40)))
        return [r.square for r in report.results]

    assert squares() == [n * n for n in range(40)]
    assert squares() == [n * n for n in range(40)]
    counts = Counter(pg_store[1].read_text().split())
    assert counts == Counter({str(n): 1 for n in range(40)})


# --- item 3: a lost advisory lock is named, and never lets a second write win ---------


@pytest.mark.parametrize("task", ["held_square", "held_overwrite"])
def test_a_lost_lock_refuses_the_late_write_and_keeps_the_first_result(
    pg_store: tuple[str, Path], task: str
) -> None:
    """Regression: after pg_terminate_backend the body ran twice, the late writer's
    result could replace the first, and both failed at exit with a raw driver error."""
    url, _ = pg_store
    held = getattr(pg_workers, task)
    result_id = held.result_id(7, "first")
    pg_workers.started.clear()
    pg_workers.proceed.clear()
    first: list[BaseException | Square] = []

    def first_writer() -> None:
        try:
            first.append(held.fn(7, "first"))
        except BaseException as exc:
            first.append(exc)

    thread = threading.Thread(target=first_writer, daemon=True)
    thread.start()
    assert pg_workers.started.wait(HANG_GUARD)
    _terminate(url, _lock_holder_pid(url, result_id))
    # Another worker (its own lock sessions: a process shares them per URL, and this
    # one's thread still holds the ID's in-process gate) takes the freed lock and stores.
    with (
        ResultsManager.from_url(f"{url}&connect_timeout=11") as other,
        other.lock(result_id, timeout=HANG_GUARD) as taken,
    ):
        assert other.set(result_id, Square(n=7, square=49, pid=1), lock=taken)
    pg_workers.proceed.set()
    thread.join(HANG_GUARD)
    assert len(first) == 1
    assert isinstance(first[0], LockLostError), first[0]
    assert result_id in str(first[0])
    with ResultsManager.from_url(url) as rm:
        assert rm.get(result_id, Square).pid == 1


def test_a_lock_lost_with_nothing_written_raises_lock_lost_at_exit(postgres_url: str) -> None:
    with ResultsManager.from_url(postgres_url) as rm:
        with pytest.raises(LockLostError, match="lost/plain"), rm.lock("lost/plain"):
            _terminate(postgres_url, _lock_holder_pid(postgres_url, "lost/plain"))
        with rm.lock("lost/plain", timeout=5):  # free again: the server dropped it
            pass


def test_a_lock_lost_while_its_body_fails_lets_the_body_error_through(
    postgres_url: str,
) -> None:
    def body() -> None:
        _terminate(postgres_url, _lock_holder_pid(postgres_url, "lost/body"))
        raise KeyError("body")

    with ResultsManager.from_url(postgres_url) as rm:  # noqa: SIM117
        with pytest.raises(KeyError, match="body"), rm.lock("lost/body"):
            body()


def test_writes_through_a_held_lock_run_in_the_lock_session(postgres_url: str) -> None:
    with ResultsManager.from_url(postgres_url) as rm, rm.lock("held/item") as held:
        assert held.fences_writes
        assert rm.set("held/item", Item(index=1, writer="a"), lock=held)
        rm.set("held/item", Item(index=2, writer="a"), SetBehavior.OVERWRITE, lock=held)
        assert rm.get("held/item", Item).index == 2
        assert rm.delete("held/item", lock=held)
        assert rm.set("held/other", Item(index=3, writer="a"))  # not locked: the pool
        with pytest.raises(ValueError, match="held/other"):
            rm.set("held/other", Item(index=4, writer="a"), SetBehavior.OVERWRITE, lock=held)
        # The lock's session ends: its writes are refused, nothing is written.
        _terminate(postgres_url, _lock_holder_pid(postgres_url, "held/item"))
        with pytest.raises(LockLostError, match="held/item"):
            rm.set("held/item", Item(index=5, writer="a"), lock=held)
    with ResultsManager.from_url(postgres_url) as rm:
        assert rm.list_ids("held") == ["held/other"]


def test_a_blocked_lock_gives_up_with_lock_timeout_error(postgres_url: str) -> None:
    with ResultsManager.from_url(postgres_url) as rm, rm.lock("busy/one"):
        other = ResultsManager.from_url(postgres_url)
        try:
            with pytest.raises(LockTimeoutError, match="busy/one"), other.lock("busy/one", 0.3):
                pass
            with pytest.raises(LockTimeoutError), other.lock("busy/one", 0):
                pass
        finally:
            other.close()


async def test_the_async_results_task_releases_its_lock_when_the_body_fails(
    pg_store: tuple[str, Path],
) -> None:
    """Regression: the async path released the lock with no exception info."""
    url, _ = pg_store

    @results_task(name="async_fails")
    async def async_fails(n: int) -> Square:
        raise RuntimeError(f"body {n} failed")

    with pytest.raises(RuntimeError, match="body 3 failed"):
        await async_fails.fn(3)
    with ResultsManager.from_url(url) as rm, rm.lock(async_fails.result_id(3), timeout=5):
        pass

    @results_task(name="async_ok")
    async def async_ok(n: int) -> Square:
        return Square(n=n, square=n * n, pid=2)

    assert (await async_ok.fn(4)).square == 16


# --- item 2: no call blocks forever --------------------------------------------------


class SilentProxy:
    """A loopback TCP proxy to the real server that can fall silent: it then accepts
    connections and reads what comes, but never answers."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.silent = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self._sockets: list[socket.socket] = [self.server]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self._sockets.append(client)
            if self.silent.is_set():
                continue  # accepted, never answered
            upstream = socket.create_connection(self.upstream)
            self._sockets.append(upstream)
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if not self.silent.is_set():
                    target.sendall(data)

    def close(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port that accepts TCP connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0), backlog=64)
    yield server.getsockname()[1]
    server.close()


def test_opening_a_store_on_a_silent_server_fails_within_the_connect_timeout(
    silent_server: int,
) -> None:
    url = f"postgresql://app:S3cretPW@127.0.0.1:{silent_server}/results?connect_timeout=2"
    error = _in_thread(lambda: ResultsManager.from_url(url))
    assert isinstance(error, StoreUnavailableError), error
    assert "S3cretPW" not in str(error)


def test_the_cli_on_a_silent_server_fails_with_one_line(silent_server: int) -> None:
    url = f"postgresql://postgres@127.0.0.1:{silent_server}/results?connect_timeout=2"
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    done = subprocess.run(
        [Path(sys.executable).parent / "results-flow", "ls", "--store", url],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "127.0.0.1" in done.stderr + done.stdout


def test_get_on_a_server_fallen_silent_fails_within_the_bounds(postgres_url: str) -> None:
    parsed = sa.engine.make_url(postgres_url)
    proxy = SilentProxy((parsed.host or "127.0.0.1", parsed.port or 5432))
    try:
        url = parsed.set(port=proxy.port).render_as_string(hide_password=False)
        with ResultsManager.from_url(f"{url}?connect_timeout=2") as rm:
            rm.set("silent/a", Item(index=1, writer="a"))
            assert rm.get("silent/a", Item).index == 1
            proxy.silent.set()
            backend = rm.backend
            assert isinstance(backend, PostgresBackend)
            backend.engine.dispose()  # its connections are gone; new ones meet silence
            error = _in_thread(lambda: rm.get("silent/a", Item))
            assert isinstance(error, StoreUnavailableError), error
            error = _in_thread(lambda: rm.list_ids())
            assert isinstance(error, StoreUnavailableError), error
    finally:
        proxy.close()


def test_a_statement_past_the_statement_timeout_is_store_unavailable(postgres_url: str) -> None:
    with ResultsManager.from_url(postgres_url) as rm:
        rm.set("slow/a", Item(index=1, writer="a"))
    blocker = _admin(postgres_url)
    try:
        with blocker.connect() as conn:
            conn.execute(sa.text("LOCK TABLE results_flow_records IN ACCESS EXCLUSIVE MODE"))
            rm = ResultsManager(backend=PostgresBackend(postgres_url, statement_timeout=0.5))
            try:
                error = _in_thread(lambda: rm.get("slow/a", Item))
            finally:
                rm.close()
            conn.rollback()
    finally:
        blocker.dispose()
    assert isinstance(error, StoreUnavailableError), error
    assert "statement timeout" in str(error)


def test_calls_survive_pooled_connections_the_server_ended(postgres_url: str) -> None:
    """Issue 12 item 2: no pre-ping, so a pooled connection that died (a server restart,
    an idle timeout) fails its first use; every call gets one fresh connection instead."""
    name = f"rf_{uuid.uuid4().hex[:8]}"
    with ResultsManager.from_url(f"{postgres_url}?application_name={name}") as rm:
        rm.set("gone/a", Item(index=1, writer="a"))
        calls: dict[str, Callable[[], object]] = {
            "get": lambda: rm.get("gone/a", Item).index,
            "exists": lambda: rm.exists("gone/a"),
            "get_many": lambda: sorted(rm.get_many(["gone/a", "gone/b"], Item)),
            "list_ids": lambda: rm.list_ids("gone"),
            "set": lambda: rm.set("gone/b", Item(index=2, writer="b")),
        }
        found = {}
        for call_name, call in calls.items():
            admin = _admin(postgres_url)
            try:
                with admin.connect() as conn:
                    ended = conn.execute(
                        sa.text(
                            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                            " WHERE application_name = :name"
                        ),
                        {"name": name},
                    ).scalar_one()
            finally:
                admin.dispose()
            assert ended >= 1, call_name  # the store's pooled connection is gone
            found[call_name] = call()
    assert found == {
        "get": 1,
        "exists": True,
        "get_many": ["gone/a"],
        "list_ids": ["gone/a"],
        "set": True,
    }


def test_bounds_come_from_the_url_or_keywords_and_reject_nonsense() -> None:
    url = sa.engine.make_url("postgresql+psycopg://u@h/db?connect_timeout=3&sslmode=disable")
    bounds, rest = PgBounds.from_url(url, statement_timeout=5)
    assert (bounds.connect_timeout, bounds.statement_timeout) == (3.0, 5.0)
    assert dict(rest.query) == {"sslmode": "disable"}
    args = bounds.psycopg_connect_args()
    assert args["connect_timeout"] == 3
    assert args["options"] == "-c statement_timeout=5000 -c TimeZone=UTC"
    assert args["keepalives"] == 1
    default, _ = PgBounds.from_url(sa.engine.make_url("postgresql://u@h/db"))
    assert (default.connect_timeout, default.statement_timeout) == (10.0, 60.0)
    async_args = bounds.asyncpg_connect_args()
    assert async_args["timeout"] == 3.0
    assert async_args["server_settings"] == {"statement_timeout": "5000", "TimeZone": "UTC"}
    with pytest.raises(UnsupportedStoreUrlError, match="connect_timeout"):
        PgBounds.from_url(sa.engine.make_url("postgresql://u:pw@h/db?connect_timeout=soon"))
