"""Per-ID locks: OS file locks, exclusive across threads and processes and released
by the kernel when the holder dies, so a killed worker never blocks a later run; and
the bridge that holds a synchronous lock for an ``async with`` block."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import sqlalchemy as sa
from filelock import FileLock, Timeout

from results_flow.errors import LockTimeoutError


@contextlib.contextmanager
def id_file_lock(lock_dir: Path, result_id: str, timeout: float, location: str) -> Iterator[None]:
    """Hold the lock file of ``result_id`` in ``lock_dir`` for the ``with`` block.

    Raises:
        LockTimeoutError: not acquired within ``timeout`` seconds.
    """
    digest = hashlib.sha256(result_id.encode()).hexdigest()[:32]
    # One lock object per acquisition: flock() then excludes threads of this process too.
    file_lock = FileLock(lock_dir / f"{digest}.lock", is_singleton=False, thread_local=False)
    try:
        file_lock.acquire(timeout=timeout)
    except Timeout as exc:
        raise LockTimeoutError(
            f"lock on {result_id!r} in {location} not acquired within {timeout}s"
        ) from exc
    try:
        yield
    finally:
        file_lock.release()


def sqlite_lock_dir(database: str) -> Path:
    """The lock folder of a SQLite store: ``.<file name>.locks`` next to the database,
    so every process that opens the same file finds the same locks (created here)."""
    path = Path(database).resolve()
    lock_dir = path.parent / f".{path.name}.locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    return lock_dir


@contextlib.asynccontextmanager
async def held_in_thread(
    open_lock: Callable[[], contextlib.AbstractContextManager[None]],
) -> AsyncIterator[None]:
    """Hold the synchronous lock ``open_lock()`` for an ``async with`` block without
    blocking the event loop.

    One dedicated thread enters and exits the lock: locks that belong to the thread
    that took them (filelock's thread-local locks, ``threading.RLock``) are released
    by that same thread. A caller cancelled while waiting lets the thread release the
    lock as soon as it gets it.

    Raises:
        LockTimeoutError: not acquired within the lock's timeout.
    """
    loop = asyncio.get_running_loop()
    acquired: asyncio.Future[None] = loop.create_future()
    release = threading.Event()
    released: asyncio.Future[None] = loop.create_future()

    def settle(future: asyncio.Future[None], error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

    def hold() -> None:
        entered = False
        try:
            with open_lock():
                entered = True
                loop.call_soon_threadsafe(settle, acquired, None)
                release.wait()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task, not swallowed
            loop.call_soon_threadsafe(settle, released if entered else acquired, exc)
            return
        loop.call_soon_threadsafe(settle, released, None)

    thread = threading.Thread(target=hold, name="results_flow-lock", daemon=True)
    thread.start()
    try:
        await acquired
    except BaseException:
        release.set()  # cancelled or failed: the thread lets go as soon as it can
        raise
    try:
        yield
    finally:
        release.set()
        await asyncio.shield(released)


# PostgreSQL session-level advisory locks on a 64-bit hash of the ID: the server drops
# them when the holder's session dies.
TRY_ADVISORY_LOCK = sa.text("SELECT pg_try_advisory_lock(hashtextextended(:id, 0))")
ADVISORY_UNLOCK = sa.text("SELECT pg_advisory_unlock(hashtextextended(:id, 0))")
