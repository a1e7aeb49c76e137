"""Chunked maps: one Prefect task run computes a chunk of a results_task's inputs.

A chunk run calls the results_task's own wrapped function once per input, so each
item builds the same result ID, skips, locks and stores exactly as its own task run
would, and is stored the moment it is computed: a chunk killed half way loses only the
item in flight. The chunk task carries the results_task's name (the wrapper reads it to
build the IDs), so its runs show as ``<task>-chunk-<first>`` in the UI. A failing item
does not stop its chunk: it is retried as the task's ``retries`` say, then reported in
the chunk's outcomes, and the chunk run ends Completed with a message counting them.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
from prefect import State, Task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed
from pydantic import BaseModel

from results_flow.prefect.runtime import CACHED_STATE_NAME


@dataclass(frozen=True)
class ItemOutcome:
    """What became of one result ID: its result and whether it was computed now, or
    the error its run ended with."""

    result: BaseModel | None
    computed: bool
    error: BaseException | None = None


def chunk_task(task: Task[Any, Any]) -> Task[Any, Any]:
    """A task whose run computes a list of ``task``'s calls (keyword-argument dicts)."""
    item_fn = task.fn
    attempts = 1 + max(task.retries or 0, 0)
    delays = task.retry_delay_seconds

    def pause(attempt: int) -> float:
        if isinstance(delays, int | float):
            return float(delays)
        if isinstance(delays, list) and delays:
            return float(delays[min(attempt, len(delays) - 1)])
        return 0.0

    fn: Callable[..., Any]
    if inspect.iscoroutinefunction(item_fn):

        async def run_chunk_async(calls: list[dict[str, Any]], first: int) -> State[Any]:
            outcomes = []
            for kwargs in calls:
                for attempt in range(attempts):
                    try:
                        outcome = _settled(await item_fn(**kwargs))
                        break
                    except Exception as exc:  # noqa: BLE001 - reported per item
                        outcome = ItemOutcome(None, computed=False, error=exc)
                        if attempt + 1 < attempts:
                            await anyio.sleep(pause(attempt))
                outcomes.append(outcome)
            return _chunk_state(outcomes)

        fn = run_chunk_async
    else:

        def run_chunk(calls: list[dict[str, Any]], first: int) -> State[Any]:
            outcomes = []
            for kwargs in calls:
                for attempt in range(attempts):
                    try:
                        outcome = _settled(item_fn(**kwargs))
                        break
                    except Exception as exc:  # noqa: BLE001 - reported per item
                        outcome = ItemOutcome(None, computed=False, error=exc)
                        if attempt + 1 < attempts:
                            time.sleep(pause(attempt))
                outcomes.append(outcome)
            return _chunk_state(outcomes)

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


def _settled(value: Any) -> ItemOutcome:
    """The outcome of one call of a results_task's wrapper (a state inside a task run)."""
    if isinstance(value, State):
        result: BaseModel = value.data
        return ItemOutcome(result, computed=value.name != CACHED_STATE_NAME)
    return ItemOutcome(value, computed=True)


def _chunk_state(outcomes: list[ItemOutcome]) -> State[Any]:
    failed = sum(1 for outcome in outcomes if outcome.error is not None)
    computed = sum(1 for outcome in outcomes if outcome.computed)
    message = f"{len(outcomes)} items: {computed} computed, {failed} failed"
    return Completed(message=message, data=outcomes)
