"""Clean-up: what ``rm`` and ``gc`` delete, planned first (to show and confirm), then
deleted in batches (``backend.delete_many``).

``plan_delete`` takes IDs, or a prefix and the filters of ``find`` (``RecordQuery``:
flow, task, flow run, version, parameters, age, and ``invalid``). ``plan_gc`` picks by
age, by version (per task, keep the newest N versions), by validity, and by size
(oldest first until the rest fits). A plan chosen by what records hold remembers when it
was made, and a record updated since is kept when the plan is carried out.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import NamedTuple

from pydantic import Field

from results_flow.backends.base import chunked, unique
from results_flow.backends.call_plans import drive
from results_flow.errors import CorruptRecordError, MaintenanceError, ResultNotFoundError
from results_flow.finding import find_plan, still_valid
from results_flow.ids import listed, normalize_ids
from results_flow.maintenance import (
    ProgressSink,
    Report,
    Store,
    backend_of,
    document_size,
    normalized_prefix,
    read_batch,
    scan,
)
from results_flow.manager import not_found
from results_flow.query import RecordQuery, as_text, cutoff_of, human_age
from results_flow.records import Record, utc_now
from results_flow.settings import IDS_NAMED_IN_ERRORS, RECORDS_PER_STEP

__all__ = [
    "DeletePlan",
    "DeleteReport",
    "delete_planned",
    "human_age",
    "parse_size",
    "plan_delete",
    "plan_gc",
]


class DeletePlan(Report):
    """IDs chosen for deletion, to show (and confirm) before ``delete_planned`` runs."""

    location: str
    ids: list[str]
    prefix: str | None = None
    cutoff: datetime | None = None
    """For ``gc --older-than`` alone: only records last updated before this time go."""
    planned_at: datetime | None = None
    """For a plan chosen by what records hold: a record updated since is kept."""
    selection: str | None = None
    """The filters that chose the IDs, in words (``rm``)."""
    reasons: dict[str, int] = Field(default_factory=dict)
    """Why ``gc`` chose IDs: each reason and how many IDs it chose (an ID counts once,
    for the first reason that chose it)."""


class DeleteReport(Report):
    """The outcome of ``delete_planned``."""

    location: str
    deleted: int
    kept: int
    """Planned IDs not deleted: already gone, or updated since the plan."""


def plan_delete(
    store: Store,
    result_ids: str | Sequence[str] | None = None,
    *,
    prefix: str | None = None,
    query: RecordQuery | None = None,
    invalid: bool = False,
) -> DeletePlan:
    """The IDs ``rm`` would delete: the given IDs, or those a prefix and filters select
    (``query``; ``invalid``: only records that no longer validate). Give IDs or filters.

    Raises:
        MaintenanceError: both IDs and filters given, or neither.
        InvalidResultIdError: an ID or the prefix breaks the grammar.
        ResultNotFoundError: a given ID is not stored (names them; nothing is planned).
        UnknownModelError: ``invalid`` and a selected record's model is not registered.
    """
    backend = backend_of(store)
    ids = [result_ids] if isinstance(result_ids, str) else list(result_ids or ())
    filtered = prefix is not None or query is not None or invalid
    if bool(ids) == filtered:
        raise MaintenanceError(
            "give result IDs, or a prefix and filters, to delete; not both or neither"
        )
    if ids:
        wanted = unique(normalize_ids(ids))
        there = backend.exists_many(wanted)
        missing = [rid for rid in wanted if rid not in there]
        if len(missing) == 1:
            raise not_found(missing[0], backend.location)
        if missing:
            named = ", ".join(repr(rid) for rid in missing[:IDS_NAMED_IN_ERRORS])
            more = len(missing) - IDS_NAMED_IN_ERRORS
            raise ResultNotFoundError(
                f"{len(missing)} of the IDs are not stored in {backend.location}: {named}"
                + (f" and {more} more" if more > 0 else "")
                + "; nothing deleted"
            )
        return DeletePlan(location=backend.location, ids=wanted)
    query = query or RecordQuery()
    if prefix is not None:
        query = replace(query, prefix=normalized_prefix(prefix))
    if query == RecordQuery() and not invalid:
        raise MaintenanceError("rm needs IDs, a prefix or a filter; it never deletes everything")
    started = utc_now()
    chosen = drive(find_plan(query, invalid=invalid), backend)
    by_content = query.selects_by_metadata or query.updated_before is not None or invalid
    return DeletePlan(
        location=backend.location,
        ids=chosen,
        prefix=query.prefix,
        planned_at=started if by_content else None,
        selection=query.describe() + (", no longer valid" if invalid else ""),
    )


class _Entry(NamedTuple):
    """What ``gc`` weighs of one record."""

    id: str
    updated_at: datetime
    task: tuple[str | None, str | None]
    version: str | None
    size: int


def _entry(result_id: str, record: Record) -> _Entry:
    meta = record.metadata
    task = (as_text(meta.get("flow_name")), as_text(meta.get("task_name")))
    return _Entry(
        result_id, record.updated_at, task, as_text(meta.get("version")), document_size(record)
    )


def plan_gc(
    store: Store,
    older_than: timedelta | None = None,
    prefix: str | None = None,
    *,
    keep_versions: int | None = None,
    invalid: bool = False,
    max_size: int | None = None,
    now: datetime | None = None,
    progress: ProgressSink | None = None,
) -> DeletePlan:
    """The records (under ``prefix``) that any given rule picks, in one pass:

    - ``older_than``: last updated more than that long ago;
    - ``keep_versions``: per task (flow and task name), all but the newest N versions
      (a version is as new as its newest record; records without a version stay);
    - ``invalid``: records that no longer validate as their registered model;
    - ``max_size``: after the rules above, the oldest records until the rest holds at
      most that many bytes (``stats`` sizes).

    A record that cannot be decoded is never deleted (``verify`` names it). An age alone
    is answered by the store's ``find_ids`` (an index on SQL stores), not a scan.

    Raises:
        MaintenanceError: no rule given; ``older_than`` negative or before the year 1;
            ``keep_versions`` below 1; ``max_size`` negative.
        InvalidResultIdError: the prefix breaks the ID grammar.
        UnknownModelError: ``invalid`` and a record's model is not registered.
    """
    if older_than is None and keep_versions is None and not invalid and max_size is None:
        raise MaintenanceError("gc needs a rule: an age, versions to keep, invalid, or a size")
    if keep_versions is not None and keep_versions < 1:
        raise MaintenanceError(f"gc keeps at least 1 version per task, not {keep_versions}")
    if max_size is not None and max_size < 0:
        raise MaintenanceError(f"gc needs a size of zero or more, got {max_size}")
    started = now or utc_now()
    cutoff = None if older_than is None else cutoff_of(older_than, started)
    only_age = keep_versions is None and not invalid and max_size is None
    if only_age and cutoff is not None:  # the store answers it (by an index on SQL stores)
        query = RecordQuery(prefix=normalized_prefix(prefix), updated_before=cutoff)
        aged = listed(backend_of(store).find_ids(query), query.prefix)
        return DeletePlan(
            location=backend_of(store).location,
            ids=aged,
            prefix=query.prefix,
            cutoff=cutoff,
            planned_at=started,
            reasons={_age_reason(cutoff): len(aged)} if aged else {},
        )
    entries = []
    rejected = []
    for result_id, item in scan(store, prefix, progress=progress):
        if isinstance(item, CorruptRecordError):
            continue
        entries.append(_entry(result_id, item))
        if invalid and not still_valid(result_id, item):
            rejected.append(result_id)
    chosen: dict[str, str] = {}

    def choose(reason: str, ids: Iterable[str]) -> None:
        for result_id in ids:
            chosen.setdefault(result_id, reason)

    if cutoff is not None:
        choose(_age_reason(cutoff), (e.id for e in entries if e.updated_at < cutoff))
    if keep_versions is not None:
        noun = "version" if keep_versions == 1 else f"{keep_versions} versions"
        choose(f"older than the newest {noun} of their task", _old_versions(entries, keep_versions))
    choose("no longer valid", rejected)
    if max_size is not None:
        rest = [e for e in entries if e.id not in chosen]
        choose(f"oldest beyond {max_size:,} bytes", _oldest_over(rest, max_size))
    reasons: dict[str, int] = defaultdict(int)
    for reason in chosen.values():
        reasons[reason] += 1
    return DeletePlan(
        location=backend_of(store).location,
        ids=sorted(chosen),
        prefix=normalized_prefix(prefix),
        planned_at=started,
        reasons=dict(reasons),
    )


def _age_reason(cutoff: datetime) -> str:
    return f"last updated before {cutoff:%Y-%m-%d %H:%M:%S}"


def _old_versions(entries: Sequence[_Entry], keep: int) -> list[str]:
    """IDs of records whose version is not among the ``keep`` newest of their task."""
    newest: dict[tuple[str | None, str | None], dict[str, datetime]] = defaultdict(dict)
    for entry in entries:
        if entry.version is not None:
            seen = newest[entry.task].get(entry.version)
            if seen is None or entry.updated_at > seen:
                newest[entry.task][entry.version] = entry.updated_at
    dropped = {
        (task, version)
        for task, versions in newest.items()
        for version in sorted(versions, key=versions.__getitem__, reverse=True)[keep:]
    }
    return [e.id for e in entries if (e.task, e.version) in dropped]


def _oldest_over(entries: Sequence[_Entry], max_size: int) -> list[str]:
    """IDs of the oldest records whose removal leaves at most ``max_size`` bytes."""
    total = sum(entry.size for entry in entries)
    chosen = []
    for entry in sorted(entries, key=lambda e: (e.updated_at, e.id)):
        if total <= max_size:
            break
        chosen.append(entry.id)
        total -= entry.size
    return chosen


#: Bytes per unit of a size such as ``500MB`` or ``2GiB`` (decimal and binary units).
SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "m": 10**6,
    "g": 10**9,
    "t": 10**12,
    "ki": 2**10,
    "mi": 2**20,
    "gi": 2**30,
    "ti": 2**40,
}
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?) ?([kmgt]i?)?b?", re.IGNORECASE)


def parse_size(text: str) -> int:
    """A size in bytes written as ``1500000``, ``500MB``, ``1.5G``, ``2GiB`` or ``64k``.

    Raises:
        MaintenanceError: not such a size.
    """
    found = _SIZE.fullmatch(text.strip())
    if found is None:
        raise MaintenanceError(
            f"size {text!r} is not a size such as 500MB, 1.5G, 2GiB or 1500000 (bytes)"
        )
    number, unit = found.groups()
    return int(float(number) * SIZE_UNITS[(unit or "").lower()])


def delete_planned(
    store: Store,
    plan: DeletePlan,
    *,
    batch_size: int = RECORDS_PER_STEP,
    progress: ProgressSink | None = None,
) -> DeleteReport:
    """Delete the IDs of a plan, a batch at a time (``delete_many``).

    For a plan chosen by what records hold (``gc``, ``rm`` with filters) each batch is
    read again first, and a record updated since the plan (or, for an age, since the
    cutoff) is kept. A write that lands between that read and the delete is still lost:
    run it when nothing writes the IDs it prunes.

    Raises:
        MaintenanceError: the plan was made for another store.
    """
    backend = backend_of(store)
    if plan.location != backend.location:
        raise MaintenanceError(
            f"this deletion was planned for {plan.location}, not for {backend.location}"
        )
    if progress is not None:
        progress.start(len(plan.ids))
    guards = [moment for moment in (plan.cutoff, plan.planned_at) if moment is not None]
    deleted = 0
    for batch in chunked(plan.ids, batch_size):
        chosen: Sequence[str] = batch
        if guards:
            chosen = [
                result_id
                for result_id, item in read_batch(backend, batch)
                if not isinstance(item, CorruptRecordError)
                and all(item.updated_at < moment for moment in guards)
            ]
        deleted += backend.delete_many(chosen) if chosen else 0
        if progress is not None:
            progress.advance(len(batch))
    return DeleteReport(location=backend.location, deleted=deleted, kept=len(plan.ids) - deleted)
