"""Batch resume: run a results_task over many inputs, computing only what is missing.

``results_map`` builds every input's result ID, reads the stored ones in one store
round trip, submits only the missing inputs to the flow's task runner, and returns
every result in input order with counts of what was computed and what was reused.
Resuming a fan-out of N items of which most are done thus costs about one batch
read, not N Prefect task runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, overload

from prefect import Task, get_run_logger
from prefect.exceptions import MissingContextError
from prefect.futures import PrefectFuture, wait
from prefect.utilities.annotations import unmapped
from pydantic import BaseModel

from results_flow.prefect.decorator import runtime_of
from results_flow.prefect.naming import current_flow_name
from results_flow.prefect.runtime import CACHED_STATE_NAME, logger

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class ResumeResults(Sequence[M], Generic[M]):
    """Every input's result in input order, with what this call computed and reused.

    Iterate it or index it like a list of results.
    """

    results: list[M]
    ids: list[str]
    computed: int
    reused: int
    seconds: float = field(default=0.0, compare=False)

    @overload
    def __getitem__(self, index: int) -> M: ...
    @overload
    def __getitem__(self, index: slice) -> list[M]: ...
    def __getitem__(self, index: int | slice) -> M | list[M]:
        return self.results[index]

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[M]:
        return iter(self.results)

    def summary(self) -> str:
        """One line for logs: how many results, computed and reused."""
        return (
            f"{len(self.results)} results: {self.computed} computed, "
            f"{self.reused} reused from the store ({self.seconds:.2f}s)"
        )


def results_map(
    task: Task[Any, Any], /, *iterables: Any, **keyword_iterables: Any
) -> ResumeResults[Any]:
    """Run a results_task over many inputs, submitting only those not yet stored.

    Arguments follow ``Task.map``: each iterable gives one parameter's values
    (positional ones fill the parameters in order), and ``prefect.unmapped(value)``
    passes the same value to every call. Inputs that share a result ID are computed
    once. Must run in a flow (or anywhere ``task.submit`` works); it blocks until the
    submitted runs finish.

    Returns:
        The results in input order, with counts computed and reused.

    Raises:
        ResultsTaskError: ``task`` was not made by ``results_task``.
        InvalidResultsError: stored results no longer validate and the task's
            ``on_invalid="raise"``; raised after every other input has run.
        ValueError: the iterables differ in length or name no parameter.
        UnhashableParameterError: an input has no canonical JSON; names the parameter.
        Exception: the first failure among the submitted runs, once all have finished.
    """
    started = time.perf_counter()
    runtime = runtime_of(task)
    calls_kwargs = _expand(task, runtime.bind_names(), iterables, keyword_iterables)
    flow_name = current_flow_name()
    ids = [
        runtime.call(task.name, runtime.bind((), kwargs), flow_name).result_id
        for kwargs in calls_kwargs
    ]
    unique_ids = list(dict.fromkeys(ids))
    # Stored results that no longer validate never stop the rest from being submitted:
    # "recompute" submits them too; "raise" raises after the others have run.
    found, invalid = runtime.stored_results(unique_ids, task)
    held_back = set(invalid) if runtime.on_invalid == "raise" else set()
    first_index = {rid: i for i, rid in reversed(list(enumerate(ids)))}
    missing = [rid for rid in unique_ids if rid not in found and rid not in held_back]
    log = _logger()
    log.info(
        "results_map %s: %d inputs, %d stored results reused, %d to run",
        task.name,
        len(ids),
        len(ids) - sum(1 for rid in ids if rid not in found),
        len(missing),
    )
    futures: dict[str, PrefectFuture[Any]] = {
        rid: task.submit(**calls_kwargs[first_index[rid]]) for rid in missing
    }
    computed_ids = _collect(futures, found)
    if held_back:
        runtime.invalid_found(invalid, total=len(unique_ids))
    results = [found[rid] for rid in ids]
    computed = sum(1 for rid in ids if rid in computed_ids)
    report = ResumeResults(
        results=results,
        ids=ids,
        computed=computed,
        reused=len(ids) - computed,
        seconds=time.perf_counter() - started,
    )
    log.info("results_map %s: %s", task.name, report.summary())
    return report


def _collect(futures: dict[str, PrefectFuture[Any]], found: dict[str, BaseModel]) -> set[str]:
    """Wait for every submitted run, put its result in ``found``; the IDs computed now."""
    wait(list(futures.values()))
    computed: set[str] = set()
    failure: BaseException | None = None
    for rid, future in futures.items():
        state = future.state
        if not state.is_completed():
            failure = failure or _exception_of(future)
            continue
        found[rid] = future.result()
        if state.name != CACHED_STATE_NAME:
            computed.add(rid)
    if failure is not None:
        failed = sum(1 for f in futures.values() if not f.state.is_completed())
        failure.add_note(f"results_map: {failed} of {len(futures)} submitted runs did not complete")
        raise failure
    return computed


def _exception_of(future: PrefectFuture[Any]) -> BaseException:
    try:
        future.result(raise_on_failure=True)
    except BaseException as exc:  # noqa: BLE001 - handed back to the caller unchanged
        return exc
    return RuntimeError(f"task run {future.task_run_id} ended {future.state.type.value}")


def _expand(
    task: Task[Any, Any],
    parameter_names: Sequence[str],
    iterables: tuple[Any, ...],
    keyword_iterables: dict[str, Any],
) -> list[dict[str, Any]]:
    """One keyword-argument dict per call, from ``Task.map``-style arguments."""
    if len(iterables) > len(parameter_names):
        raise ValueError(
            f"results_map {task.name!r}: {len(iterables)} positional iterables for "
            f"{len(parameter_names)} parameters"
        )
    named: dict[str, Any] = dict(zip(parameter_names, iterables, strict=False))
    for name, value in keyword_iterables.items():
        if name in named:
            raise ValueError(f"results_map {task.name!r}: parameter {name!r} given twice")
        named[name] = value
    unknown = set(named) - set(parameter_names)
    if unknown:
        raise ValueError(f"results_map {task.name!r}: no parameter named {sorted(unknown)}")
    static = {k: v.unwrap() for k, v in named.items() if isinstance(v, unmapped)}
    mapped = {k: _as_list(task, k, v) for k, v in named.items() if not isinstance(v, unmapped)}
    lengths = {k: len(v) for k, v in mapped.items()}
    if not mapped:
        raise ValueError(f"results_map {task.name!r}: give at least one iterable to map over")
    if len(set(lengths.values())) > 1:
        raise ValueError(f"results_map {task.name!r}: iterables differ in length: {lengths}")
    count = next(iter(lengths.values()))
    return [{**static, **{k: v[i] for k, v in mapped.items()}} for i in range(count)]


def _as_list(task: Task[Any, Any], name: str, value: Any) -> list[Any]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ValueError(
            f"results_map {task.name!r}: parameter {name!r} needs an iterable "
            "(wrap a constant in prefect.unmapped)"
        )
    return list(value)


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except MissingContextError:
        return logger
