"""FileBackend: one JSON document per ID in a folder tree that mirrors the ID.

``a/b/c`` lives in ``<root>/a/b/c.json``. A write goes to a hidden temporary file in
the same folder, is flushed and fsynced, then ``os.replace``d over the target, so a
reader sees the old record or the new one, never half of one, and a killed writer
leaves at most a hidden ``.tmp`` file that is never listed or read. Writers of one
ID exclude each other with an OS file lock in the store's own lock folder
(``<root>/.results_flow/locks``): the kernel drops it when its holder dies.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path

from results_flow.backends.atomic import write_atomic
from results_flow.backends.base import ResultsBackend
from results_flow.backends.locks import id_file_lock
from results_flow.backends.urls import file_path
from results_flow.errors import InvalidResultIdError, StoreError, StoreUnavailableError
from results_flow.ids import SEPARATOR, is_under, normalize_id
from results_flow.records import Record

SUFFIX = ".json"
INTERNAL_DIR = ".results_flow"
DEFAULT_LOCK_TIMEOUT = 60.0


class FileBackend(ResultsBackend):
    """Stores each record as a JSON file under ``base_dir``."""

    def __init__(
        self, base_dir: str | os.PathLike[str], lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    ):
        self.root = Path(base_dir).resolve()
        self._root_text = os.path.normcase(self.root)
        self._root_prefix = os.path.join(self._root_text, "")
        self.location = f"file://{self.root}"
        self.lock_timeout = lock_timeout
        # Writes and compute-once callers lock in separate folders, so a caller holding
        # ``lock(id)`` while it computes can still write that ID.
        self._write_locks = self.root / INTERNAL_DIR / "locks" / "write"
        self._compute_locks = self.root / INTERNAL_DIR / "locks" / "compute"
        try:
            self._write_locks.mkdir(parents=True, exist_ok=True)
            self._compute_locks.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailableError(
                f"cannot create the store folder {self.root}: {exc}"
            ) from exc

    @classmethod
    def from_url(cls, url: str) -> FileBackend:
        """A store on the folder of a ``file:///path`` URL."""
        return cls(file_path(url))

    @property
    def url(self) -> str:
        return f"file://{self.root}"

    def path_for(self, result_id: str) -> Path:
        """The file that holds an ID; never outside the root.

        Raises:
            InvalidResultIdError: the path would leave the root (a symlinked folder).
        """
        *folders, name = result_id.split(SEPARATOR)
        if any(folder.endswith(SUFFIX) for folder in folders):
            raise InvalidResultIdError(
                f"result ID {result_id!r}: FileBackend cannot use a folder segment ending in "
                f"{SUFFIX!r}, it would collide with a record file"
            )
        path = self.root.joinpath(*folders, name + SUFFIX)
        # Path.resolve().is_relative_to() on strings: a third of a read's time went into
        # building Paths around os.path.realpath.
        real = os.path.normcase(os.path.realpath(path))
        if real != self._root_text and not real.startswith(self._root_prefix):
            raise InvalidResultIdError(f"result ID {result_id!r} resolves outside {self.root}")
        return path

    def read(self, result_id: str) -> Record | None:
        path = self.path_for(result_id)
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _mapped(exc, path) from exc
        return Record.from_document(text, str(path))

    def exists(self, result_id: str) -> bool:
        return self.path_for(result_id).is_file()

    def insert(self, result_id: str, record: Record) -> Record | None:
        path = self.path_for(result_id)
        with self._write_lock(result_id):
            existing = self.read(result_id)
            if existing is None:
                self._write_atomically(path, record.to_document())
            return existing

    def upsert(self, result_id: str, record: Record) -> None:
        path = self.path_for(result_id)
        with self._write_lock(result_id):
            previous = self.read(result_id) if path.exists() else None
            self._write_atomically(
                path, (record if previous is None else record.replacing(previous)).to_document()
            )

    def delete(self, result_id: str) -> bool:
        path = self.path_for(result_id)
        with self._write_lock(result_id):
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            except OSError as exc:
                raise _mapped(exc, path) from exc
            return True

    def list_ids(self, prefix: str | None = None) -> list[str]:
        start = self.root if prefix is None else self.root.joinpath(*prefix.split(SEPARATOR)).parent
        found = []
        for folder, dirs, files in os.walk(start):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            relative = Path(folder).relative_to(self.root).parts
            for name in files:
                if name.endswith(SUFFIX) and not name.startswith("."):
                    result_id = self._id_from_parts([*relative, name[: -len(SUFFIX)]])
                    if result_id is not None and (prefix is None or is_under(result_id, prefix)):
                        found.append(result_id)
        return sorted(found)

    def clear(self) -> None:
        for entry in self.root.iterdir():
            if entry.name == INTERNAL_DIR:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def lock(
        self, result_id: str, timeout: float | None = None
    ) -> contextlib.AbstractContextManager[None]:
        wait = self.lock_timeout if timeout is None else timeout
        return id_file_lock(self._compute_locks, result_id, wait, self.location)

    def _write_lock(self, result_id: str) -> contextlib.AbstractContextManager[None]:
        return id_file_lock(self._write_locks, result_id, self.lock_timeout, self.location)

    def _write_atomically(self, path: Path, text: str) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, text.encode("utf-8"))
        except OSError as exc:
            raise _mapped(exc, path) from exc

    @staticmethod
    def _id_from_parts(parts: list[str]) -> str | None:
        try:
            return normalize_id(parts)
        except InvalidResultIdError:
            return None  # a file this store did not write; maintenance.verify reports those


def _mapped(exc: OSError, path: Path) -> StoreError:
    """The results_flow error for an OS error on ``path``."""
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC):
        return StoreUnavailableError(f"cannot use {path}: {exc.strerror}")
    return StoreError(f"file operation on {path} failed: {exc}")
