"""Removing what killed writers leave in a file store: their hidden temporary files.

A file store writes each record to ``.<name>.json.<8 random>.tmp`` beside it and renames
it into place (``backends/file/atomic.py``); a writer killed before the rename leaves that
file behind. ``verify`` lists such files; ``plan_stray`` and ``remove_stray`` (the
``results-flow gc --stray`` command) delete them. Only a file matching that pattern
exactly, for a file name a record could have, in the store's own record folders (no
hidden folder, no symlink followed), a regular file, and untouched for ``min_age`` is
chosen, so a writer still at work and files the store did not write are never touched.
"""

from __future__ import annotations

import os
import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from results_flow.backends.file.store import SUFFIX, FileBackend, raise_walk_error
from results_flow.errors import InvalidResultIdError, MaintenanceError, StoreError
from results_flow.ids import split_id
from results_flow.maintenance import Report, Store, backend_of
from results_flow.query import human_age
from results_flow.records import utc_now

#: A temp file is removed only when it has not been touched for this long: a live
#: writer renames its temp file within moments, a stalled one within minutes.
DEFAULT_STRAY_AGE = timedelta(hours=1)

#: ``tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp")``: 8 characters from
#: tempfile's alphabet between the record's file name and ``.tmp``.
_TEMP_NAME = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp")


class StrayPlan(Report):
    """Temporary files chosen for removal, to show (and confirm) before removing them."""

    location: str
    paths: list[str]
    cutoff: datetime
    """Only files last modified before this time are removed."""


class StrayReport(Report):
    """The outcome of ``remove_stray``."""

    location: str
    removed: int
    kept: int
    """Planned files not removed: already gone, or changed since the plan."""


def plan_stray(
    store: Store, min_age: timedelta = DEFAULT_STRAY_AGE, *, now: datetime | None = None
) -> StrayPlan:
    """The temporary files of killed writers in a file store, untouched for ``min_age``.

    Any other store has none: the plan is empty.

    Raises:
        MaintenanceError: ``min_age`` is negative.
        StoreError: the store's folders cannot be read.
    """
    if min_age < timedelta(0):
        raise MaintenanceError(f"stray age must be zero or more, got {human_age(min_age)}")
    backend = backend_of(store)
    cutoff = (now or utc_now()) - min_age
    paths: list[str] = []
    if isinstance(backend, FileBackend):
        paths = [str(path) for path in _temp_files(backend.root) if _older(path, cutoff)]
    return StrayPlan(location=backend.location, paths=sorted(paths), cutoff=cutoff)


def remove_stray(store: Store, plan: StrayPlan) -> StrayReport:
    """Remove the files of a plan that still qualify (checked again, one by one).

    Raises:
        MaintenanceError: the plan was made for another store.
        StoreError: a file cannot be removed (names it).
    """
    backend = backend_of(store)
    if plan.location != backend.location:
        raise MaintenanceError(
            f"this cleaning was planned for {plan.location}, not for {backend.location}"
        )
    if not isinstance(backend, FileBackend):  # no temp files of its own to remove
        return StrayReport(location=backend.location, removed=0, kept=len(plan.paths))
    removed = 0
    for name in plan.paths:
        path = Path(name)
        if not (_is_store_temp(backend.root, path) and _older(path, plan.cutoff)):
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise StoreError(f"cannot remove the stray temporary file {path}: {exc}") from exc
        removed += 1
    return StrayReport(location=backend.location, removed=removed, kept=len(plan.paths) - removed)


def _temp_files(root: Path) -> list[Path]:
    """Temp-file names in the store's record folders (hidden and odd folders skipped)."""
    found: list[Path] = []
    # Never follows a symlinked folder; an unreadable one is an error, not skipped.
    for folder, dirs, files in os.walk(root, onerror=raise_walk_error):
        dirs[:] = [d for d in dirs if _is_record_folder(d)]
        found.extend(Path(folder, name) for name in files if _is_temp_name(name))
    return found


def _is_store_temp(root: Path, path: Path) -> bool:
    """``path`` is a temp-file name inside ``root``'s record folders."""
    try:
        relative = path.relative_to(root)
    except ValueError:
        return False
    *folders, name = relative.parts
    return all(_is_record_folder(folder) for folder in folders) and _is_temp_name(name)


def _is_record_folder(name: str) -> bool:
    return not name.endswith(SUFFIX) and _is_segment(name)


def _is_temp_name(name: str) -> bool:
    match = _TEMP_NAME.fullmatch(name)
    if match is None or not match["target"].endswith(SUFFIX):
        return False
    return _is_segment(match["target"][: -len(SUFFIX)])


def _is_segment(name: str) -> bool:
    """A name a record's ID segment could have (never hidden, never undecodable)."""
    try:
        name.encode("utf-8")  # an undecodable file name arrives holding lone surrogates
        return len(split_id(name)) == 1
    except (InvalidResultIdError, UnicodeEncodeError):
        return False


def _older(path: Path, cutoff: datetime) -> bool:
    """A regular file (not a symlink, FIFO or folder) last modified before ``cutoff``."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StoreError(f"cannot inspect {path}: {exc}") from exc
    modified = datetime.fromtimestamp(info.st_mtime, UTC)
    return stat.S_ISREG(info.st_mode) and modified < cutoff
