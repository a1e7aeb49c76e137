"""Store maintenance: list, inspect, count and verify.

The ``results-flow`` command is a thin layer over these functions; they work the same
from Python. Each takes a ``ResultsManager`` or a bare ``ResultsBackend`` and speaks
only the public backend interface (``list_ids``, ``read_many`` in batches, ``insert``,
``upsert``, ``delete``), so they work on every backend, a custom one included. Each
returns a small report (a frozen Pydantic model, so ``model_dump(mode="json")`` is
the machine-readable form).

Deleting (``rm``, ``gc``) lives in ``results_flow.cleanup``; export, import and
migration in ``results_flow.transfer``.

Long calls report progress to an optional ``ProgressSink`` (``start(total)``, then
``advance(n)``); the command line draws it as a rich progress bar.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError, computed_field

from results_flow.backends.base import ResultsBackend, chunked
from results_flow.backends.file.store import FileBackend, shown_path
from results_flow.backends.registry import missing_local_store
from results_flow.blobs import PREFECT_NAMESPACE, PrefectResultBlob
from results_flow.errors import (
    CorruptRecordError,
    MaintenanceError,
    ModelModuleImportError,
    ResultValidationError,
    StoreUnavailableError,
    UnknownModelError,
)
from results_flow.ids import SEPARATOR, listed, normalize_id
from results_flow.manager import ResultsManager, decode
from results_flow.query import human_age as human_age
from results_flow.records import Record, load_json
from results_flow.registry import ensure_registered
from results_flow.settings import RECORDS_PER_STEP, default_store_url
from results_flow.urls import mask_url

Store = ResultsManager | ResultsBackend


class ProgressSink(Protocol):
    """Receives progress from a long maintenance call."""

    def start(self, total: int | None) -> None:
        """The call begins; ``total`` records are expected (None when unknown)."""

    def advance(self, count: int) -> None:
        """``count`` more records are done."""


class Report(BaseModel):
    model_config = ConfigDict(frozen=True)


class RecordSummary(Report):
    """One stored record as ``ls --long`` shows it."""

    id: str
    model_type: str
    namespace: str
    created_at: datetime
    updated_at: datetime
    size: int
    """Bytes of the record's JSON document (its export line without the ID)."""


class GroupStats(Report):
    """Count and total size of a group of records."""

    count: int = 0
    size: int = 0


class StoreStats(Report):
    """Counts and sizes of a store (or of the IDs under a prefix)."""

    location: str
    prefix: str | None
    count: int
    size: int
    corrupt: int
    oldest_update: datetime | None
    newest_update: datetime | None
    by_prefix: dict[str, GroupStats]
    by_model: dict[str, GroupStats]
    """Keyed ``namespace:ModelName``."""
    by_namespace: dict[str, GroupStats]


FailureKind = Literal["corrupt", "unknown_model", "invalid"]


class VerifyFailure(Report):
    """A record that cannot be read back as its registered model."""

    id: str
    kind: FailureKind
    model: str | None
    """``namespace:ModelName`` as stored; None when the record cannot be decoded."""
    detail: str
    """What is wrong, in one line (for a table)."""
    message: str
    """The full error message."""


class VerifyReport(Report):
    """What ``verify`` found: every record checked, the failures, stray files."""

    location: str
    checked: int
    valid: int
    failures: list[VerifyFailure]
    orphans: list[str]
    """Entries in a file store that hold no record: a killed writer's temp file, a foreign
    file, a symlink or FIFO, a name that is not UTF-8 (its bytes shown as ``\\xe9``)."""

    @property
    def ok(self) -> bool:
        """True when every record validated."""
        return not self.failures

    @computed_field  # type: ignore[prop-decorator]
    @property
    def counts(self) -> dict[str, int]:
        """Failures by kind (``corrupt``, ``invalid``, ``unknown_model``), largest first."""
        counted = Counter(failure.kind for failure in self.failures)
        return dict(counted.most_common())


