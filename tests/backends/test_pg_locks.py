"""PostgreSQL locks you write through (issue 20 items 1, 2, 4, 5, 6), on the real server,
through both APIs: many holders on the default pool, a lost lock never overwriting, lock
sessions that outlive idle timeouts, a bounded number of lock sessions per process, and a
client-side bound on a connection whose path stalls."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from results_flow import AsyncResultsManager, ResultsManager, SetBehavior
from results_flow.backends.locks import id_hash
from results_flow.errors import LockLostError, LockTimeoutError, StoreUnavailableError
from results_flow.settings import PG_LOCK_SESSIONS
from tests.backends.models import Item
from tests.backends.pg_workers import IDS
from tests.backends.test_postgres_production import (
    HANG_GUARD,
    ROOT,
    SilentProxy,
    _in_thread,
    _lock_holder_pid,
    _terminate,
)
from tests.conftest import PG_ADMIN_URL

pytestmark = pytest.mark.postgres

APIS = ["sync", "async"]
HOLDERS = 24


def _worker(url: str, number: int) -> str:
    """``url`` as worker ``number`` opens it: spelled differently (its connect timeout),
    so it gets lock sessions of its own (a process shares them per URL and bounds), as a
    worker in another process does. asyncpg takes no application_name in the URL."""
    return f"{url}?connect_timeout={10 + number}"


@contextlib.contextmanager
def _database(*settings: str, role: str | None = None) -> Iterator[str]:
    """A database of its own (owned by ``role`` when given, who then connects), with
    ``ALTER DATABASE ... SET`` ``settings``; dropped after."""
    name = f"rf_lock_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"' + (f' OWNER "{role}"' if role else "")))
        for setting in settings:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" SET {setting}'))
    url = sa.engine.make_url(PG_ADMIN_URL).set(drivername="postgresql", database=name)
    if role:
        url = url.set(username=role, password=None)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --- item 1: many async (and sync) holders on the store's default pool -------------------


def _hold_sync(rm: ResultsManager, index: int, barrier: threading.Barrier) -> None:
    result_id = f"many/{index}"
    with rm.lock(result_id) as held:
        barrier.wait(HANG_GUARD)  # every holder holds its lock at once
        assert rm.get_many([f"many/{i}" for i in range(HOLDERS)], Item) is not None
        assert not rm.exists(result_id)
        assert rm.set(result_id, Item(index=index, writer="sync"), lock=held)
        assert rm.get(result_id, Item).index == index


async def _hold_async(rm: AsyncResultsManager, index: int, barrier: asyncio.Barrier) -> None:
    result_id = f"many/{index}"
    async with rm.lock(result_id) as held:
        await asyncio.wait_for(barrier.wait(), HANG_GUARD)
        assert await rm.get_many([f"many/{i}" for i in range(HOLDERS)], Item) is not None
        assert not await rm.exists(result_id)
        assert await rm.set(result_id, Item(index=index, writer="async"), lock=held)
        assert (await rm.get(result_id, Item)).index == index


@pytest.mark.parametrize("api", APIS)
async def test_24_holders_read_and_write_on_the_default_pool(postgres_url: str, api: str) -> None:
    """Regression (item 1): async holders kept connections of the store's own pool, and
    10 to 21 of 24 failed with "QueuePool limit" after 30 s."""
    if api == "sync":
        with ResultsManager.from_url(postgres_url) as rm:
            barrier = threading.Barrier(HOLDERS)
            with ThreadPoolExecutor(HOLDERS) as pool:
                futures = [pool.submit(_hold_sync, rm, i, barrier) for i in range(HOLDERS)]
                errors = [f.exception(HANG_GUARD) for f in futures]
            stored = rm.list_ids("many")
    else:
        async with AsyncResultsManager.from_url(postgres_url) as arm:
            abarrier = asyncio.Barrier(HOLDERS)
            outcomes = await asyncio.gather(
                *(_hold_async(arm, i, abarrier) for i in range(HOLDERS)), return_exceptions=True
            )
            errors = [o for o in outcomes if isinstance(o, BaseException)]
            stored = await arm.list_ids("many")
    assert [e for e in errors if e is not None] == []
    assert len(stored) == HOLDERS


# --- item 2: a lost lock never overwrites, and leaving it raises no driver error ---------


@pytest.mark.parametrize("api", APIS)
async def test_a_lost_lock_refuses_the_late_write_and_keeps_the_other_workers(
    postgres_url: str, api: str
) -> None:
    """Regression (item 2): after the holder's lock session was terminated and another
    worker stored its result, the async holder overwrote it, and leaving the lock raised
    a raw ``sqlalchemy.exc.InterfaceError``."""
    first, second = _worker(postgres_url, 1), _worker(postgres_url, 2)
    result_id = f"lost/{api}"
    if api == "sync":
        with ResultsManager.from_url(first) as rm, ResultsManager.from_url(second) as other:
            # The late write raises; leaving the lock must raise nothing else.
            with pytest.raises(LockLostError, match=result_id), rm.lock(result_id) as held:  # noqa: PT012
                _terminate(postgres_url, _lock_holder_pid(postgres_url, result_id))
                with other.lock(result_id, timeout=HANG_GUARD) as taken:
                    other.set(result_id, Item(index=2, writer="second"), lock=taken)
                rm.set(result_id, Item(index=1, writer="first"), SetBehavior.OVERWRITE, lock=held)
            kept = other.get(result_id, Item)
    else:
        async with (
            AsyncResultsManager.from_url(first) as arm,
            AsyncResultsManager.from_url(second) as aother,
        ):
            with pytest.raises(LockLostError, match=result_id):  # noqa: PT012
                async with arm.lock(result_id) as aheld:
                    _terminate(postgres_url, _lock_holder_pid(postgres_url, result_id))
                    async with aother.lock(result_id, timeout=HANG_GUARD) as ataken:
                        await aother.set(result_id, Item(index=2, writer="second"), lock=ataken)
                    late = Item(index=1, writer="first")
                    await arm.set(result_id, late, SetBehavior.OVERWRITE, lock=aheld)
            kept = await aother.get(result_id, Item)
    assert kept.writer == "second"


@pytest.mark.parametrize("api", APIS)
async def test_a_lock_lost_with_nothing_written_says_so_on_leaving(
    postgres_url: str, api: str
) -> None:
    result_id = f"lost/quiet/{api}"
    if api == "sync":
        with ResultsManager.from_url(postgres_url) as rm:
            with pytest.raises(LockLostError, match=result_id), rm.lock(result_id):
                _terminate(postgres_url, _lock_holder_pid(postgres_url, result_id))
            with rm.lock(result_id, timeout=5):  # a new session takes it
                pass
    else:
        async with AsyncResultsManager.from_url(postgres_url) as arm:
            with pytest.raises(LockLostError, match=result_id):
                async with arm.lock(result_id):
                    _terminate(postgres_url, _lock_holder_pid(postgres_url, result_id))
            async with arm.lock(result_id, timeout=5):
                pass


# --- item 4: lock sessions outlive idle timeouts ------------------------------------------


@pytest.mark.parametrize("api", APIS)
async def test_a_lock_held_past_idle_session_timeout_still_holds(api: str) -> None:
    """Regression (item 4): on a database with ``idle_session_timeout``, a holder idle
    past it lost its lock, both workers computed, and both ended in ``LockLostError``."""
    settings = ("idle_session_timeout = '1s'", "idle_in_transaction_session_timeout = '1s'")
    with _database(*settings) as url:
        first, second = _worker(url, 1), _worker(url, 2)
        with ResultsManager.from_url(second) as other:
            if api == "sync":
                with ResultsManager.from_url(first) as rm, rm.lock("idle/x") as held:
                    time.sleep(3)  # idle three times the server's idle timeout
                    with pytest.raises(LockTimeoutError), other.lock("idle/x", timeout=0):
                        pass
                    assert rm.set("idle/x", Item(index=1, writer="first"), lock=held)
            else:
                async with (
                    AsyncResultsManager.from_url(first) as arm,
                    arm.lock("idle/x") as aheld,
                ):
                    await asyncio.sleep(3)
                    with pytest.raises(LockTimeoutError), other.lock("idle/x", timeout=0):
                        pass
                    assert await arm.set("idle/x", Item(index=1, writer="first"), lock=aheld)
            assert other.get("idle/x", Item).writer == "first"


# --- item 5: held locks cost a bounded number of sessions per process --------------------

PROCESSES = 4
THREADS = 64
#: Connections the test's role may hold: the four processes' store pools (5 + 10 each)
#: and their lock sessions (``PG_LOCK_SESSIONS`` = 4 each) fit; a session per held lock
#: (up to 64 per process) does not, as on a 100-connection server shared by 4 such hosts.
ROLE_CONNECTIONS = 80


@pytest.fixture
def limited_role() -> Iterator[str]:
    """A login role that may hold ``ROLE_CONNECTIONS`` connections at once."""
    role = f"rf_lock_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT {ROLE_CONNECTIONS}'))
    try:
        yield role
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


@pytest.mark.slow  # about 2 minutes on 2 busy cores
def test_4_processes_of_64_threads_compute_each_of_200_ids_once_on_80_connections(
    limited_role: str, tmp_path: Path
) -> None:
    """Regression (item 5): each held (or awaited) lock kept a session of its own, and
    about 6% of calls failed with "too many clients"."""
    with _database(role=limited_role) as url:
        calls = tmp_path / "calls.log"
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            RESULTS_FLOW_STORE=url,
            RF_PG_CALLS=str(calls),
            RF_PG_SLEEP="0.01",
        )
        go = tmp_path / "go"
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.backends.pg_workers", str(go), str(p), str(THREADS)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for p in range(PROCESSES)
        ]
        try:
            go.touch()
            outputs = [process.communicate(timeout=600) for process in workers]
        finally:
            for process in workers:
                if process.poll() is None:
                    process.kill()
        for process, (out, err) in zip(workers, outputs, strict=True):
            assert process.returncode == 0, err[-3000:]
            assert f"{THREADS * len(IDS)} results, 0 wrong" in out
        assert Counter(calls.read_text().split()) == Counter({str(n): 1 for n in IDS})


# --- item 6: a call on a connection whose path stalls ends within a bound ----------------


@pytest.mark.parametrize("api", APIS)
def test_calls_on_a_connection_whose_path_stalls_fail_within_the_client_bound(
    postgres_url: str, api: str
) -> None:
    """Regression (item 6): through a path that stays up but stops delivering, ``get()``
    on an open connection never returned (keepalives stay quiet while the proxy's kernel
    acknowledges, and the statement timeout never reaches the server)."""
    parsed = sa.engine.make_url(postgres_url)
    proxy = SilentProxy((parsed.host or "127.0.0.1", parsed.port or 5432))
    url = parsed.set(port=proxy.port).render_as_string(hide_password=False)
    url += "?connect_timeout=2&statement_timeout=1"
    try:
        if api == "sync":
            with ResultsManager.from_url(url) as rm:
                rm.set("stall/a", Item(index=1, writer="a"))
                # Leaving a lock whose session was cut says it was lost.
                with pytest.raises(LockLostError), rm.lock("stall/held") as held:  # noqa: PT012
                    assert rm.get("stall/a", Item).index == 1
                    proxy.silent.set()  # open connections stay open; nothing gets through
                    error = _in_thread(lambda: rm.get("stall/a", Item))
                    assert isinstance(error, StoreUnavailableError), error
                    assert "did not answer within 6s" in str(error)
                    error = _in_thread(
                        lambda: rm.set("stall/held", Item(index=2, writer="a"), lock=held)
                    )
                    assert isinstance(error, LockLostError), error
        else:

            async def stalled() -> None:
                async with AsyncResultsManager.from_url(url) as arm:
                    await arm.set("stall/a", Item(index=1, writer="a"))
                    assert (await arm.get("stall/a", Item)).index == 1
                    proxy.silent.set()
                    with pytest.raises(StoreUnavailableError, match="did not answer within"):
                        await arm.get("stall/a", Item)

            error = _in_thread(lambda: asyncio.run(stalled()))
            assert error is None, error
    finally:
        proxy.close()


# --- lock sessions in a forked child ------------------------------------------------------


def _child_locks(url: str, result_id: str, answer: Any) -> None:
    """In a forked child: lock ``result_id`` and say which server session holds it."""
    with ResultsManager.from_url(url) as rm, rm.lock(result_id, timeout=0) as held:
        answer.put(_lock_holder_pid(url, result_id))
        assert rm.set(result_id, Item(index=2, writer="child"), lock=held)


def test_a_forked_child_opens_its_own_lock_sessions_and_leaves_the_parents(
    postgres_url: str,
) -> None:
    """A child must neither use the parent's lock sessions (two processes on one socket;
    and a session's locks are re-entrant) nor close them (the parent would lose its locks)."""
    # An ID whose lock the parent's session for "fork/x" would also take.
    other = next(
        f"fork/{n}"
        for n in range(100)
        if id_hash(f"fork/{n}") % PG_LOCK_SESSIONS == id_hash("fork/x") % PG_LOCK_SESSIONS
    )
    context = multiprocessing.get_context("fork")
    answer = context.Queue()
    with ResultsManager.from_url(postgres_url) as rm, rm.lock("fork/x") as held:
        parent_session = _lock_holder_pid(postgres_url, "fork/x")
        child = context.Process(target=_child_locks, args=(postgres_url, other, answer))
        child.start()
        child.join(HANG_GUARD)
        assert child.exitcode == 0
        assert answer.get(timeout=HANG_GUARD) != parent_session
        assert rm.set("fork/x", Item(index=1, writer="parent"), lock=held)
    with ResultsManager.from_url(postgres_url) as rm:
        assert rm.get(other, Item).writer == "child"


def test_a_lock_session_found_dead_is_replaced_and_its_locks_are_lost(postgres_url: str) -> None:
    """When a lock session ends, every lock it held is lost, and the next lock on its slot
    opens a new session (also with ``timeout=0``: one try on a fresh session)."""
    slot = id_hash("dead/x") % PG_LOCK_SESSIONS
    other = next(f"dead/{n}" for n in range(100) if id_hash(f"dead/{n}") % PG_LOCK_SESSIONS == slot)
    with ResultsManager.from_url(postgres_url) as rm:
        with pytest.raises(LockLostError, match="dead/x"), rm.lock("dead/x") as held:  # noqa: PT012
            _terminate(postgres_url, _lock_holder_pid(postgres_url, "dead/x"))
            with rm.lock(other, timeout=0) as taken:  # finds the session dead, opens another
                assert rm.set(other, Item(index=2, writer="other"), lock=taken)
            assert held.lost_reason() is not None
            rm.set("dead/x", Item(index=1, writer="x"), lock=held)
        assert rm.list_ids("dead") == [other]
