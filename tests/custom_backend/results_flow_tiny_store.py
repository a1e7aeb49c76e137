"""A custom results_flow store, written from the README's contract and nothing more.

``tinystore:///folder`` keeps one JSON document per ID in one folder (the file name is
the ID, percent-quoted). ``TinyStore`` implements exactly what the contract asks:
``read``, ``insert``, ``upsert``, ``delete``, ``list_ids``, ``from_url`` and ``url``;
it offers no per-ID locks. ``LockedTinyStore`` (``tinystore-locked:///folder``) adds a
``lock()`` of its own, a ``filelock`` per ID, as a custom store may.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote

from filelock import FileLock, Timeout

from results_flow import ResultsBackend
from results_flow.backends.held import HeldLock
from results_flow.errors import LockTimeoutError, StoreUnavailableError
from results_flow.ids import is_under
from results_flow.records import Record

SUFFIX = ".json"
#: How long this store's lock() waits when the caller gives no timeout.
LOCK_TIMEOUT = 600.0


class TinyStore(ResultsBackend):
    """One JSON document per ID in ``root``; writes exclude each other with one flock."""

    scheme = "tinystore"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.location = f"{self.scheme}://{self.root}"
        with _mapped(self.root):
            self.root.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_url(cls, url: str) -> TinyStore:
        return cls(url.partition("://")[2])

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.root}"

    def path_for(self, result_id: str) -> Path:
        """The file of an ID."""
        return self.root / (quote(result_id, safe="") + SUFFIX)

    def read(self, result_id: str) -> Record | None:
        path = self.path_for(result_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _error(exc, path) from exc
        return Record.from_document(data, f"{path} (result ID {result_id!r})")

    def insert(self, result_id: str, record: Record) -> Record | None:
        with self._writing():
            existing = self.read(result_id)
            if existing is None:
                self._write(result_id, record)
            return existing

    def upsert(self, result_id: str, record: Record) -> None:
        with self._writing():
            previous = self.read(result_id)
            self._write(result_id, record if previous is None else record.replacing(previous))

    def delete(self, result_id: str) -> bool:
        path = self.path_for(result_id)
        with self._writing():
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            except OSError as exc:
                raise _error(exc, path) from exc
            return True

    def list_ids(self, prefix: str | None = None) -> list[str]:
        with _mapped(self.root):
            names = [p.name for p in self.root.iterdir() if p.name.endswith(SUFFIX)]
        ids = (unquote(name[: -len(SUFFIX)]) for name in names)
        return sorted(i for i in ids if prefix is None or is_under(i, prefix))

    def _write(self, result_id: str, record: Record) -> None:
        path = self.path_for(result_id)
        temporary = self.root / f"{uuid.uuid4().hex}.tmp"
        try:
            temporary.write_text(record.to_document(), encoding="utf-8")
            os.replace(temporary, path)
        except OSError as exc:
            raise _error(exc, path) from exc
        finally:
            temporary.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """The store's one write lock: every open file description is its own flock
        holder, so threads and processes alike wait here."""
        path = self.root / ".writes.lock"
        with _mapped(path):
            handle = open(path, "a")  # noqa: SIM115 - closed below, after the body
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
        finally:
            handle.close()


class LockedTinyStore(TinyStore):
    """``TinyStore`` with per-ID locks: one ``filelock`` file per ID hash."""

    scheme = "tinystore-locked"

    @contextlib.contextmanager
    def lock(self, result_id: str, timeout: float | None = None) -> Iterator[HeldLock]:
        name = hashlib.sha256(result_id.encode()).hexdigest()[:32]
        lock_file = self.root / ".locks" / f"{name}.lock"
        wait = LOCK_TIMEOUT if timeout is None else timeout
        file_lock = FileLock(lock_file)
        try:
            file_lock.acquire(timeout=wait)
        except Timeout as exc:
            raise LockTimeoutError(
                f"lock on {result_id!r} in {self.location} not acquired within {wait}s"
            ) from exc
        try:
            yield HeldLock(self, result_id)
        finally:
            file_lock.release()


@contextlib.contextmanager
def _mapped(path: Path) -> Iterator[None]:
    """OS errors on ``path`` as results_flow's own (the one mapping of this store)."""
    try:
        yield
    except OSError as exc:
        raise _error(exc, path) from exc


def _error(exc: OSError, path: Path) -> StoreUnavailableError:
    return StoreUnavailableError(f"cannot use {path}: {exc.strerror or exc}")