# --- opening stores and loading models ------------------------------------------------


def open_store(url: str | None = None, *, create: bool = True) -> ResultsManager:
    """Open the store a URL names, or ``RESULTS_FLOW_STORE``, or the embedded default.

    Args:
        url: a store URL (``sqlite:///``, ``file://``, ``postgresql://``, ``memory://``)
            or a folder path; None for ``default_store_url()``.
        create: when False, a file or SQLite store that does not exist yet is an
            error instead of being created (so a mistyped URL is not a new empty store).

    Raises:
        UnsupportedStoreUrlError: unknown scheme or malformed URL.
        StoreUnavailableError: the store cannot be opened, or is missing and not ``create``.
    """
    url = default_store_url() if url is None else url
    if not create:
        missing = missing_local_store(url)
        if missing is not None:
            raise StoreUnavailableError(
                f"no results_flow store at {missing} (from {mask_url(url)!r})"
            )
    return ResultsManager.from_url(url)


def import_model_modules(modules: Iterable[str], *, search_path: str | None = None) -> list[str]:
    """Import modules so that their ``@register_model`` classes are known.

    Args:
        modules: dotted module names (``myproject.models``).
        search_path: a folder tried first (the current directory if None), as
            ``python -m`` would.

    Returns:
        The names imported.

    Raises:
        ModelModuleImportError: a module cannot be found or fails with an ImportError.
    """
    folder = os.getcwd() if search_path is None else search_path
    if folder not in sys.path:
        sys.path.insert(0, folder)
    imported = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ModelModuleImportError(f"cannot import models module {name!r}: {exc}") from exc
        imported.append(name)
    return imported


# --- reading records --------------------------------------------------------------------


def scan(
    store: Store,
    prefix: str | None = None,
    *,
    batch_size: int = RECORDS_PER_STEP,
    progress: ProgressSink | None = None,
) -> Iterator[tuple[str, Record | CorruptRecordError]]:
    """Every stored record under ``prefix`` (all if None), in ID order, read in batches.

    A record that cannot be decoded is yielded as its ``CorruptRecordError`` instead
    of stopping the scan; IDs deleted while scanning are left out.

    Raises:
        InvalidResultIdError: the prefix breaks the ID grammar.
    """
    backend = backend_of(store)
    rprefix = normalized_prefix(prefix)
    ids = listed(backend.list_ids(rprefix), rprefix)
    if progress is not None:
        progress.start(len(ids))
    for batch in chunked(ids, batch_size):
        yield from read_batch(backend, batch)
        if progress is not None:
            progress.advance(len(batch))


def iter_records(
    store: Store,
    prefix: str | None = None,
    *,
    batch_size: int = RECORDS_PER_STEP,
    progress: ProgressSink | None = None,
) -> Iterator[tuple[str, Record]]:
    """Every stored record under ``prefix``, in ID order, read in batches.

    Raises:
        InvalidResultIdError: the prefix breaks the ID grammar.
        CorruptRecordError: a record cannot be decoded (``verify`` lists them all).
    """
    for result_id, item in scan(store, prefix, batch_size=batch_size, progress=progress):
        if isinstance(item, CorruptRecordError):
            raise item
        yield result_id, item


def read_batch(
    backend: ResultsBackend, batch: Sequence[str]
) -> Iterator[tuple[str, Record | CorruptRecordError]]:
    """The stored records of ``batch`` in its order, a damaged one as its error."""
    try:
        found: dict[str, Record | CorruptRecordError] = dict(backend.read_many(batch))
    except CorruptRecordError:
        # One bad record spoils the batch call; read this batch one by one to find it.
        found = {}
        for result_id in batch:
            try:
                record = backend.read(result_id)
            except CorruptRecordError as exc:
                found[result_id] = exc
                continue
            if record is not None:
                found[result_id] = record
    for result_id in batch:
        if result_id in found:
            yield result_id, found[result_id]


