"""What results_map does with failure records (``results_flow.failures``).

Once per map, before anything is submitted, ``FailureBook.read`` lists the failure
records under the map's IDs (one listing; no record read when there are none). From
them the map holds back the items it must not run again (``retry_failed=False``: any
that failed before; ``max_failures=N``: those that failed the last N runs in a row),
reported as failed with a ``FailedItemError``. After the map, ``settle`` writes a record
for each item that failed after its retries (its runs in a row counted on) and removes
the records of the items that now have a result, computed or found stored. Single
results_task runs outside a map keep no failure records.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prefect.context import FlowRunContext

from results_flow.errors import FailedItemError
from results_flow.failures import (
    ItemFailure,
    clear_failures,
    error_type,
    failures_among,
    record_failures,
)
from results_flow.manager import ResultsManager
from results_flow.records import utc_now


@dataclass(frozen=True)
class ItemFailed:
    """How one item failed in this run: its error, attempts and the task run that ran it."""

    error: BaseException
    attempts: int
    task_run_id: str | None


def checked_max_failures(max_failures: int | None, task_name: str) -> int | None:
    """``max_failures`` when None or a whole number of at least 1.

    Raises:
        ValueError: anything else; names the task and the value.
    """
    if max_failures is None or (
        isinstance(max_failures, int) and not isinstance(max_failures, bool) and max_failures >= 1
    ):
        return max_failures
    raise ValueError(
        f"results_map {task_name!r}: max_failures must be a whole number, at least 1, or "
        f"None, not {max_failures!r}"
    )


class FailureBook:
    """The failure records of one map's IDs, read once, and what the map does with them."""

    def __init__(self, store: ResultsManager, known: dict[str, ItemFailure]) -> None:
        self.store = store
        #: The failure records found when the map started, by result ID.
        self.known = known

    @classmethod
    def read(cls, store: ResultsManager, result_ids: Sequence[str]) -> FailureBook:
        """The failure records among ``result_ids`` (one listing under their prefix)."""
        return cls(store, failures_among(store, result_ids))

    def held_back(
        self, missing: Iterable[str], *, retry_failed: bool, max_failures: int | None
    ) -> dict[str, FailedItemError]:
        """The items among ``missing`` not to run again, each with the error reported."""
        held: dict[str, FailedItemError] = {}
        for rid in missing:
            failure = self.known.get(rid)
            if failure is None:
                continue
            if not retry_failed:
                why = "retry_failed=False"
            elif max_failures is not None and failure.runs_failed >= max_failures:
                why = f"max_failures={max_failures}"
            else:
                continue
            held[rid] = FailedItemError(
                f"{rid!r} not run again ({why}): it failed {failure.runs_failed} run(s) in a "
                f"row, last at {failure.failed_at.isoformat(timespec='seconds')} after "
                f"{failure.attempts} attempt(s): {failure.error_type}: {failure.message} "
                "(its failure record: results-flow ls --failed)"
            )
        return held

    def settle(
        self,
        *,
        task_name: str,
        flow_name: str,
        failed: dict[str, ItemFailed],
        succeeded: Iterable[str],
    ) -> None:
        """Record each item of ``failed`` (counting on from its record), and remove the
        records of ``succeeded`` items that had one."""
        now = utc_now()
        context = FlowRunContext.get()
        flow_run = context.flow_run if context is not None else None
        records = []
        for rid, item in failed.items():
            before = self.known.get(rid)
            records.append(
                ItemFailure(
                    result_id=rid,
                    error_type=error_type(item.error),
                    message=str(item.error),
                    attempts=item.attempts,
                    runs_failed=1 if before is None else before.runs_failed + 1,
                    flow_name=flow_name,
                    task_name=task_name,
                    flow_run_id=str(flow_run.id) if flow_run is not None else None,
                    task_run_id=item.task_run_id,
                    failed_at=now,
                    first_failed_at=now if before is None else before.first_failed_at,
                )
            )
        record_failures(self.store, records)
        if self.known:
            clear_failures(self.store, [rid for rid in succeeded if rid in self.known])
