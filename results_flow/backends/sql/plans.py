"""What each SQL write does, written once for the sync and the async SQL store.

A plan is a generator that yields the one-row statements it needs (``First``: the first
row a statement returns; ``Count``: the rows it changed) and gets each outcome sent
back. ``run_plan`` drives it on a ``RowTransaction`` (``SqlBackend``'s row runners, and
through them the group commit that ``AsyncSqlBackend`` writes through too), so the
decisions of a write (an insert that met a conflict reads the stored record; one deleted
meanwhile tries again) live here alone.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from results_flow.backends.sql.engine import RetryTransaction
from results_flow.backends.sql.runner import Row, RowTransaction
from results_flow.backends.sql.statements import record_from_row, row_values
from results_flow.errors import CorruptRecordError
from results_flow.records import Record

T = TypeVar("T")


@dataclass(frozen=True)
class First:
    """The first row the statement ``name`` returns with ``values``, or None."""

    name: str
    values: dict[str, Any]


@dataclass(frozen=True)
class Count:
    """Run the statement ``name`` with ``values``; the number of rows it changed."""

    name: str
    values: dict[str, Any]


Plan = Generator[First | Count, Any, T]


def insert_plan(result_id: str, record: Record) -> Plan[Record | None]:
    """Insert unless the ID exists: None when written, else the stored record.

    Raises:
        RetryTransaction: the conflicting row was deleted before it could be read.
    """
    if (yield First("insert", row_values(result_id, record))) is not None:
        return None
    row: Row | None = yield First("read", {"id": result_id})
    if row is None:  # deleted between our conflict and this read: try again
        raise RetryTransaction
    return record_from_row(row)


def upsert_plan(result_id: str, record: Record) -> Plan[None]:
    """Insert or replace (the stored creation time is kept by the statement)."""
    yield Count("upsert", row_values(result_id, record))


def replace_plan(result_id: str, record: Record, seen: Record) -> Plan[bool]:
    """Replace the stored record only if it is still ``seen``; True when written. The
    row is read ``FOR UPDATE`` in the write's transaction, so no write comes between."""
    row: Row | None = yield First("read_for_update", {"id": result_id})
    if row is None:
        return False
    try:
        current = record_from_row(row)
    except CorruptRecordError:  # damaged since it was seen: someone else wrote it
        return False
    if not current.same_version(seen):
        return False
    yield Count("upsert", row_values(result_id, record))
    return True


def delete_plan(result_id: str) -> Plan[bool]:
    """Delete the ID; True when a row was there."""
    changed: int = yield Count("delete", {"id": result_id})
    return changed > 0


def run_plan(plan: Plan[T], rows: RowTransaction) -> T:
    """Drive ``plan`` inside a synchronous write transaction."""
    outcome: Any = None
    while True:
        try:
            step = plan.send(outcome)
        except StopIteration as done:
            result: T = done.value
            return result
        if isinstance(step, First):
            outcome = rows.first(step.name, step.values)
        else:
            outcome = rows.count(step.name, step.values)
