"""FileBackend: one JSON document per ID in a folder tree that mirrors the ID.

``a/b/c`` lives in ``<root>/a/b/c.json``. A write goes to a hidden temporary file in
the same folder, is flushed and fsynced, then ``os.replace``d over the target, so a
reader sees the old record or the new one, never half of one, and a killed writer
leaves at most a hidden ``.tmp`` file that is never listed or read. Writers of one
ID exclude each other with an OS lock in the store's own lock folder
(``<root>/.results_flow/locks``): one byte per ID of ``write.lock`` for writes, of
``compute.lock`` for ``lock(id)`` (``locks.RangeLocks``), so distinct IDs never share a
lock; the kernel drops it when its holder dies.

The folder may hold files that are not records. A record is a regular file named
``<segment>.json`` in a folder tree of valid ID segments; anything else (a foreign or
hidden file, a file name that is not valid UTF-8, a symlink, a FIFO, a socket, a
device) is *stray*: never listed, followed, opened or deleted by ``clear()``, and
reported by ``stray_paths`` (``results-flow verify``). ``delete(id)`` and
``set(..., OVERWRITE)`` replace whatever sits at an ID's own path.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from results_flow.backends.base import ResultsBackend
from results_flow.backends.file.atomic import make_folders, write_atomic
from results_flow.backends.held import HeldLock, held_by
from results_flow.backends.locks import range_locks
from results_flow.errors import (
    CorruptRecordError,
    InvalidResultIdError,
    StoreError,
    StoreUnavailableError,
)
from results_flow.ids import SEPARATOR, normalize_id, split_id
from results_flow.records import Record
from results_flow.settings import (
    FILE_CHECKED_FOLDERS_MAX,
    FILE_LOCK_TIMEOUT,
    FILE_NAMES_CACHED,
    FILE_WRITE_ATTEMPTS,
)
from results_flow.urls import file_path

SUFFIX = ".json"
INTERNAL_DIR = ".results_flow"

_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


class FileBackend(ResultsBackend):
    """Stores each record as a JSON file under ``base_dir``."""

    def __init__(self, base_dir: str | os.PathLike[str], lock_timeout: float = FILE_LOCK_TIMEOUT):
        self.root = Path(base_dir).resolve()
        self._root_text = str(self.root)
        self._root_slash = os.path.join(self._root_text, "")
        self.location = f"file://{self.root}"
        self.lock_timeout = lock_timeout
        self._checked: set[str] = set()
        # Writes and compute-once callers lock in separate folders, so a caller holding
        # ``lock(id)`` while it computes can still write that ID.
        locks = self.root / INTERNAL_DIR / "locks"
        self._write_lock_file = locks / "write.lock"
        self._compute_lock_file = locks / "compute.lock"
        try:
            make_folders(locks)
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
            InvalidResultIdError: a folder of the path is a symlink (never followed).
        """
        return Path(self._file_of(result_id))

    def read(self, result_id: str) -> Record | None:
        path = self._file_of(result_id)
        try:
            info = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise _mapped(exc, path) from exc
        if not stat.S_ISREG(info.st_mode):
            raise _special(path, info.st_mode)
        try:
            # O_NOFOLLOW and O_NONBLOCK: a file swapped for a link or FIFO since the
            # lstat is refused, or read as empty, never followed or waited on.
            fd = os.open(path, _READ_FLAGS)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _mapped(exc, path) from exc
        try:
            # One read when the size is unchanged: a short read of a regular file is its end.
            data = os.read(fd, info.st_size + 1)
            if len(data) > info.st_size:  # it grew since the lstat: read to the end
                chunks = [data]
                while chunk := os.read(fd, 65_536):
                    chunks.append(chunk)
                data = b"".join(chunks)
        except OSError as exc:
            raise _mapped(exc, path) from exc
        finally:
            os.close(fd)
        return Record.from_document(data, path)

    def exists(self, result_id: str) -> bool:
        path = self._file_of(result_id)
        try:
            return stat.S_ISREG(os.lstat(path).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise _mapped(exc, path) from exc

    def insert(self, result_id: str, record: Record) -> Record | None:
        path = self._file_of(result_id)
        with self._write_lock(result_id):
            existing = self.read(result_id)
            if existing is None:
                self._write_atomically(path, record.to_document())
            return existing

    def upsert(self, result_id: str, record: Record) -> None:
        path = self._file_of(result_id)
        with self._write_lock(result_id):
            try:
                previous = self.read(result_id)
            except CorruptRecordError:
                previous = None  # a damaged record or a special file: replaced, never read
            self._write_atomically(
                path, (record if previous is None else record.replacing(previous)).to_document()
            )

    def delete(self, result_id: str) -> bool:
        path = self._file_of(result_id)
        with self._write_lock(result_id):
            try:
                if stat.S_ISDIR(os.lstat(path).st_mode):
                    return False  # a folder named like a record holds no record
                os.unlink(path)  # a symlink itself goes, never what it points to
            except (FileNotFoundError, NotADirectoryError):
                return False
            except OSError as exc:
                raise _mapped(exc, path) from exc
            return True

    def list_ids(self, prefix: str | None = None) -> list[str]:
        return sorted(self._records(prefix, None))

    def stray_paths(self, prefix: str | None = None) -> list[str]:
        """Everything in the store's folders (under ``prefix``'s folder) that is no record.

        A foreign, hidden or temporary file, a name that is not valid UTF-8 (it holds
        lone surrogates, as ``os.fsdecode`` gives it), a symlink, FIFO, socket or
        device; a foreign folder is one entry, never entered. The store's own
        ``.results_flow`` folder is left out.

        Raises:
            StoreError: a folder cannot be read (names it).
        """
        strays: list[str] = []
        for _ in self._records(prefix, strays):
            pass
        return sorted(strays)

    def clear(self) -> None:
        """Delete every record, then each folder that held one once it is empty.

        Stray files (see ``stray_paths``) and the folders that hold them stay. Writers
        may run meanwhile: each of their writes lands before or after the clear.

        Raises:
            StoreError: a record or folder cannot be removed (names it).
        """
        self._checked.clear()
        folders: set[tuple[str, ...]] = set()
        for result_id in self._records(None, None):
            *parts, name = result_id.split(SEPARATOR)
            path = os.path.join(self._root_text, *parts, name + SUFFIX)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass  # deleted meanwhile
            except OSError as exc:
                raise _mapped(exc, path) from exc
            folders.update(tuple(parts[:depth]) for depth in range(1, len(parts) + 1))
        for made in sorted(folders, key=len, reverse=True):
            folder = os.path.join(self._root_text, *made)
            try:
                os.rmdir(folder)
            except OSError as exc:
                # Not empty (a stray file, or a writer's new record), or gone already.
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                    raise _mapped(exc, folder) from exc

    def unfit_reason(self, result_id: str, record: Record) -> str | None:
        return _folder_problem(result_id.rpartition(SEPARATOR)[0])

    def lock(
        self, result_id: str, timeout: float | None = None
    ) -> contextlib.AbstractContextManager[HeldLock]:
        wait = self.lock_timeout if timeout is None else timeout
        locks = range_locks(self._compute_lock_file)
        return held_by(self, result_id, locks.hold(result_id, wait, self.location))

    def _write_lock(self, result_id: str) -> contextlib.AbstractContextManager[None]:
        return range_locks(self._write_lock_file).hold(result_id, self.lock_timeout, self.location)

    def _file_of(self, result_id: str) -> str:
        head, _, name = result_id.rpartition(SEPARATOR)
        if not head:
            return f"{self._root_slash}{name}{SUFFIX}"
        folder = self._root_slash + head  # what _folder_of joins, on POSIX
        if folder not in self._checked:  # a checked folder's segments passed this check
            problem = _folder_problem(head)
            if problem is not None:
                raise InvalidResultIdError(f"result ID {result_id!r}: {problem}")
            folder = self._folder_of(head.split(SEPARATOR), result_id)
        return f"{folder}{os.sep}{name}{SUFFIX}"

    def _folder_of(self, folders: list[str], result_id: str) -> str:
        """The folder of ``folders`` below the root, checked to pass through no symlink.

        Segments hold no ``/`` and are never ``..`` (``ids`` checks), so only a symlinked
        folder could lead outside the root: one ``lstat`` per folder level, once per
        folder, then cached.

        Raises:
            InvalidResultIdError: a folder on the way is a symlink.
        """
        folder = self._root_text
        for depth, segment in enumerate(folders, 1):
            folder = os.path.join(folder, segment)
            if folder in self._checked:
                continue
            try:
                mode = os.lstat(folder).st_mode
            except (FileNotFoundError, NotADirectoryError):
                return os.path.join(folder, *folders[depth:])
            except OSError as exc:
                raise _mapped(exc, folder) from exc
            if stat.S_ISLNK(mode):
                raise InvalidResultIdError(
                    f"result ID {result_id!r}: {folder} is a symlink; results_flow never "
                    f"follows one, so no ID resolves outside {self.root}"
                )
            if stat.S_ISDIR(mode):
                if len(self._checked) >= FILE_CHECKED_FOLDERS_MAX:
                    self._checked.clear()
                self._checked.add(folder)
        return folder

    def _records(self, prefix: str | None, strays: list[str] | None) -> Iterator[str]:
        """The IDs of records under ``prefix`` (all if None); strays go to ``strays``."""
        if prefix is None:
            yield from self._walk(self._root_text, [], strays)
            return
        *folders, name = prefix.split(SEPARATOR)
        if any(folder.endswith(SUFFIX) for folder in folders):
            return  # no record can lie there
        try:
            parent = self._folder_of(folders, prefix)
        except InvalidResultIdError:
            return  # through a symlinked folder: nothing there is a record
        record = os.path.join(parent, name + SUFFIX)
        own = os.path.join(parent, name)
        for path, is_record in ((record, True), (own, False)):
            try:
                mode = os.lstat(path).st_mode
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                raise _mapped(exc, path) from exc
            if is_record and stat.S_ISREG(mode):
                yield prefix
            elif not is_record and stat.S_ISDIR(mode) and not name.endswith(SUFFIX):
                yield from self._walk(own, [*folders, name], strays)
            elif strays is not None and (is_record or stat.S_ISLNK(mode)):
                strays.append(path)

    def _walk(self, folder: str, parts: list[str], strays: list[str] | None) -> Iterator[str]:
        """Record IDs in ``folder`` and the record folders below it; never follows a link."""
        try:
            with os.scandir(folder) as entries:
                listed = list(entries)
        except (FileNotFoundError, NotADirectoryError):
            return  # removed meanwhile (a concurrent clear)
        except OSError as exc:
            raise _mapped(exc, folder) from exc
        for entry in listed:
            name = entry.name
            try:
                is_folder = entry.is_dir(follow_symlinks=False)
                is_file = not is_folder and entry.is_file(follow_symlinks=False)
            except OSError as exc:
                raise _mapped(exc, entry.path) from exc
            if is_folder:
                if not parts and name == INTERNAL_DIR:
                    continue
                if _is_segment(name) and not name.endswith(SUFFIX):
                    yield from self._walk(entry.path, [*parts, name], strays)
                elif strays is not None:
                    strays.append(entry.path + os.sep)
                continue
            result_id = None
            if is_file and name.endswith(SUFFIX) and _is_segment(name[: -len(SUFFIX)]):
                result_id = _joined_id([*parts, name[: -len(SUFFIX)]])
            if result_id is not None:
                yield result_id
            elif strays is not None:
                strays.append(entry.path)

    def _write_atomically(self, path: str, text: str) -> None:
        target = Path(path)
        content = text.encode("utf-8")
        for attempt in range(FILE_WRITE_ATTEMPTS):
            try:
                make_folders(target.parent)
                write_atomic(target, content)
                return
            except FileNotFoundError as exc:
                # A concurrent clear() removed the folder as it emptied: make it again.
                if attempt == FILE_WRITE_ATTEMPTS - 1:
                    raise _mapped(exc, path) from exc
            except OSError as exc:
                raise _mapped(exc, path) from exc


@functools.lru_cache(maxsize=FILE_NAMES_CACHED)
def _is_segment(name: str) -> bool:
    """A name an ID segment may have (so never hidden, never undecodable)."""
    try:
        return len(split_id(name)) == 1
    except InvalidResultIdError:
        return False


def _joined_id(parts: list[str]) -> str | None:
    try:
        return normalize_id(SEPARATOR.join(parts))
    except InvalidResultIdError:
        return None  # too long as a whole: not a record this store wrote


def _special(path: str, mode: int) -> CorruptRecordError:
    """The error for a special file sitting at a record's path."""
    kind = (
        "a symlink"
        if stat.S_ISLNK(mode)
        else "a FIFO"
        if stat.S_ISFIFO(mode)
        else "a folder"
        if stat.S_ISDIR(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a device or special file"
    )
    return CorruptRecordError(
        f"{shown_path(path)} is {kind}, not a record file; results_flow never follows or opens it "
        "(delete it, or overwrite the ID)"
    )


def raise_walk_error(exc: OSError) -> None:
    """``os.walk``'s ``onerror``: a folder that cannot be read is a named error, never
    silently left out (os.walk's default); one removed meanwhile is skipped, as in a
    store's own walk.

    Raises:
        StoreError: the folder cannot be read (names it).
    """
    if not isinstance(exc, FileNotFoundError | NotADirectoryError):
        raise _mapped(exc, exc.filename) from exc


def _folder_problem(folders: str) -> str | None:
    """Why the folder part of an ID (``a/b`` of ``a/b/c``) cannot be a folder of this
    store, or None: a segment ending in ``.json`` would collide with a record file."""
    for segment in folders.split(SEPARATOR) if folders else ():
        if segment.endswith(SUFFIX):
            return (
                f"FileBackend cannot use a folder segment ending in {SUFFIX!r} "
                f"({segment!r}), it would collide with a record file"
            )
    return None


def _mapped(exc: OSError, path: str | os.PathLike[str]) -> StoreError:
    """The results_flow error for an OS error on ``path``."""
    shown = shown_path(path)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC):
        return StoreUnavailableError(f"cannot use {shown}: {exc.strerror}")
    return StoreError(f"file operation on {shown} failed: {exc.strerror or exc}")


def shown_path(path: str | os.PathLike[str]) -> str:
    """A path fit to print: bytes of a name that is not UTF-8 appear as ``\\xe9``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")
