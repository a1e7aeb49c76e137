"""Operations built on other backend calls, written once for the sync and async APIs.

A plan is a generator that yields ``Call``s (a backend method by name, its arguments)
and gets each call's outcome sent back; a ``CorruptRecordError`` the call raises is sent
back as its outcome, so the plan decides what a damaged record means. ``drive`` runs a
plan on a ``ResultsBackend``, ``adrive`` on an ``AsyncResultsBackend``. The default
``find_ids`` and ``delete_many`` of both interfaces are such plans, and so is the
managers' ``find``.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from results_flow.errors import CorruptRecordError
from results_flow.query import RecordQuery
from results_flow.records import Record

if TYPE_CHECKING:
    from results_flow.backends.base import AsyncResultsBackend, ResultsBackend

T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """Call the backend method ``method`` with ``args``."""

    method: str
    args: tuple[Any, ...]


CallPlan = Generator[Call, Any, T]


def drive(plan: CallPlan[T], backend: ResultsBackend) -> T:
    """Run ``plan`` on a synchronous backend."""
    outcome: Any = None
    while True:
        try:
            call = plan.send(outcome)
        except StopIteration as done:
            result: T = done.value
            return result
        try:
            outcome = getattr(backend, call.method)(*call.args)
        except CorruptRecordError as exc:
            outcome = exc


async def adrive(plan: CallPlan[T], backend: AsyncResultsBackend) -> T:
    """Run ``plan`` on an asynchronous backend."""
    outcome: Any = None
    while True:
        try:
            call = plan.send(outcome)
        except StopIteration as done:
            result: T = done.value
            return result
        try:
            outcome = await getattr(backend, call.method)(*call.args)
        except CorruptRecordError as exc:
            outcome = exc


def read_plan(result_ids: Sequence[str]) -> CallPlan[dict[str, Record]]:
    """The readable records among ``result_ids``: one batch read; when a damaged record
    spoils it, one read per ID, the damaged ones left out."""
    found = yield Call("read_many", (result_ids,))
    if not isinstance(found, CorruptRecordError):
        return dict(found)
    records: dict[str, Record] = {}
    for result_id in result_ids:
        record = yield Call("read", (result_id,))
        if isinstance(record, Record):
            records[result_id] = record
    return records


def find_plan(query: RecordQuery, batch_size: int) -> CallPlan[list[str]]:
    """The sorted IDs whose records ``query`` selects, from a listing and batch reads;
    a damaged record matches nothing."""
    ids: list[str] = yield Call("list_ids", (query.prefix,))
    if not query.selects_by_metadata and query.updated_before is None:
        return ids
    found: list[str] = []
    for start in range(0, len(ids), batch_size):
        batch = ids[start : start + batch_size]
        records = yield from read_plan(batch)
        found.extend(i for i in batch if i in records and query.matches(records[i]))
    return found


def delete_plan(result_ids: Sequence[str]) -> CallPlan[int]:
    """Delete each ID once; how many records were there."""
    deleted = 0
    for result_id in dict.fromkeys(result_ids):
        deleted += bool((yield Call("delete", (result_id,))))
    return deleted