def summaries(
    store: Store, prefix: str | None = None, *, ids: Sequence[str] | None = None
) -> list[RecordSummary]:
    """Type, namespace, times and size of each record under ``prefix``, or of ``ids``
    (those still stored, in their order).

    Raises:
        InvalidResultIdError: the prefix breaks the ID grammar.
        CorruptRecordError: a record cannot be decoded.
    """
    if ids is None:
        found: Iterable[tuple[str, Record]] = iter_records(store, prefix)
    else:
        found = _records_of(backend_of(store), ids)
    return [
        RecordSummary(
            id=result_id,
            model_type=record.model_type,
            namespace=record.namespace,
            created_at=record.created_at,
            updated_at=record.updated_at,
            size=document_size(record),
        )
        for result_id, record in found
    ]


def _records_of(backend: ResultsBackend, ids: Sequence[str]) -> Iterator[tuple[str, Record]]:
    for batch in chunked(ids, RECORDS_PER_STEP):
        for result_id, item in read_batch(backend, batch):
            if isinstance(item, CorruptRecordError):
                raise item
            yield result_id, item


def document_size(record: Record) -> int:
    """Bytes of a record's JSON document in UTF-8: the size ``stats`` adds up."""
    return len(record.to_document().encode("utf-8"))


def envelope(result_id: str, record: Record) -> dict[str, object]:
    """A record as a JSON-ready dict: the export line's content (ID, envelope, data).

    Raises:
        CorruptRecordError: the stored data is not JSON a reader can take (too deep).
    """
    try:
        return {"id": result_id, **load_json(record.to_document())}
    except ValueError as exc:
        raise CorruptRecordError(f"result {result_id!r}: stored data is unreadable: {exc}") from exc


# --- stats and verify -------------------------------------------------------------------


def stats(
    store: Store,
    prefix: str | None = None,
    *,
    depth: int = 1,
    progress: ProgressSink | None = None,
) -> StoreStats:
    """Count records and add up their sizes, by ID prefix, model and namespace.

    Args:
        store: the store.
        prefix: only IDs under this prefix.
        depth: how many leading ID segments form a ``by_prefix`` group.
        progress: told how many records are done.

    Raises:
        InvalidResultIdError: the prefix breaks the ID grammar.
        MaintenanceError: ``depth`` is below 1.
    """
    if depth < 1:
        raise MaintenanceError(f"stats depth must be at least 1, got {depth}")
    by_prefix: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_model: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_namespace: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    count = size = corrupt = 0
    oldest: datetime | None = None
    newest: datetime | None = None
    for result_id, item in scan(store, prefix, progress=progress):
        if isinstance(item, CorruptRecordError):
            corrupt += 1
            continue
        record_size = document_size(item)
        count += 1
        size += record_size
        group = SEPARATOR.join(result_id.split(SEPARATOR)[:depth])
        for table, key in (
            (by_prefix, group),
            (by_model, f"{item.namespace}:{item.model_type}"),
            (by_namespace, item.namespace),
        ):
            table[key][0] += 1
            table[key][1] += record_size
        oldest = item.updated_at if oldest is None else min(oldest, item.updated_at)
        newest = item.updated_at if newest is None else max(newest, item.updated_at)
    return StoreStats(
        location=backend_of(store).location,
        prefix=normalized_prefix(prefix),
        count=count,
        size=size,
        corrupt=corrupt,
        oldest_update=oldest,
        newest_update=newest,
        by_prefix=_groups(by_prefix),
        by_model=_groups(by_model),
        by_namespace=_groups(by_namespace),
    )


def _groups(table: dict[str, list[int]]) -> dict[str, GroupStats]:
    return {key: GroupStats(count=c, size=s) for key, (c, s) in sorted(table.items())}


