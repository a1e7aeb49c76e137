"""Chunked maps: one Prefect task run computes a chunk of a results_task's inputs.

Each input builds the same result ID as its own task run would, and is stored under it
the moment it is computed: a chunk killed half way loses only the item in flight. A
task's input goes through the same compute-once sequence as its own run
(``results_flow.prefect.compute_once``), without the first, unlocked lookup, since
results_map sends only inputs it found missing. The chunk task carries the results_task's
name (the IDs are built from it), so its runs show as ``<task>-chunk-<first>`` in the UI.
A failing item does not stop its chunk: it is retried as the task's ``retries`` say,
then reported in the chunk's outcomes; each retry and failure is logged in the chunk run's
logger with the item's result ID, and the chunk run ends Completed with a message counting
computed and failed items and retries."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
from prefect import State, Task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed

from results_flow.prefect.compute_once import run_async, run_sync
from results_flow.prefect.decorator import keeper_of
from results_flow.prefect.naming import Call
from results_flow.prefect.runtime import ResultKeeper, Reuse, run_logger
from results_flow.records import utc_now


@dataclass(frozen=True)
class ItemOutcome:
    """What became of one result ID: its result and whether it was computed now, or
    the error its run ended with."""

    result: Any  # the task's result type (None also when the run failed)
    computed: bool
    error: BaseException | None = None
    #: Attempts made at it in the run that settled it (a failed one: 1 + retries).
    attempts: int = 1


def chunk_task(task: Task[Any, Any]) -> Task[Any, Any]:
    """A task whose run computes a list of ``task``'s calls (keyword-argument dicts)."""
    attempts = 1 + max(task.retries or 0, 0)
    delays = task.retry_delay_seconds

    def pause(attempt: int) -> float:
        if isinstance(delays, int | float):
            return float(delays)
        if isinstance(delays, list) and delays:
            return float(delays[min(attempt, len(delays) - 1)])
        return 0.0

    keeper = keeper_of(task)
    fn: Callable[..., Any]
    if inspect.iscoroutinefunction(keeper.fn):

        async def run_chunk_async(
            calls: list[dict[str, Any]], first: int, inputs: Lineage = None
        ) -> State[Any]:
            reuse = keeper.reuse(task)
            report = _ChunkReport(attempts)
            for index, kwargs in enumerate(calls):
                call = _call_of(keeper, task.name, kwargs, inputs, index)
                for attempt in range(attempts):
                    try:
                        outcome = await _akept(keeper, call, kwargs, reuse)
                        break
                    except Exception as exc:  # noqa: BLE001 - reported per item
                        outcome = ItemOutcome(None, False, exc, attempt + 1)
                        if attempt + 1 < attempts:
                            report.retrying(call, attempt, exc, pause(attempt))
                            await anyio.sleep(pause(attempt))
                report.settled(call, outcome)
            return report.state()

        fn = run_chunk_async
    else:

        def run_chunk(
            calls: list[dict[str, Any]], first: int, inputs: Lineage = None
        ) -> State[Any]:
            # Once per chunk, not per item: the refresh switches and the expiry cutoff
            # (the results_task's own, not the chunk task's).
            reuse = keeper.reuse(task)
            report = _ChunkReport(attempts)
            for index, kwargs in enumerate(calls):
                call = _call_of(keeper, task.name, kwargs, inputs, index)
                for attempt in range(attempts):
                    try:
                        outcome = _kept(keeper, call, kwargs, reuse)
                        break
                    except Exception as exc:  # noqa: BLE001 - reported per item
                        outcome = ItemOutcome(None, False, exc, attempt + 1)
                        if attempt + 1 < attempts:
                            report.retrying(call, attempt, exc, pause(attempt))
                            time.sleep(pause(attempt))
                report.settled(call, outcome)
            return report.state()

        fn = run_chunk
    escaped = task.name.replace("{", "{{").replace("}", "}}")
    return Task(
        fn=fn,
        name=task.name,
        task_run_name=escaped + "-chunk-{first}",
        tags=set(task.tags),
        persist_result=False,
        cache_policy=NO_CACHE,
    )


#: A chunk's lineage: per call, the result IDs of its inputs by parameter (None: none).
Lineage = list[dict[str, list[str]] | None] | None


def _call_of(
    keeper: ResultKeeper, task_name: str, kwargs: dict[str, Any], inputs: Lineage, index: int
) -> Call:
    """The call of a chunk's item, with the lineage results_map sent for it."""
    call = keeper.call(task_name, keeper.bind((), kwargs))
    item_inputs = inputs[index] if inputs else None
    return dataclasses.replace(call, inputs=item_inputs) if item_inputs else call


def _kept(keeper: ResultKeeper, call: Call, kwargs: dict[str, Any], reuse: Reuse) -> ItemOutcome:
    """Compute (at most once) and store one input of a synchronous results_task. No
    lookup before the lock: results_map sends only inputs it found missing, and the
    lookup under the lock still finds a result another worker stored since."""
    started = utc_now()
    compute = functools.partial(keeper.fn, **kwargs)
    result, settled = run_sync(
        keeper, call, compute, reuse=reuse, started=started, look_first=False
    )
    return ItemOutcome(result, computed=settled == "computed")


async def _akept(
    keeper: ResultKeeper, call: Call, kwargs: dict[str, Any], reuse: Reuse
) -> ItemOutcome:
    """``_kept`` for an async results_task."""
    started = utc_now()
    compute = functools.partial(keeper.fn, **kwargs)
    result, settled = await run_async(
        keeper, call, compute, reuse=reuse, started=started, look_first=False
    )
    return ItemOutcome(result, computed=settled == "computed")


class _ChunkReport:
    """What a chunk run says of its items: each retry and each failure logged in the
    chunk run's logger with the item's result ID, and counted in its state's message."""

    def __init__(self, attempts: int) -> None:
        self.attempts = attempts
        self.outcomes: list[ItemOutcome] = []
        self.retries = 0
        self.log = run_logger()

    def retrying(self, call: Call, attempt: int, error: BaseException, delay: float) -> None:
        self.retries += 1
        self.log.warning(
            "item %s failed (attempt %d of %d), retrying in %gs: %r",
            call.result_id,
            attempt + 1,
            self.attempts,
            delay,
            error,
        )

    def settled(self, call: Call, outcome: ItemOutcome) -> None:
        self.outcomes.append(outcome)
        if outcome.error is not None:
            self.log.error(
                "item %s failed after %d attempt%s: %r",
                call.result_id,
                self.attempts,
                "" if self.attempts == 1 else "s",
                outcome.error,
            )

    def state(self) -> State[Any]:
        failed = sum(1 for outcome in self.outcomes if outcome.error is not None)
        computed = sum(1 for outcome in self.outcomes if outcome.computed)
        message = (
            f"{len(self.outcomes)} items: {computed} computed, {failed} failed, "
            f"{self.retries} retries"
        )
        return Completed(message=message, data=self.outcomes)
