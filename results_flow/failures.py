"""Failures as data: what a results_map item that failed after its retries leaves behind.

Where they live: in the same store as the results, each under its result ID below the
reserved top segment ``_results_flow/failures/`` (``ids.RESERVED_ROOT``), as an
ordinary record of the model ``ItemFailure`` (namespace ``results_flow``). So every
backend keeps them without a change, they are read without a Prefect server
(``results-flow ls --failed``, ``failures_under``), and they never mix with results:

- a listing of the whole store (``list_ids()``, ``ls``, ``export``, ``migrate``,
  ``stats``, ``verify``, ``gc``, ``rm --prefix``) leaves the reserved segment out
  (``ids.listed``); a prefix under it lists them (``rm --prefix _results_flow/failures``
  removes them all);
- a result ID never names them, so ``get``, ``get_many`` and results_map's batch read of
  which results exist never meet one.

``results_map`` reads the failure records under its IDs' common prefix once per map (one
listing, no read when there are none), writes one per item that failed (counting the
runs it failed in a row), and removes those of items that now have a result.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime

from pydantic import BaseModel

from results_flow.errors import InvalidResultIdError
from results_flow.ids import RESERVED_ROOT, SEPARATOR, normalize_id
from results_flow.manager import ResultsManager, SetBehavior
from results_flow.registry import register_model

logger = logging.getLogger("results_flow.failures")

RESULTS_FLOW_NAMESPACE = "results_flow"
#: The prefix every failure record's ID starts with.
FAILURES_ROOT = f"{RESERVED_ROOT}{SEPARATOR}failures"


@register_model(namespace=RESULTS_FLOW_NAMESPACE)
class ItemFailure(BaseModel):
    """An item that produced no result: what failed, how often, and in which runs."""

    result_id: str
    """The ID its result would be stored under."""
    error_type: str
    """The exception's class (``module.Name``; builtins without a module)."""
    message: str
    attempts: int
    """Attempts in its last failed run (1 + the task's retries)."""
    runs_failed: int = 1
    """Runs of results_map in a row in which it failed (``max_failures`` counts these)."""
    flow_name: str | None = None
    task_name: str | None = None
    flow_run_id: str | None = None
    task_run_id: str | None = None
    """The task run that ran it last (a chunk's run for a chunked map)."""
    failed_at: datetime
    first_failed_at: datetime
    """When the first of the runs in a row failed."""


def failure_id(result_id: str) -> str:
    """The ID of the failure record of ``result_id``."""
    return f"{FAILURES_ROOT}{SEPARATOR}{result_id}"


def error_type(error: BaseException) -> str:
    """``module.Name`` of an exception's class (just ``Name`` for a builtin)."""
    cls = type(error)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def failures_under(store: ResultsManager, prefix: str | None = None) -> dict[str, ItemFailure]:
    """The failure records of the result IDs equal to ``prefix`` or below it (all if
    None), by result ID, sorted; one listing, and a batch read only of what it found.
    A record that no longer validates is left out.

    Raises:
        InvalidResultIdError: the prefix breaks the ID grammar.
    """
    root = FAILURES_ROOT if not prefix else failure_id(normalize_id(prefix))
    fids = store.list_ids(root)
    if not fids:
        return {}
    found = store.get_many(fids, ItemFailure, on_invalid="skip")
    skip = len(FAILURES_ROOT) + len(SEPARATOR)
    return {fid[skip:]: found[fid] for fid in fids if fid in found}


def failures_among(store: ResultsManager, result_ids: Sequence[str]) -> dict[str, ItemFailure]:
    """The failure records of ``result_ids``: one listing under a prefix they share."""
    if not result_ids:
        return {}
    under = failures_under(store, shared_folder(result_ids) or None)
    if not under:
        return {}
    wanted = set(result_ids)
    return {rid: failure for rid, failure in under.items() if rid in wanted}


def shared_folder(result_ids: Sequence[str]) -> str:
    """Whole segments that every ID continues below (``a/b`` for ``a/b/x`` and
    ``a/b/y``; ``""`` when none): the text the least and the greatest ID share, cut
    back to its last ``/``. Every ID between them shares that text, so this costs a
    ``min`` and a ``max``, not a split of every ID (results_map passes every ID it maps)."""
    least, greatest = min(result_ids), max(result_ids)
    same = 0
    for a, b in zip(least, greatest, strict=False):
        if a != b:
            break
        same += 1
    shared = least[:same]
    return shared[: max(shared.rfind(SEPARATOR), 0)]


def record_failures(store: ResultsManager, failures: Iterable[ItemFailure]) -> int:
    """Store each failure record (replacing the one before); returns how many were
    stored. One whose ID would be too long for the store's ID grammar is logged and
    skipped: a failure record never stops the map that reports the failure."""
    stored = 0
    for failure in failures:
        try:
            store.set(failure_id(failure.result_id), failure, SetBehavior.OVERWRITE)
        except InvalidResultIdError as exc:
            logger.warning("no failure record kept for %r: %s", failure.result_id, exc)
            continue
        stored += 1
    return stored


def clear_failures(store: ResultsManager, result_ids: Iterable[str]) -> int:
    """Remove the failure records of ``result_ids``; returns how many there were."""
    return sum(store.delete(failure_id(rid)) for rid in result_ids)
