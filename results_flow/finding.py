"""``find``: stored results by what made them, written once for ``ResultsManager`` and
``AsyncResultsManager`` (a call plan, ``backends.call_plans``, that each drives).

The backend selects by ID prefix, metadata and age (``backend.find_ids``, indexed on SQL
stores); ``invalid=True`` then reads the selected records and keeps those that no
longer validate as their registered model, the one judgement that needs models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from results_flow.backends.call_plans import Call, CallPlan, read_plan
from results_flow.blobs import PREFECT_NAMESPACE, PrefectResultBlob
from results_flow.codec import decode
from results_flow.errors import ResultValidationError, UnknownModelError
from results_flow.ids import SEPARATOR, ResultId, listed, normalize_id
from results_flow.query import RecordQuery, cutoff_of, parse_params
from results_flow.records import Record
from results_flow.registry import ensure_registered
from results_flow.settings import RECORDS_PER_STEP


def record_query(
    prefix: ResultId | None = None,
    *,
    flow: str | None = None,
    task: str | None = None,
    flow_run: str | None = None,
    version: str | None = None,
    params: Mapping[str, Any] | Sequence[str] | None = None,
    older_than: timedelta | None = None,
) -> RecordQuery:
    """The query of ``find``'s arguments (a prefix may end with one ``/``); ``params``
    a mapping or ``name=value`` strings.

    Raises:
        InvalidResultIdError: the prefix breaks the ID grammar.
        MaintenanceError: ``older_than`` is negative or reaches back before the year 1.
    """
    if isinstance(prefix, str) and prefix.endswith(SEPARATOR) and prefix != SEPARATOR:
        prefix = prefix[:-1]
    return RecordQuery(
        prefix=None if prefix is None else normalize_id(prefix),
        flow=flow,
        task=task,
        flow_run=flow_run,
        version=version,
        params=parse_params(params),
        updated_before=None if older_than is None else cutoff_of(older_than),
    )


def find_plan(query: RecordQuery, *, invalid: bool) -> CallPlan[list[str]]:
    """The sorted IDs ``query`` selects; with ``invalid``, only those whose records no
    longer validate (a damaged record is left out: ``verify`` names it).

    Raises:
        UnknownModelError: with ``invalid``, a selected record's model is not registered,
            so whether it validates cannot be told.
    """
    found: list[str] = yield Call("find_ids", (query,))
    ids = listed(found, query.prefix)  # results_flow's own records only when asked for
    if not invalid:
        return ids
    ensure_registered(PrefectResultBlob, PREFECT_NAMESPACE)  # even after clear_registry()
    chosen: list[str] = []
    for start in range(0, len(ids), RECORDS_PER_STEP):
        batch = ids[start : start + RECORDS_PER_STEP]
        records = yield from read_plan(batch)
        chosen.extend(rid for rid in batch if rid in records and not still_valid(rid, records[rid]))
    return chosen


def still_valid(result_id: str, record: Record) -> bool:
    """Whether the record validates as its registered model.

    Raises:
        UnknownModelError: its model is not registered (says to import it).
    """
    try:
        decode(result_id, record, None)
    except ResultValidationError:
        return False
    except UnknownModelError as exc:
        raise UnknownModelError(
            f"{exc}; cannot tell whether it still validates: import the module that "
            "registers it first (results-flow: --import MODULE)"
        ) from exc
    return True
