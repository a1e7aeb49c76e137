"""Per-ID OS locks: exclusive across threads and processes, released by the kernel
when the holder dies, so a killed worker never blocks a later run.

``RangeLocks`` locks one byte of a single lock file per ID, at an offset hashed from
the ID, so distinct IDs do not share a lock: nested locks on distinct IDs in several
processes cannot deadlock (striped lock files shared by unrelated IDs did, issue 20).
The offset has 62 bits: among n IDs locked at the same time, two share a byte with a
chance of about n²/2⁶³ (10⁻¹³ for a thousand, 10⁻⁷ for a million), negligible. A
process keeps one descriptor open per lock file however many IDs it locks.
``range_locks(path)`` gives this process's one ``RangeLocks`` of a file: the file store
locks its IDs in ``compute.lock`` and ``write.lock``, a SQLite store in ``ids.lock``
(``sqlite_id_lock``).

``held_in_thread`` holds any of these synchronous locks for an ``async with`` block.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from results_flow.errors import LockTimeoutError, StoreUnavailableError
from results_flow.settings import LOCK_POLL_SECONDS

T = TypeVar("T")


def lock_timed_out(result_id: str, location: str, timeout: float) -> LockTimeoutError:
    """The error of every per-ID lock not acquired in time."""
    return LockTimeoutError(f"lock on {result_id!r} in {location} not acquired within {timeout}s")


def id_hash(result_id: str) -> int:
    """A 64-bit hash of an ID: the same in every process, thread and run."""
    digest = hashlib.blake2b(result_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class RangeLocks:
    """Exclusive per-ID locks on bytes of one lock file, for every thread of this process
    (``range_locks`` keeps one object per file).

    POSIX record locks belong to the process, not the thread or the descriptor, so a
    thread waits here first while another thread of this process holds the same byte;
    the kernel drops a dead process's record locks. Closing any descriptor of the file
    would drop all of them, hence one descriptor per file per process, never closed but
    in a forked child (which holds none of its parent's locks).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._condition = threading.Condition()
        self._held: set[int] = set()  # the bytes this process's threads hold
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            opened = os.fstat(self._fd)
        except OSError as exc:
            raise self._unusable(exc) from exc
        self._identity = (opened.st_dev, opened.st_ino)

    def still_at_path(self) -> bool:
        """Whether the lock file is still the one at ``path`` (a removed lock folder, or a
        store deleted and made anew, gives other processes another file)."""
        try:
            now = os.stat(self.path)
        except OSError:
            return False
        return (now.st_dev, now.st_ino) == self._identity

    @contextlib.contextmanager
    def hold(self, result_id: str, timeout: float, location: str) -> Iterator[None]:
        """Hold ``result_id``'s lock for the ``with`` block.

        Raises:
            LockTimeoutError: not acquired within ``timeout`` seconds.
            StoreUnavailableError: the file system refuses record locks (names the file).
        """
        offset = id_hash(result_id) >> 2  # 62 bits: offset + 1 never overflows
        deadline = time.monotonic() + timeout
        with self._condition:
            while offset in self._held:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise lock_timed_out(result_id, location, timeout)
                self._condition.wait(remaining)
            self._held.add(offset)
        try:
            if not self._lock_byte(offset, deadline):
                raise lock_timed_out(result_id, location, timeout)
            try:
                yield
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, offset)
        finally:
            with self._condition:
                self._held.discard(offset)
                self._condition.notify_all()

    def _lock_byte(self, offset: int, deadline: float) -> bool:
        """Lock the byte at ``offset`` against other processes; False when still taken at
        ``deadline``. Polled, as a blocking lock cannot time out; the pause grows from a
        millisecond, so a short hold is not waited for as long as a long one."""
        pause = 0.001
        while True:
            try:
                fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
                return True
            except (BlockingIOError, PermissionError):  # EAGAIN or EACCES: taken
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                time.sleep(min(pause, remaining))
                pause = min(pause * 2, LOCK_POLL_SECONDS)
            except OSError as exc:
                raise self._unusable(exc) from exc

    def _unusable(self, exc: OSError) -> StoreUnavailableError:
        return StoreUnavailableError(f"cannot use the lock file {self.path}: {exc.strerror or exc}")

    def forget(self) -> None:
        """In a forked child: close the inherited descriptor (the parent's locks stay)."""
        with contextlib.suppress(OSError):
            os.close(self._fd)


