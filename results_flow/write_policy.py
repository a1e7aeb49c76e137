"""The write policy: what a write does when its ID is taken (``SetBehavior``), decided
in one place for ``ResultsManager``, ``AsyncResultsManager`` and ``transfer``.

OVERWRITE is an upsert; every other behavior is an insert-if-absent whose result
``resolve_insert`` judges against whatever the store kept, so concurrent writers agree
on one winner.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING

from results_flow.backends.held import AsyncRecordWriter, RecordWriter
from results_flow.choices import member
from results_flow.errors import ResultConflictError, ResultExistsError
from results_flow.records import Record

if TYPE_CHECKING:
    from results_flow.backends.base import AsyncResultsBackend, ResultsBackend
    from results_flow.backends.held import AsyncHeldLock, HeldLock

Rewrites = Mapping[str, tuple[Record, Record]]
"""Upgraded records to write back: ID -> (the record read, the record replacing it)."""


class SetBehavior(StrEnum):
    """What ``set`` does when the ID already holds a result."""

    RAISE_IF_EXISTS = "raise_if_exists"
    """Raise ``ResultExistsError``."""
    SKIP_IF_EXISTS = "skip_if_exists"
    """Write nothing, whatever is stored; ``set`` returns False."""
    RAISE_IF_DIFFERENT = "raise_if_different"
    """Write nothing if type and data are equal (returns False); else ``ResultConflictError``."""
    OVERWRITE = "overwrite"
    """Replace it (the creation time is kept)."""


def as_behavior(value: SetBehavior | str) -> SetBehavior:
    """``value`` as a ``SetBehavior``: a member, or its value as a string ("overwrite").

    Raises:
        ValueError: ``value`` names no behavior; the message lists those that exist.
    """
    return member(SetBehavior, value, "behavior")


def resolve_insert(
    behavior: SetBehavior,
    result_id: str,
    record: Record,
    existing: Record | None,
    location: str,
) -> bool:
    """Whether an insert-if-absent wrote (True) or left the stored record (False).

    ``existing`` is what the insert found under the ID (None: it wrote ``record``).

    Raises:
        ResultExistsError: RAISE_IF_EXISTS and the ID was taken.
        ResultConflictError: RAISE_IF_DIFFERENT and the stored content differs.
    """
    if existing is None:
        return True
    if behavior is SetBehavior.SKIP_IF_EXISTS:
        return False
    if behavior is SetBehavior.RAISE_IF_EXISTS:
        raise ResultExistsError(
            f"result {result_id!r} already exists in {location}; "
            "pass behavior=SetBehavior.OVERWRITE or SKIP_IF_EXISTS"
        )
    if existing.same_content(record):
        return False
    what = (
        "data"
        if (existing.model_type, existing.namespace) == (record.model_type, record.namespace)
        else f"type {existing.namespace}:{existing.model_type}"
    )
    raise ResultConflictError(
        f"result {result_id!r} in {location} holds different {what} than the "
        f"{record.namespace}:{record.model_type} being set"
    )


def write_record(
    backend: RecordWriter, result_id: str, record: Record, behavior: SetBehavior
) -> bool:
    """Store ``record`` under ``behavior`` through ``backend`` (a store, or a lock held on
    the ID); True when written.

    Raises:
        ResultExistsError: RAISE_IF_EXISTS and the ID was taken.
        ResultConflictError: RAISE_IF_DIFFERENT and the stored content differs.
        ValueError: ``behavior`` names no behavior (nothing is written).
    """
    behavior = as_behavior(behavior)
    if behavior is SetBehavior.OVERWRITE:
        backend.upsert(result_id, record)
        return True
    existing = backend.insert(result_id, record)
    return resolve_insert(behavior, result_id, record, existing, backend.location)


async def awrite_record(
    backend: AsyncRecordWriter, result_id: str, record: Record, behavior: SetBehavior
) -> bool:
    """``write_record`` on an async backend (same rule, same errors)."""
    behavior = as_behavior(behavior)
    if behavior is SetBehavior.OVERWRITE:
        await backend.upsert(result_id, record)
        return True
    existing = await backend.insert(result_id, record)
    return resolve_insert(behavior, result_id, record, existing, backend.location)


def write_back(backend: ResultsBackend | HeldLock, rewrites: Rewrites) -> set[str]:
    """Write upgraded records back, each only if its ID still holds the record that was
    read (``replace_if_unchanged``): a write made since is kept, never overwritten by
    an upgrade of what it replaced. Through a lock held on the ID (``backend`` is a
    ``HeldLock``) the write goes through that lock, as ``set(..., lock=)`` does.

    Returns:
        The IDs written back (the others changed since they were read).
    """
    return {
        rid for rid, (seen, new) in rewrites.items() if backend.replace_if_unchanged(rid, new, seen)
    }


async def awrite_back(backend: AsyncResultsBackend | AsyncHeldLock, rewrites: Rewrites) -> set[str]:
    """``write_back`` on an async backend."""
    return {
        rid
        for rid, (seen, new) in rewrites.items()
        if await backend.replace_if_unchanged(rid, new, seen)
    }
