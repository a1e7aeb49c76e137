"""Moving records between stores: JSON Lines export and import, and migration.

The export format is JSON Lines: one record per line, the ``Record.to_document()``
envelope with the ID added first (``{"id": ..., "format": "results_flow/1",
"model_type": ..., "namespace": ..., "created_at": ..., "updated_at": ...,
"metadata": {...}, "data": {...}}``). Importing it restores type, namespace, data,
metadata and both times. Like ``results_flow.maintenance``, every function speaks only
the public backend interface, so it works on every backend.

A record the target cannot hold (a namespace longer than a PostgreSQL column, a NUL
character) does not stop a copy: every record that fits is copied, and the others are
listed in the report's ``refused``.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from results_flow.backends.base import ResultsBackend
from results_flow.errors import (
    CorruptRecordError,
    InvalidResultIdError,
    MaintenanceError,
    ResultConflictError,
    ResultExistsError,
    ResultsFlowError,
    StoreError,
    StoreUnavailableError,
)
from results_flow.ids import normalize_id
from results_flow.json_text import escape_controls
from results_flow.maintenance import (
    ProgressSink,
    Report,
    Store,
    backend_of,
    iter_records,
)
from results_flow.records import Record
from results_flow.settings import RECORDS_PER_STEP
from results_flow.urls import local_store_path
from results_flow.write_policy import SetBehavior, write_record


class Refusal(Report):
    """A record the target store cannot hold, and why."""

    id: str
    reason: str


class TransferReport(Report):
    """The outcome of an export, import or migration."""

    source: str
    target: str
    read: int
    written: int
    skipped: int
    """Records left alone because the target already held them (see ``on_conflict``)."""
    refused: list[Refusal] = []
    """Records the target cannot hold (``ResultsBackend.unfit_reason``); not copied."""

    @property
    def ok(self) -> bool:
        """True when every record read was written or already there."""
        return not self.refused


def to_jsonl_line(result_id: str, record: Record) -> str:
    """One export line (no newline): the record's document with ``"id"`` first, with
    no control character left raw (``json_text``: an export is read on terminals too)."""
    line = '{"id": ' + json.dumps(result_id, ensure_ascii=False) + ", " + record.to_document()[1:]
    if "\n" in line or "\r" in line:  # data kept as pretty-printed JSON by a custom backend
        line = json.dumps(json.loads(line), ensure_ascii=False)
    return escape_controls(line)


def from_jsonl_line(line: str, where: str) -> tuple[str, Record]:
    """The ID and record of one export line.

    Raises:
        CorruptRecordError: not JSON, no string ``"id"``, or not a results_flow record.
        InvalidResultIdError: the ID breaks the grammar.
    """
    try:
        doc = json.loads(line, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise CorruptRecordError(f"{where} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("id"), str):
        raise CorruptRecordError(f'{where} has no string "id" field')
    raw_id = doc.pop("id")
    try:
        result_id = normalize_id(raw_id)
    except InvalidResultIdError as exc:
        raise InvalidResultIdError(f"{where}: {exc}") from exc
    try:
        text = json.dumps(doc, ensure_ascii=False)
        text.encode("utf-8")  # a lone surrogate (\ud800) has no UTF-8 form to store
    except (ValueError, RecursionError) as exc:
        raise CorruptRecordError(f"{where} holds data no store can keep: {exc}") from exc
    return result_id, Record.from_document(text, where)


def _refuse_constant(name: str) -> None:
    """``json.loads``'s hook for NaN and Infinity, which are not JSON."""
    raise ValueError(f"{name} is not a JSON value")


