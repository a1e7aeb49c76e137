"""Moving in from the original ResultsManager: read its file and SQLite stores.

The original kept results in one of two formats:

- **file store** — a folder with one ``<id>.json`` per result (``a/b/c`` in
  ``a/b/c.json``), holding ``{"model_type": <class name>, "namespace": <ns>,
  "data": {...}}``. It keeps no times in the file, so the file's modification time
  becomes both the creation and the update time (``created_at``/``updated_at`` keys
  are used when a file has them).
- **SQLite store** — a database with a table ``results(id TEXT PRIMARY KEY,
  model_type TEXT, namespace TEXT, data TEXT, created_at TIMESTAMP, updated_at
  TIMESTAMP)``; naive times are taken as UTC (SQLite's ``CURRENT_TIMESTAMP`` is UTC).

``import_resultsmanager`` stores every result of either format, keeping IDs, type
names, namespaces, data and times, and reports like ``transfer.import_jsonl``.
``check_resultsmanager_store`` reads a store through first, so that a bad record
(a bad ID, no ``model_type``, data that is not a JSON object, NaN) stops the import
before anything is written, with a message naming the file or row. The original's
store is only read, never changed.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from results_flow.backends.file.store import raise_walk_error
from results_flow.errors import (
    CorruptRecordError,
    InvalidResultIdError,
    StoreUnavailableError,
)
from results_flow.ids import normalize_id
from results_flow.maintenance import ProgressSink, Store, backend_of
from results_flow.manager import SetBehavior
from results_flow.records import Record, load_json, parse_time
from results_flow.registry import DEFAULT_NAMESPACE
from results_flow.settings import LEGACY_SQLITE_STEPS_PER_ROW
from results_flow.transfer import Refusal, TransferReport, copy_record

SQLITE_HEADER = b"SQLite format 3\x00"
SUFFIX = ".json"


def read_resultsmanager_store(path: str | os.PathLike[str]) -> Iterator[tuple[str, Record]]:
    """Every result of an original ResultsManager store (a folder, or a SQLite file), by ID.

    Raises:
        StoreUnavailableError: ``path`` is missing, or neither a folder nor a SQLite file.
        CorruptRecordError: a result is not in the original's format; names its file or row.
        InvalidResultIdError: a result's ID breaks the ID grammar; names its file or row.
    """
    source = Path(path)
    if source.is_dir():
        yield from _read_folder(source)
    elif source.is_file():
        yield from _read_sqlite(source)
    else:
        raise StoreUnavailableError(f"no ResultsManager store at {source}: not found")


def check_resultsmanager_store(path: str | os.PathLike[str]) -> int:
    """Read an original store through without storing anything; the number of results.

    Raises:
        See ``read_resultsmanager_store``.
    """
    return sum(1 for _ in read_resultsmanager_store(path))


def import_resultsmanager(
    store: Store,
    path: str | os.PathLike[str],
    *,
    on_conflict: SetBehavior = SetBehavior.RAISE_IF_DIFFERENT,
    progress: ProgressSink | None = None,
) -> TransferReport:
    """Store every result of an original ResultsManager store (see the module docstring).

    Results are stored as they are read; run ``check_resultsmanager_store`` first to
    find a bad record before anything is written. Importing again stores nothing new
    under the default ``on_conflict``.

    Args:
        store: the store to write to.
        path: the original's folder (file store) or database file (SQLite store).
        on_conflict: what an ID already stored gets, as in ``transfer.import_jsonl``.
        progress: told of each result (the total is not known in advance).

    Raises:
        StoreUnavailableError, CorruptRecordError, InvalidResultIdError: see
            ``read_resultsmanager_store``.
        ResultConflictError: RAISE_IF_DIFFERENT and the store holds other data.
        ResultExistsError: RAISE_IF_EXISTS and the ID is stored.
    """
    backend = backend_of(store)
    if progress is not None:
        progress.start(None)
    read = written = 0
    refused: list[Refusal] = []
    for result_id, record in read_resultsmanager_store(path):
        read += 1
        written += copy_record(backend, result_id, record, on_conflict, refused)
        if progress is not None:
            progress.advance(1)
    return TransferReport(
        source=str(Path(path)),
        target=backend.location,
        read=read,
        written=written,
        skipped=read - written - len(refused),
        refused=refused,
    )


def _read_folder(root: Path) -> Iterator[tuple[str, Record]]:
    for folder, dirs, files in os.walk(root, onerror=raise_walk_error):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # locks, temporary files
        for name in sorted(files):
            if name.startswith(".") or not name.endswith(SUFFIX):
                continue
            file = Path(folder) / name
            relative = file.relative_to(root).as_posix()[: -len(SUFFIX)]
            try:
                content = file.read_bytes()
                modified = datetime.fromtimestamp(file.stat().st_mtime, UTC)
            except OSError as exc:
                raise StoreUnavailableError(f"cannot read {file}: {exc.strerror}") from exc
            try:
                doc = load_json(content)
            except ValueError as exc:
                raise CorruptRecordError(f"{file} is not a ResultsManager result: {exc}") from exc
            if not isinstance(doc, dict):
                raise CorruptRecordError(f"{file} is not a ResultsManager result: not an object")
            yield _record(
                relative,
                doc.get("model_type"),
                doc.get("namespace"),
                doc.get("data"),
                doc.get("created_at") or modified,
                doc.get("updated_at") or doc.get("created_at") or modified,
                str(file),
            )


def _read_sqlite(file: Path) -> Iterator[tuple[str, Record]]:
    try:
        with file.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise StoreUnavailableError(f"cannot read {file}: {exc.strerror}") from exc
    if header != SQLITE_HEADER:
        raise StoreUnavailableError(
            f"{file} is neither a folder nor a SQLite database: not a ResultsManager store"
        )
    try:
        # Read-only: importing never changes (or creates journal files beside) the original.
        conn = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreUnavailableError(f"cannot open {file}: {exc}") from exc
    try:
        order = _checked_results_table(conn, file)
        guard = _StepGuard()  # counts from here to the first row, then row to row
        conn.set_progress_handler(guard, _STEPS_PER_CALL)
        try:
            rows = conn.execute(
                "SELECT id, model_type, namespace, data, created_at, updated_at "
                f"FROM main.results{order}"
            )
        except sqlite3.Error as exc:
            raise _read_error(exc, guard, file) from exc
        fallback = datetime.fromtimestamp(file.stat().st_mtime, UTC)
        for raw_id, model_type, namespace, data, created, updated in _fetched(rows, guard, file):
            where = f"{file} row id={raw_id!r}"
            if not isinstance(data, str | bytes):
                raise CorruptRecordError(f"{where}: data is not JSON text")
            try:
                parsed = load_json(data)
            except ValueError as exc:
                raise CorruptRecordError(f"{where}: data is not JSON: {exc}") from exc
            yield _record(
                raw_id,
                model_type,
                namespace,
                parsed,
                created or updated or fallback,
                updated or created or fallback,
                where,
            )
    finally:
        conn.close()


#: The columns of the original's ``results`` table, all read.
_COLUMNS = ("id", "model_type", "namespace", "data", "created_at", "updated_at")
#: SQLite steps between two calls of the import's progress handler.
_STEPS_PER_CALL = 10_000


def _checked_results_table(conn: sqlite3.Connection, file: Path) -> str:
    """Check that ``results`` is a real table of the original's shape, so reading it
    is a bounded scan; the ``ORDER BY`` to read it with (by ID when an index gives
    that order without a sort, else none: a sort of a hostile table would spill to disk).

    Raises:
        CorruptRecordError: no such table; a view, a virtual table, or a column that is
            missing or computed (generated).
    """
    shape = f"not a ResultsManager SQLite store (no table results({', '.join(_COLUMNS)}))"
    try:
        found = conn.execute(
            "SELECT type, sql FROM main.sqlite_master WHERE name = 'results'"
        ).fetchall()
        if len(found) != 1 or found[0][0] != "table":
            kind = found[0][0] if found else "nothing"
            raise CorruptRecordError(f"{file} is {shape}: 'results' is {kind}, not a table")
        if str(found[0][1] or "").lstrip().upper().startswith("CREATE VIRTUAL"):
            raise CorruptRecordError(f"{file} is {shape}: 'results' is a virtual table")
        # table_xinfo's "hidden": 0 a stored column, 1 hidden, 2 or 3 generated (computed).
        columns = {row[1]: row[6] for row in conn.execute("PRAGMA main.table_xinfo(results)")}
        indexed = {
            row[2]
            for index in conn.execute("PRAGMA main.index_list(results)")
            if index[2]  # unique: the primary key's index, or a UNIQUE one
            for row in conn.execute(f"PRAGMA main.index_info({_quoted(index[1])})")
            if row[0] == 0
        }
    except sqlite3.Error as exc:
        raise CorruptRecordError(f"{file} is {shape}: {exc}") from exc
    wrong = [name for name in _COLUMNS if columns.get(name) != 0]
    if wrong:
        raise CorruptRecordError(
            f"{file} is {shape}: column(s) {', '.join(wrong)} missing or computed"
        )
    return " ORDER BY id" if "id" in indexed else ""


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _StepGuard:
    """SQLite's progress handler for the import: stops a read that has done
    ``LEGACY_SQLITE_STEPS_PER_ROW`` steps since its last row."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        return int(self.calls * _STEPS_PER_CALL > LEGACY_SQLITE_STEPS_PER_ROW)


