"""Per-ID OS file locks: exclusive across threads and processes, released by the
kernel when the holder dies, so a killed worker never blocks a later run.

``StripedLocks`` keeps a fixed number of lock files (``stripe_of`` hashes an ID to one)
instead of one file per ID, so a store's lock folder never grows past ``STRIPES`` files.
Two IDs on one stripe only ever wait for each other across processes; inside a process
the stripe's file lock is shared by the threads that hold IDs on it, each ID excluded
by itself, so a thread that holds two IDs on one stripe never deadlocks on itself.

``RangeLocks`` (SQLite stores, through ``sqlite_id_lock``) locks one byte of a single
lock file per ID, at an offset hashed from the ID: unrelated IDs never wait for each
other, and a process keeps one descriptor open however many IDs it locks, instead of
opening, locking and closing a file per ID (a sixth of a chunked fill's time per item).

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

from filelock import FileLock, Timeout

from results_flow.errors import LockTimeoutError, StoreUnavailableError
from results_flow.settings import LOCK_POLL_SECONDS, LOCK_STRIPES

T = TypeVar("T")

#: Lock files per lock folder (``settings.LOCK_STRIPES``); tests read it here.
STRIPES = LOCK_STRIPES


def lock_timed_out(result_id: str, location: str, timeout: float) -> LockTimeoutError:
    """The error of every per-ID lock not acquired in time."""
    return LockTimeoutError(f"lock on {result_id!r} in {location} not acquired within {timeout}s")


def id_hash(result_id: str) -> int:
    """A 64-bit hash of an ID: the same in every process, thread and run."""
    digest = hashlib.blake2b(result_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def stripe_of(result_id: str, stripes: int = STRIPES) -> int:
    """The stripe an ID locks: the same in every process, thread and run."""
    return id_hash(result_id) % stripes


class _Stripe:
    """One lock file shared by this process's holders of IDs on it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.condition = threading.Condition()
        self.held: set[str] = set()
        self.acquiring = False
        self.file_lock = FileLock(path, is_singleton=False, thread_local=False)


class StripedLocks:
    """Exclusive per-ID locks over ``stripes`` lock files in ``lock_dir``."""

    def __init__(self, lock_dir: Path, location: str, stripes: int = STRIPES) -> None:
        self.lock_dir = lock_dir
        self.location = location
        self.stripes = stripes
        self._guard = threading.Lock()
        self._pid = os.getpid()
        self._table: dict[int, _Stripe] = {}

    @contextlib.contextmanager
    def hold(self, result_id: str, timeout: float) -> Iterator[None]:
        """Hold ``result_id``'s lock for the ``with`` block.

        Raises:
            LockTimeoutError: not acquired within ``timeout`` seconds.
            StoreUnavailableError: the lock file cannot be created or opened (names it).
        """
        stripe = self._stripe(stripe_of(result_id, self.stripes))
        self._acquire(stripe, result_id, timeout)
        try:
            yield
        finally:
            with stripe.condition:
                stripe.held.discard(result_id)
                if not stripe.held:
                    stripe.file_lock.release()
                stripe.condition.notify_all()

    def _stripe(self, number: int) -> _Stripe:
        with self._guard:
            if self._pid != os.getpid():
                # A forked child inherits the parent's table, whose flocks are not its own.
                self._pid, self._table = os.getpid(), {}
            stripe = self._table.get(number)
            if stripe is None:
                stripe = self._table[number] = _Stripe(self.lock_dir / f"{number}.lock")
            return stripe

    def _acquire(self, stripe: _Stripe, result_id: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with stripe.condition:
            # Another thread here holds this ID, or is taking the file lock for the stripe.
            while result_id in stripe.held or stripe.acquiring:
                remaining = deadline - time.monotonic()
                timed_out = remaining <= 0 or not stripe.condition.wait(remaining)
                if timed_out and (result_id in stripe.held or stripe.acquiring):
                    raise self._timeout(result_id, timeout)
            stripe.held.add(result_id)
            if len(stripe.held) > 1:
                return  # this process holds the stripe's file lock already
            stripe.acquiring = True
        try:
            _acquire_file(stripe.file_lock, max(0.0, deadline - time.monotonic()))
        except BaseException as exc:
            with stripe.condition:
                stripe.held.discard(result_id)
                stripe.acquiring = False
                stripe.condition.notify_all()
            if isinstance(exc, Timeout):
                raise self._timeout(result_id, timeout) from exc
            raise
        with stripe.condition:
            stripe.acquiring = False
            stripe.condition.notify_all()

    def _timeout(self, result_id: str, timeout: float) -> LockTimeoutError:
        return lock_timed_out(result_id, self.location, timeout)


def _acquire_file(file_lock: FileLock, timeout: float) -> None:
    """Take an OS file lock, naming its path when the file cannot be used.

    Raises:
        filelock.Timeout: not acquired in time.
        StoreUnavailableError: the lock file or its folder cannot be created or opened.
    """
    try:
        file_lock.acquire(timeout=timeout)
    except Timeout:
        raise
    except OSError as exc:
        raise StoreUnavailableError(
            f"cannot use the lock file {file_lock.lock_file}: {exc.strerror or exc}"
        ) from exc


class RangeLocks:
    """Exclusive per-ID locks on bytes of one lock file, for every thread of this process
    (``sqlite_id_lock`` keeps one object per file).

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


class _SqliteLockFiles:
    """This process's ``RangeLocks`` per SQLite lock file, and each database path's file."""

    def __init__(self) -> None:
        self.guard = threading.Lock()
        self.by_file: dict[Path, RangeLocks] = {}
        self.file_of: dict[str, Path] = {}  # absolute database path -> its lock file

    def locks(self, database: str) -> RangeLocks:
        key = os.path.abspath(database)
        with self.guard:
            path = self.file_of.get(key)
            locks = self.by_file.get(path) if path is not None else None
            if locks is not None and locks.still_at_path():
                return locks
            # First use here, or the file was removed: one that is gone is left open (not
            # leaked in practice), since a thread may still be holding or unlocking on it.
            path = self.file_of[key] = sqlite_lock_dir(database) / "ids.lock"
            locks = self.by_file.get(path)
            if locks is None or not locks.still_at_path():
                locks = self.by_file[path] = RangeLocks(path)
            return locks

    def forget(self) -> None:
        """In a forked child: the parent's descriptors and guard are not this process's."""
        self.guard = threading.Lock()
        for locks in self.by_file.values():
            locks.forget()
        self.by_file.clear()


_sqlite_lock_files = _SqliteLockFiles()
os.register_at_fork(after_in_child=_sqlite_lock_files.forget)


def sqlite_id_lock(
    database: str, result_id: str, timeout: float, location: str
) -> contextlib.AbstractContextManager[None]:
    """The compute-once lock of ``result_id`` in the SQLite store ``database``: a byte of
    ``ids.lock`` in the store's lock folder (``sqlite_lock_dir``), a descriptor kept open.

    Raises:
        StoreUnavailableError: the lock folder or file cannot be created (names it).
    """
    return _sqlite_lock_files.locks(database).hold(result_id, timeout, location)


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