def export_jsonl(
    store: Store,
    destination: str | os.PathLike[str] | IO[str],
    prefix: str | None = None,
    *,
    batch_size: int = RECORDS_PER_STEP,
    progress: ProgressSink | None = None,
) -> TransferReport:
    """Write every record under ``prefix`` to a JSON Lines file, one per line, in ID order.

    A path is written to a temporary file beside it and renamed into place at the
    end, so a failed export never leaves half a file; the file replaced keeps its mode,
    and a symlink stays a link to the new file. A FIFO or device at the path, and a
    stream, are written into as they are.

    Raises:
        MaintenanceError: the path is one of the store's own files.
        InvalidResultIdError: the prefix breaks the ID grammar.
        CorruptRecordError: a record cannot be decoded (nothing is written to a path).
        StoreUnavailableError: the destination cannot be written.
    """
    backend = backend_of(store)
    if not isinstance(destination, str | os.PathLike):
        count = _write_lines(backend, destination, prefix, batch_size, progress)
        return _transfer(backend.location, _stream_name(destination), count, count)
    path = Path(destination)
    try:
        existing = path.stat()  # through symlinks
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise StoreUnavailableError(f"cannot write the export file {path}: {exc.strerror}") from exc
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        # A FIFO, a terminal, /dev/stdout (a pipe has no path to resolve to): written
        # into, never replaced by a file.
        try:
            with open(path, "w", encoding="utf-8", newline="\n") as handle:
                count = _write_lines(backend, handle, prefix, batch_size, progress)
        except OSError as exc:
            raise StoreUnavailableError(f"cannot write the export file {path}: {exc}") from exc
        return _transfer(backend.location, str(path), count, count)
    target = Path(os.path.realpath(path))  # through a symlink: the link stays a link
    refuse_store_file(backend, target, path)
    mode = _new_file_mode() if existing is None else stat.S_IMODE(existing.st_mode)
    try:
        fd, temp_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
        )
    except OSError as exc:
        raise StoreUnavailableError(f"cannot write the export file {path}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            count = _write_lines(backend, handle, prefix, batch_size, progress)
        os.chmod(temp_name, mode)  # mkstemp makes it private (0600); keep the old file's
        os.replace(temp_name, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        if isinstance(exc, OSError) and not isinstance(exc, ResultsFlowError):
            raise StoreUnavailableError(f"cannot write the export file {path}: {exc}") from exc
        raise
    return _transfer(backend.location, str(path), count, count)


def refuse_store_file(backend: ResultsBackend, target: Path, shown: Path) -> None:
    """Refuse to write an export over the store's own files (SQLite's database and its
    journals) or into a file store's folder.

    Raises:
        MaintenanceError: ``target`` is one of them.
    """
    local = None if backend.url is None else local_store_path(backend.url)
    if local is None:  # a memory or remote store: no files here
        return
    kind, where = local
    place = Path(os.path.realpath(where.expanduser()))
    if kind == "sqlite":
        inside = str(target) in {f"{place}{s}" for s in ("", "-wal", "-shm", "-journal")}
    else:
        inside = target == place or place in target.parents
    if inside:
        raise MaintenanceError(f"cannot export {backend.location} into its own files: {shown}")


def _new_file_mode() -> int:
    """The mode ``open()`` would give a new file under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _write_lines(
    backend: ResultsBackend,
    handle: IO[str],
    prefix: str | None,
    batch_size: int,
    progress: ProgressSink | None,
) -> int:
    count = 0
    for result_id, record in iter_records(
        backend, prefix, batch_size=batch_size, progress=progress
    ):
        handle.write(to_jsonl_line(result_id, record) + "\n")
        count += 1
    return count


def import_jsonl(
    store: Store,
    source: str | os.PathLike[str] | IO[str],
    *,
    on_conflict: SetBehavior = SetBehavior.RAISE_IF_DIFFERENT,
    progress: ProgressSink | None = None,
) -> TransferReport:
    """Store every record of a JSON Lines export, envelope and times unchanged.

    Records are written one by one as the file is read; a bad line stops the import
    with the records before it stored (``check_jsonl`` first finds bad lines without
    a store). Importing the same file again stores nothing new under the default
    ``on_conflict``. A record the store cannot hold is listed in ``refused``.

    Args:
        store: the store to write to.
        source: a file path or an open text stream.
        on_conflict: what an ID that is already stored gets, as in ``ResultsManager.set``:
            ``RAISE_IF_DIFFERENT`` (default: equal records are skipped, different ones
            raise), ``SKIP_IF_EXISTS``, ``RAISE_IF_EXISTS`` or ``OVERWRITE`` (keeps the
            stored creation time, like every overwrite).
        progress: told of each record (the total is not known in advance).

    Raises:
        CorruptRecordError: a line is not a results_flow record (names the line), or
            the file is not UTF-8.
        InvalidResultIdError: a line's ID breaks the grammar; names the line.
        ResultConflictError: RAISE_IF_DIFFERENT and the store holds other data.
        ResultExistsError: RAISE_IF_EXISTS and the ID is stored.
        StoreUnavailableError: the file cannot be read.
    """
    backend = backend_of(store)
    if progress is not None:
        progress.start(None)
    if not isinstance(source, str | os.PathLike):
        return _import_lines(backend, source, _stream_name(source), on_conflict, progress)
    path = Path(source)
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise StoreUnavailableError(f"cannot read the import file {path}: {exc.strerror}") from exc
    with handle:
        try:
            return _import_lines(backend, handle, str(path), on_conflict, progress)
        except UnicodeDecodeError as exc:
            raise CorruptRecordError(f"{path} is not UTF-8 text: {exc}") from exc


def check_jsonl(path: str | os.PathLike[str]) -> int:
    """Read a JSON Lines export through without storing anything; the number of records.

    The command line runs it before it opens (and so creates) the target store.

    Raises:
        CorruptRecordError: a line is not a results_flow record, or the file is not UTF-8.
        InvalidResultIdError: a line's ID breaks the grammar; names the line.
        StoreUnavailableError: the file cannot be read.
    """
    path = Path(path)
    count = 0
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    from_jsonl_line(line, f"{path} line {number}")
                    count += 1
    except UnicodeDecodeError as exc:
        raise CorruptRecordError(f"{path} is not UTF-8 text: {exc}") from exc
    except OSError as exc:
        raise StoreUnavailableError(f"cannot read the import file {path}: {exc.strerror}") from exc
    return count


def _import_lines(
    backend: ResultsBackend,
    lines: Iterable[str],
    name: str,
    on_conflict: SetBehavior,
    progress: ProgressSink | None,
) -> TransferReport:
    read = written = 0
    refused: list[Refusal] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{name} line {number}"
        result_id, record = from_jsonl_line(line, where)
        read += 1
        try:
            written += copy_record(backend, result_id, record, on_conflict, refused)
        except (ResultConflictError, ResultExistsError) as exc:
            raise type(exc)(f"{where}: {exc}") from exc
        if progress is not None:
            progress.advance(1)
    return _transfer(name, backend.location, read, written, refused)


def migrate(
    source: Store,
    target: Store,
    prefix: str | None = None,
    *,
    on_conflict: SetBehavior = SetBehavior.RAISE_IF_DIFFERENT,
    batch_size: int = RECORDS_PER_STEP,
    progress: ProgressSink | None = None,
) -> TransferReport:
    """Copy every record under ``prefix`` from one store to another, envelopes unchanged.

    Running it again after an interruption copies only what is missing (equal
    records are skipped under the default ``on_conflict``; see ``import_jsonl``).
    A record the target cannot hold is listed in ``refused``, and the copy goes on.

    Raises:
        MaintenanceError: source and target are the same store.
        InvalidResultIdError: the prefix breaks the ID grammar.
        CorruptRecordError: a source record cannot be decoded.
        ResultConflictError: RAISE_IF_DIFFERENT and the target holds other data.
        ResultExistsError: RAISE_IF_EXISTS and the ID is in the target.
    """
    source_backend, target_backend = backend_of(source), backend_of(target)
    if source_backend is target_backend or (
        source_backend.location and source_backend.location == target_backend.location
    ):
        raise MaintenanceError(f"cannot migrate {source_backend.location} onto itself")
    read = written = 0
    refused: list[Refusal] = []
    for result_id, record in iter_records(
        source_backend, prefix, batch_size=batch_size, progress=progress
    ):
        read += 1
        written += copy_record(target_backend, result_id, record, on_conflict, refused)
    return _transfer(source_backend.location, target_backend.location, read, written, refused)


def copy_record(
    backend: ResultsBackend,
    result_id: str,
    record: Record,
    on_conflict: SetBehavior,
    refused: list[Refusal],
) -> bool:
    """``put``, unless the target cannot hold the record: then it joins ``refused``."""
    reason = backend.unfit_reason(result_id, record)
    if reason is None:
        try:
            return put(backend, result_id, record, on_conflict)
        except StoreError as exc:
            # A limit the backend did not state. Its subclasses (unreachable, busy,
            # lock errors) concern the store, not this record: they stop the copy.
            if type(exc) is not StoreError:
                raise
            reason = str(exc)
    refused.append(Refusal(id=result_id, reason=reason))
    return False


def put(backend: ResultsBackend, result_id: str, record: Record, on_conflict: SetBehavior) -> bool:
    """Store a ready-made record under ``on_conflict``; True when it was written.

    Raises:
        ResultConflictError: RAISE_IF_DIFFERENT and the store holds other data.
        ResultExistsError: RAISE_IF_EXISTS and the ID is stored.
    """
    try:
        return write_record(backend, result_id, record, on_conflict)
    except ResultExistsError as exc:  # without resolve_insert's hint, which names set()'s argument
        raise ResultExistsError(
            f"result {result_id!r} already exists in {backend.location}"
        ) from exc


def _transfer(
    source: str, target: str, read: int, written: int, refused: list[Refusal] | None = None
) -> TransferReport:
    refused = refused or []
    return TransferReport(
        source=source,
        target=target,
        read=read,
        written=written,
        skipped=read - written - len(refused),
        refused=refused,
    )


def _stream_name(stream: IO[str]) -> str:
    name = getattr(stream, "name", None)
    return name if isinstance(name, str) else "<stream>"