def _fetched(rows: sqlite3.Cursor, guard: _StepGuard, file: Path) -> Iterator[Any]:
    """The rows of ``rows``, each in the step bound of ``guard``.

    Raises:
        CorruptRecordError: a row took more than the bound, or SQLite failed to read it.
    """
    while True:
        guard.calls = 0
        try:
            row = rows.fetchone()
        except sqlite3.Error as exc:
            raise _read_error(exc, guard, file) from exc
        if row is None:
            return
        yield row


def _read_error(exc: sqlite3.Error, guard: _StepGuard, file: Path) -> CorruptRecordError:
    """The error of a failed read of the original's table: stopped by ``guard``, or not."""
    if guard.calls * _STEPS_PER_CALL > LEGACY_SQLITE_STEPS_PER_ROW:
        return CorruptRecordError(
            f"{file}: reading one row of its results table took more than "
            f"{LEGACY_SQLITE_STEPS_PER_ROW:,} SQLite steps; not a plain ResultsManager table"
        )
    return CorruptRecordError(f"{file}: cannot read its results table: {exc}")


def _record(
    raw_id: Any,
    model_type: Any,
    namespace: Any,
    data: Any,
    created: Any,
    updated: Any,
    where: str,
) -> tuple[str, Record]:
    """Check one original result and build its record. Raises as ``read_resultsmanager_store``."""
    if not isinstance(raw_id, str):
        raise CorruptRecordError(f"{where}: the ID is not text")
    try:
        result_id = normalize_id(raw_id)
    except InvalidResultIdError as exc:
        raise InvalidResultIdError(f"{where}: {exc}") from exc
    if not isinstance(model_type, str) or not model_type:
        raise CorruptRecordError(f'{where}: no "model_type" (the class name of the result)')
    if namespace is None:
        namespace = DEFAULT_NAMESPACE
    if not isinstance(namespace, str) or not namespace:
        raise CorruptRecordError(f'{where}: "namespace" is not a name')
    if not isinstance(data, dict):
        raise CorruptRecordError(f'{where}: "data" is not a JSON object')
    try:
        created_at, updated_at = _time(created), _time(updated)
    except (TypeError, ValueError) as exc:
        raise CorruptRecordError(f"{where}: unreadable time: {exc}") from exc
    try:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError as exc:
        raise CorruptRecordError(f"{where}: data holds NaN or an infinite number: {exc}") from exc
    record = Record(
        model_type=model_type,
        namespace=namespace,
        data=text,
        created_at=created_at,
        updated_at=max(updated_at, created_at),
    )
    return result_id, record


def _time(value: Any) -> datetime:
    if isinstance(value, int | float):  # a Unix time, as some SQLite writers keep it
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, bytes):
        value = value.decode()
    if not isinstance(value, str | datetime):
        raise TypeError(f"{value!r} is not a time")
    return parse_time(value)