class _LockFiles:
    """This process's one ``RangeLocks`` per lock file, and each SQLite database's file."""

    def __init__(self) -> None:
        self.guard = threading.Lock()
        self.by_file: dict[Path, RangeLocks] = {}
        self.sqlite_file: dict[str, Path] = {}  # absolute database path -> its lock file

    def locks(self, path: Path) -> RangeLocks:
        with self.guard:
            locks = self.by_file.get(path)
            if locks is not None and locks.still_at_path():
                return locks
            # First use here, or the file was removed (its folder too, perhaps): one that
            # is gone is left open (not leaked in practice), since a thread may still be
            # holding or unlocking on it.
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreUnavailableError(
                    f"cannot create the lock folder {path.parent}: {exc.strerror or exc}"
                ) from exc
            locks = self.by_file[path] = RangeLocks(path)
            return locks

    def of_sqlite(self, database: str) -> RangeLocks:
        key = os.path.abspath(database)
        path = self.sqlite_file.get(key)
        if path is None:
            path = self.sqlite_file[key] = sqlite_lock_dir(database) / "ids.lock"
        return self.locks(path)

    def forget(self) -> None:
        """In a forked child: the parent's descriptors and guard are not this process's."""
        self.guard = threading.Lock()
        for locks in self.by_file.values():
            locks.forget()
        self.by_file.clear()


_lock_files = _LockFiles()
os.register_at_fork(after_in_child=_lock_files.forget)


def range_locks(path: Path) -> RangeLocks:
    """This process's ``RangeLocks`` of the lock file ``path`` (an absolute path; the
    file and its folder are created on first use).

    Raises:
        StoreUnavailableError: the lock folder or file cannot be created (names it).
    """
    return _lock_files.locks(path)


def sqlite_id_lock(
    database: str, result_id: str, timeout: float, location: str
) -> contextlib.AbstractContextManager[None]:
    """The compute-once lock of ``result_id`` in the SQLite store ``database``: a byte of
    ``ids.lock`` in the store's lock folder (``sqlite_lock_dir``), a descriptor kept open.

    Raises:
        StoreUnavailableError: the lock folder or file cannot be created (names it).
    """
    return _lock_files.of_sqlite(database).hold(result_id, timeout, location)


def sqlite_lock_dir(database: str) -> Path:
    """The lock folder of a SQLite store: ``.<file name>.locks`` next to the database,
    so every process that opens the same file finds the same locks (created here).

    Raises:
        StoreUnavailableError: the folder cannot be created (names it).
    """
    path = Path(database).resolve()
    lock_dir = path.parent / f".{path.name}.locks"
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreUnavailableError(
            f"cannot create the lock folder {lock_dir}: {exc.strerror or exc}"
        ) from exc
    return lock_dir


@contextlib.asynccontextmanager
async def held_in_thread(
    open_lock: Callable[[], contextlib.AbstractContextManager[T]],
) -> AsyncIterator[T]:
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
    acquired: asyncio.Future[T] = loop.create_future()
    release = threading.Event()
    released: asyncio.Future[None] = loop.create_future()

    def settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)

    def tell(future: asyncio.Future[Any], error: BaseException | None) -> None:
        # A closed loop means the awaiting task is gone with it: nobody is left to tell.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, future, None, error)

    def hold() -> None:
        entered = False
        try:
            with open_lock() as handle:
                entered = True
                # Unguarded: if the loop is closed, the error leaves the lock at once.
                loop.call_soon_threadsafe(settle, acquired, handle, None)
                release.wait()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task, not swallowed
            tell(released if entered else acquired, exc)
            return
        tell(released, None)

    thread = threading.Thread(target=hold, name="results_flow-lock", daemon=True)
    thread.start()
    try:
        handle = await acquired
    except BaseException:
        release.set()  # cancelled or failed: the thread lets go as soon as it can
        raise
    try:
        yield handle
    finally:
        release.set()
        await asyncio.shield(released)