def verify(
    store: Store,
    prefix: str | None = None,
    *,
    progress: ProgressSink | None = None,
) -> VerifyReport:
    """Validate every record against its registered model, collecting every failure.

    A failure is a record that cannot be decoded (``corrupt``), whose type tag is
    not registered in its namespace (``unknown_model``; import the module that
    registers it first), or whose data does not validate (``invalid``). A file
    store also lists stray files that hold no record (``orphans``, not failures).
    results_flow's own ``PrefectResultBlob`` records are always known.

    Raises:
        InvalidResultIdError: the prefix breaks the ID grammar.
    """
    ensure_registered(PrefectResultBlob, PREFECT_NAMESPACE)  # even after clear_registry()
    failures: list[VerifyFailure] = []
    checked = 0
    for result_id, item in scan(store, prefix, progress=progress):
        checked += 1
        if isinstance(item, CorruptRecordError):
            message = str(item)
            failures.append(
                VerifyFailure(
                    id=result_id, kind="corrupt", model=None, detail=message, message=message
                )
            )
            continue
        try:
            decode(result_id, item, None)
        except UnknownModelError as exc:
            failures.append(_failure(result_id, item, "unknown_model", exc))
        except ResultValidationError as exc:
            failures.append(_failure(result_id, item, "invalid", exc))
    backend = backend_of(store)
    orphans = (
        _file_orphans(backend, normalized_prefix(prefix))
        if isinstance(backend, FileBackend)
        else []
    )
    return VerifyReport(
        location=backend.location,
        checked=checked,
        valid=checked - len(failures),
        failures=failures,
        orphans=orphans,
    )


def _failure(result_id: str, record: Record, kind: FailureKind, exc: Exception) -> VerifyFailure:
    if isinstance(exc.__cause__, ValidationError):
        detail = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(model)'}: {error['msg']}"
            for error in exc.__cause__.errors()
        )
    else:
        detail = f"no model {record.model_type!r} registered in namespace {record.namespace!r}"
    return VerifyFailure(
        id=result_id,
        kind=kind,
        model=f"{record.namespace}:{record.model_type}",
        detail=detail,
        message=str(exc),
    )


def _file_orphans(backend: FileBackend, prefix: str | None) -> list[str]:
    """Stray entries in a file store's folders (under the prefix's folder): foreign,
    hidden or temporary files, symlinks, FIFOs, names that are not UTF-8; printable."""
    return [shown_path(path) for path in backend.stray_paths(prefix)]


# --- ages -------------------------------------------------------------------------------


#: Seconds per unit of an age such as ``30d`` or ``1d12h`` (M is 30 days, y 365 days).
AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000, "y": 31536000}
_AGE_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhdwMy])")  # ASCII digits only


def parse_age(text: str) -> timedelta:
    """An age written as number-unit pairs (``30d``, ``12h``, ``1d12h``, ``90m``, ``1w``).

    Raises:
        MaintenanceError: not such an age (a sign, a bare number, an unknown unit), or
            too long for a ``timedelta``.
    """
    spec = text.strip()
    parts = _AGE_PART.findall(spec)
    if not parts or "".join(number + unit for number, unit in parts) != spec:
        raise MaintenanceError(
            f"age {text!r} is not an age such as 30d, 12h, 1w or 1d12h "
            f"(units: {', '.join(AGE_UNITS)}; no sign)"
        )
    try:
        return timedelta(seconds=sum(float(n) * AGE_UNITS[unit] for n, unit in parts))
    except OverflowError as exc:
        raise MaintenanceError(f"age {text!r} is too long to count") from exc


# --- helpers ----------------------------------------------------------------------------


def backend_of(store: Store) -> ResultsBackend:
    return store.backend if isinstance(store, ResultsManager) else store


def normalized_prefix(prefix: str | None) -> str | None:
    """A prefix in canonical form; one trailing ``/`` is allowed (``models/`` is ``models``).

    Raises:
        InvalidResultIdError: the prefix breaks the ID grammar.
    """
    if prefix is None:
        return None
    return normalize_id(
        prefix[:-1] if prefix.endswith(SEPARATOR) and prefix != SEPARATOR else prefix
    )
