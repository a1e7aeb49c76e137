"""Batch resume: run a results_task over many inputs, computing only what is missing.

``results_map`` builds every input's result ID, reads the stored ones in one store
round trip, submits only the missing inputs to the flow's task runner, and returns
every result in input order with counts of what was computed and what was reused.
Resuming a fan-out of N items of which most are done thus costs about one batch
read, not N Prefect task runs.
"""

from __future__ import annotations

import functools
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from prefect import Task, get_run_logger
from prefect.exceptions import MissingContextError
from prefect.futures import PrefectFuture, PrefectWrappedFuture
from prefect.tasks import TaskRunNameCallbackWithParameters
from pydantic import BaseModel

from results_flow.errors import ResultsFlowError
from results_flow.ids import common_prefix
from results_flow.prefect.chunks import ItemOutcome, chunk_task
from results_flow.prefect.decorator import (
    INPUTS_PARAMETER,
    check_runner_reaches,
    keeper_of,
    taking_inputs,
    with_keeper,
)
from results_flow.prefect.failed_items import FailureBook, ItemFailed, checked_max_failures
from results_flow.prefect.map_inputs import expand_inputs
from results_flow.prefect.naming import current_flow_name
from results_flow.prefect.progress import MapProgress, ProgressHook, progress_hook
from results_flow.prefect.report import Failure, MapArtifacts, MapSummary, ResumeResults
from results_flow.prefect.runtime import CACHED_STATE_NAME, ResultKeeper, logger
from results_flow.settings import IDS_NAMED_IN_ERRORS, MAP_MAX_IN_FLIGHT

M = TypeVar("M", bound=BaseModel)


def results_map(
    task: Task[Any, Any],
    /,
    *iterables: Any,
    chunk_size: int | None = None,
    max_in_flight: int | None = MAP_MAX_IN_FLIGHT,
    progress: bool | ProgressHook | None = None,
    expire_after: timedelta | None = None,
    retry_failed: bool = True,
    max_failures: int | None = None,
    **keyword_iterables: Any,
) -> ResumeResults[Any]:
    """Run a results_task over many inputs, submitting only those not yet stored.

    Arguments follow ``Task.map``: each iterable gives one parameter's values
    (positional ones fill the parameters in order), and ``prefect.unmapped(value)``
    passes the same value to every call. Like ``Task.map``, it takes Prefect futures
    and states in the arguments and in their lists, tuples, sets and dicts
    (``results_map(task, upstream.map(items))``, a list of futures, a future whose
    result is the list): it waits for them and builds
    each ID from their results; an input whose upstream failed is not run (the others
    are), and reported at the end. Inputs that share a result ID are computed
    once. Must run in a flow (or anywhere ``task.submit`` works); it blocks until the
    submitted runs finish. In a flow run it names each item's task run after its result
    ID and keeps a progress and a table artifact (``results_flow.prefect.report``).
    Ctrl-C logs how many of its results are stored, then propagates.

    An item that fails after its retries leaves a failure record in the store
    (``results_flow.failures``; ``results-flow ls --failed``), removed once it has a
    result. A result computed from upstream results keeps their IDs in its metadata
    (``results_flow.lineage``).

    Args:
        task: a task made by ``results_task``.
        *iterables: one iterable per positional parameter, as for ``Task.map``.
        chunk_size: send the missing inputs in chunks of this many, one task run per
            chunk, instead of one task run per input. Each item is still stored under
            its own ID (the same as without chunks) as soon as it is computed.
        max_in_flight: at most this many task runs (items, or chunks) submitted and not
            yet finished at once; the next is submitted as one finishes. The default
            (``MAP_MAX_IN_FLIGHT``, 32) keeps Prefect's unbounded default thread pool
            from starting a thread per item, whose store writes would then queue past
            the store's busy timeout; raise it for a larger Dask cluster. None: no bound
            (everything submitted at once, as ``Task.map`` does).
        progress: a callable fed one ``MapProgress`` per distinct result ID as it is
            settled (stored ones first, then each as its run completes), in the
            caller's thread; or True for a rich progress bar.
        expire_after: a stored result last updated longer ago than this is recomputed
            and overwritten (counted as expired); default the task's own
            ``expire_after``, else its Prefect ``cache_expiration``, else never.
        retry_failed: False: an item with a failure record is not run again, but
            reported as failed (``FailedItemError``).
        max_failures: an item that failed this many runs in a row is not run again,
            but reported as failed (``FailedItemError``); None: no cap.
        **keyword_iterables: one iterable (or ``unmapped`` value) per named parameter.

    Returns:
        The results in input order, with counts computed and reused.

    Raises:
        ResultsTaskError: ``task`` was not made by ``results_task``, or it locks (``lock=True``)
            on a store that offers no per-ID locks (raised before anything is submitted).
        InvalidResultsError: stored results no longer validate and the task's
            ``on_invalid="raise"``; raised after every other input has run.
        ValueError: the iterables differ in length or name no parameter,
            ``chunk_size``, ``max_in_flight`` or ``max_failures`` is not a whole number
            of at least 1, or ``expire_after`` is not a positive timedelta.
        FailedItemError: items held back by ``retry_failed`` or ``max_failures`` (as
            the first failure, after every other input has run).
        UnhashableParameterError: an input has no canonical JSON; names the parameter.
        Exception: the failure of an upstream of an ``unmapped`` value or of a whole
            iterable, at once (noted with the parameter); else, once every other input
            has run, the first input's upstream failure (noted with how many inputs
            it stopped, their indexes, parameters and errors), or the first failure
            among the submitted runs (noted with how many failed and their IDs).
        KeyboardInterrupt: re-raised, after logging how many results are stored.
    """
    options = _Options(
        chunk_size, max_in_flight, progress, expire_after, retry_failed, max_failures
    )
    return _results_map(task, iterables, keyword_iterables, options, cancellation=None)


@dataclass(frozen=True)
class _Options:
    """The options of one results_map (see ``results_map``)."""

    chunk_size: int | None
    max_in_flight: int | None
    progress: bool | ProgressHook | None
    expire_after: timedelta | None
    retry_failed: bool
    max_failures: int | None


def _results_map(
    task: Task[Any, Any],
    iterables: tuple[Any, ...],
    keyword_iterables: dict[str, Any],
    options: _Options,
    *,
    cancellation: _Cancellation | None,
) -> ResumeResults[Any]:
    """``results_map``; ``cancellation``, when given, can stop its submissions."""
    started = time.perf_counter()
    keeper = keeper_of(task)
    chunk_size, max_in_flight = options.chunk_size, options.max_in_flight
    max_failures = checked_max_failures(options.max_failures, task.name)
    if options.expire_after is not None:
        keeper = keeper.replace(expire_after=options.expire_after)
        task = with_keeper(task, keeper)
    for name, bound in (("chunk_size", chunk_size), ("max_in_flight", max_in_flight)):
        if bound is None:
            continue
        if isinstance(bound, bool) or not isinstance(bound, int) or bound < 1:
            raise ValueError(
                f"results_map {task.name!r}: {name} must be a whole number, at least 1, "
                f"not {bound!r}"
            )
    keeper.check_locks()  # once, before anything is submitted
    inputs = expand_inputs(task, keeper.bind_names(), iterables, keyword_iterables)
    calls_kwargs, upstream, lineage = inputs.calls, inputs.upstream, inputs.lineage
    flow_name = current_flow_name()
    # An input whose upstream failed has no ID (it is built from the upstream's result);
    # the others run, as Task.map runs the branches whose upstream completed.
    ids: list[str | None] = [
        None
        if i in upstream
        else keeper.call(task.name, keeper.bind((), kwargs), flow_name).result_id
        for i, kwargs in enumerate(calls_kwargs)
    ]
    unique_ids = list(dict.fromkeys(rid for rid in ids if rid is not None))
    # Stored results that no longer validate never stop the rest from being submitted:
    # "recompute" submits them too; "raise" raises after the others have run ("migrate"
    # upgraded and wrote back what it could before they were counted as invalid).
    found, invalid, expired = keeper.stored_results(unique_ids, task)
    held_back = set(invalid) if keeper.invalid.otherwise == "raise" else set()
    first_index = {rid: i for i, rid in reversed(list(enumerate(ids))) if rid is not None}
    missing = [rid for rid in unique_ids if rid not in found and rid not in held_back]
    book = FailureBook.read(keeper.manager(), unique_ids)
    failed_before = book.held_back(
        missing, retry_failed=options.retry_failed, max_failures=max_failures
    )
    if failed_before:
        missing = [rid for rid in missing if rid not in failed_before]
    log = _logger()
    log.info(
        "results_map %s: %d inputs, %d stored results reused, %d to run%s%s%s",
        task.name,
        len(ids),
        sum(1 for rid in ids if rid in found),
        len(missing),
        f" ({len(expired)} of them expired)" if expired else "",
        f", {len(failed_before)} not run again (they failed before)" if failed_before else "",
        f", {len(upstream)} not run (their upstream failed)" if upstream else "",
    )
    for failure in upstream.values():
        log.error(
            "results_map %s: %s not run, its upstream failed: %r",
            task.name,
            failure.label,
            failure.error,
        )
    if cancellation is not None:
        cancellation.on_cancel = functools.partial(_log_stored, keeper, task, log, unique_ids)
    total = len(unique_ids) + len(upstream)
    artifacts = MapArtifacts.open(task.name, total)
    # A failed run is made 1 + retries times (Prefect retries an item's own run).
    attempts = 1 + max(task.retries or 0, 0)
    runs: dict[str, str] = {}  # the task run of each failed ID
    try:
        with progress_hook(options.progress, f"results_map {task.name}", total) as hook:
            tally = _Tally([hook, artifacts.progress if artifacts else None], total)
            for index, failure in upstream.items():
                tally.settle_upstream(index, failure.error)
            for rid in unique_ids:
                if rid in found:
                    tally.settle(rid, ItemOutcome(found[rid], computed=False))
            for rid, reason in failed_before.items():
                tally.settle(rid, ItemOutcome(None, computed=False, error=reason))
            if artifacts is not None:
                artifacts.start(tally.done)
            if chunk_size is None:
                item_task = _named_after_ids(task, flow_name)
                lineage_task = taking_inputs(item_task) if lineage is not None else item_task

                def submit(rid: str) -> PrefectFuture[Any]:
                    index = first_index[rid]
                    item_inputs = lineage[index] if lineage is not None else None
                    future: PrefectFuture[Any]
                    if item_inputs:
                        future = lineage_task.submit(
                            **calls_kwargs[index], **{INPUTS_PARAMETER: item_inputs}
                        )
                    else:
                        future = item_task.submit(**calls_kwargs[index])
                    return future

                finished = _bounded(submit, missing, max_in_flight, cancellation)
                for rid, future in finished:
                    outcome = _outcome_of(future, attempts)
                    if outcome.error is not None:
                        runs[rid] = str(future.task_run_id)
                    tally.settle(rid, outcome)
            else:
                check_runner_reaches(task)  # the chunk task carries the same store
                runner = chunk_task(task)
                chunks = (missing[i : i + chunk_size] for i in range(0, len(missing), chunk_size))
                finished_chunks = _bounded(
                    lambda chunk: runner.submit(
                        [calls_kwargs[first_index[rid]] for rid in chunk],
                        first_index[chunk[0]],
                        None if lineage is None else [lineage[first_index[rid]] for rid in chunk],
                    ),
                    chunks,
                    max_in_flight,
                    cancellation,
                )
                for chunk, future in finished_chunks:
                    outcomes = _chunk_outcomes(future, len(chunk), attempts)
                    for rid, outcome in zip(chunk, outcomes, strict=True):
                        if outcome.error is not None:
                            runs[rid] = str(future.task_run_id)
                        tally.settle(rid, outcome)
    except KeyboardInterrupt:
        _log_stored(keeper, task, log, unique_ids, "interrupted")
        raise
    settled = missing + list(failed_before)  # what has an outcome beyond the batch read
    failures = sorted(
        [(i, failure) for i, failure in upstream.items()]
        + [
            (first_index[rid], Failure(rid, error))
            for rid in settled
            if (error := tally.outcomes[rid].error) is not None
        ]
        + [(first_index[rid], Failure(rid, invalid[rid])) for rid in held_back],
        key=lambda pair: pair[0],
    )
    computed_ids = {rid for rid in missing if tally.outcomes[rid].computed}
    failed_ids = {failure.label for _, failure in failures}
    computed = sum(1 for rid in ids if rid in computed_ids)
    failed = sum(1 for rid in ids if rid is None or rid in failed_ids)
    recomputed = sum(1 for rid in ids if rid in expired and rid in computed_ids) if expired else 0
    book.settle(
        task_name=task.name,
        flow_name=flow_name,
        failed={
            rid: ItemFailed(outcome.error, outcome.attempts, runs.get(rid))
            for rid in missing
            if (outcome := tally.outcomes[rid]).error is not None
        },
        succeeded=[rid for rid in book.known if rid in found or rid in computed_ids],
    )
    seconds = time.perf_counter() - started
    if artifacts is not None:
        summary = MapSummary(
            task_name=task.name,
            inputs=len(ids),
            distinct=len(unique_ids),
            computed=computed,
            reused=len(ids) - computed - failed,
            failed=failed,
            failures=[failure for _, failure in failures],
            store=keeper.store.describe(),
            prefix=common_prefix(unique_ids),
            seconds=seconds,
            expired=recomputed,
        )
        artifacts.finish(summary, tally.done)
    _raise_failures(task, log, settled, tally.outcomes, list(upstream.items()), len(ids))
    for rid in missing:  # none failed (raised above); a result may be None (Score | None)
        found[rid] = tally.outcomes[rid].result
    if held_back:
        keeper.invalid_found(invalid, total=len(unique_ids))
    results = [found[rid] for rid in ids if rid is not None]  # every ID settled, none None
    report = ResumeResults(
        results=results,
        ids=[rid for rid in ids if rid is not None],
        computed=computed,
        reused=len(ids) - computed,
        seconds=seconds,
        expired=recomputed,
    )
    log.info("results_map %s: %s", task.name, report.summary())
    return report


def _log_stored(
    keeper: ResultKeeper,
    task: Task[Any, Any],
    log: logging.Logger | logging.LoggerAdapter[logging.Logger],
    unique_ids: list[str],
    what: str,
) -> None:
    """Log how many of a stopped map's results are stored (every one kept: a rerun
    computes only the others)."""
    try:
        stored = len(keeper.manager().exists_many(unique_ids))
    except ResultsFlowError as exc:
        log.warning(
            "results_map %s %s; its store cannot say what is stored: %s", task.name, what, exc
        )
        return
    log.warning(
        "results_map %s %s: %d of %d results are stored in %s; run it again to compute "
        "only the missing ones",
        task.name,
        what,
        stored,
        len(unique_ids),
        keeper.store.describe(),
    )


class _ResultIdName(TaskRunNameCallbackWithParameters):
    """A task run name: the run's result ID (Prefect passes the run's parameters).

    A class, not a closure, so the task pickles to process pools and Dask workers.
    """

    def __init__(self, keeper: ResultKeeper, task_name: str, flow_name: str) -> None:
        self.keeper, self.task_name, self.flow_name = keeper, task_name, flow_name

    def __call__(self, parameters: dict[str, Any]) -> str:
        if INPUTS_PARAMETER in parameters:  # a run that takes its lineage (taking_inputs)
            parameters = {k: v for k, v in parameters.items() if k != INPUTS_PARAMETER}
        arguments = self.keeper.bind((), parameters)
        return self.keeper.call(self.task_name, arguments, self.flow_name).result_id


def _named_after_ids(task: Task[Any, Any], flow_name: str) -> Task[Any, Any]:
    """``task`` whose runs are named after their result IDs, unless it names its runs."""
    if task.task_run_name is not None:
        return task
    return task.with_options(task_run_name=_ResultIdName(keeper_of(task), task.name, flow_name))


async def aresults_map(
    task: Task[Any, Any],
    /,
    *iterables: Any,
    chunk_size: int | None = None,
    max_in_flight: int | None = MAP_MAX_IN_FLIGHT,
    progress: bool | ProgressHook | None = None,
    expire_after: timedelta | None = None,
    retry_failed: bool = True,
    max_failures: int | None = None,
    **keyword_iterables: Any,
) -> ResumeResults[Any]:
    """``results_map`` for ``async def`` flows: the same arguments, awaited.

    The store read, the submissions and the wait run in a worker thread (with the
    flow's context), so the event loop keeps running other coroutines meanwhile; the
    progress hook is called in that thread. Works with sync and async results_tasks.

    Cancelling it (``asyncio.wait_for`` timing out, say) stops the submissions: once the
    cancellation reaches the caller, no further task run is submitted, and runs
    submitted but not yet started are cancelled; runs already started go on.
    """
    cancellation = _Cancellation()
    options = _Options(
        chunk_size, max_in_flight, progress, expire_after, retry_failed, max_failures
    )
    call = functools.partial(
        _results_map, task, iterables, keyword_iterables, options, cancellation=cancellation
    )
    try:
        return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True):  # waits for at most one submit in progress
            await anyio.to_thread.run_sync(cancellation.cancel)
            if cancellation.on_cancel is not None:
                await anyio.to_thread.run_sync(cancellation.on_cancel, "cancelled")
        raise


class _Cancelled(BaseException):
    """The map was cancelled: its worker thread stops (nobody waits for its outcome)."""


class _Cancellation:
    """Stops a map's submissions from another thread.

    Submissions go through ``submit`` under a lock that ``cancel`` takes too, so once
    ``cancel`` returns no further run is submitted; it also cancels each submitted run
    that has not started, and wakes the map's thread waiting for a finished run.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._pending: dict[PrefectFuture[Any], Any] = {}
        self._finished: queue.SimpleQueue[PrefectFuture[Any] | None] | None = None
        #: Called with "cancelled" after ``cancel``: logs how much the map stored.
        self.on_cancel: Callable[[str], None] | None = None

    def watch(
        self,
        pending: dict[PrefectFuture[Any], Any],
        finished: queue.SimpleQueue[PrefectFuture[Any] | None],
    ) -> None:
        """Cancel the runs of ``pending`` and wake ``finished``'s reader on ``cancel``."""
        with self._lock:
            self._pending, self._finished = pending, finished

    def submit(self, submit: Callable[[W], PrefectFuture[Any]], piece: W) -> PrefectFuture[Any]:
        """``submit(piece)``, recorded as pending, unless the map is cancelled.

        Raises:
            _Cancelled: ``cancel`` was called.
        """
        with self._lock:
            if self._cancelled:
                raise _Cancelled
            future = submit(piece)
            self._pending[future] = piece
            return future

    @property
    def cancelled(self) -> bool:
        """Whether ``cancel`` was called."""
        return self._cancelled

    def take(self, future: PrefectFuture[Any]) -> Any:
        """The piece of work of the finished ``future``, no longer pending."""
        with self._lock:
            return self._pending.pop(future)

    def cancel(self) -> None:
        """Stop submitting, cancel the runs not started, wake the map's thread."""
        with self._lock:
            self._cancelled = True
            pending = list(self._pending)
            finished = self._finished
        for future in pending:
            if isinstance(future, PrefectWrappedFuture):
                future.wrapped_future.cancel()  # False, and no effect, once it has started
        if finished is not None:
            finished.put(None)


class _Tally:
    """The outcome of every settled ID (and input whose upstream failed), fed to the
    progress hooks as it arrives."""

    def __init__(self, hooks: list[ProgressHook | None], total: int) -> None:
        self.hooks = [hook for hook in hooks if hook is not None]
        self.total = total
        self.outcomes: dict[str, ItemOutcome] = {}
        self.upstream_failed = 0

    @property
    def done(self) -> int:
        """How many events were fed."""
        return len(self.outcomes) + self.upstream_failed

    def settle(self, rid: str, outcome: ItemOutcome) -> None:
        self.outcomes[rid] = outcome
        self._feed(rid, outcome.result, outcome.computed, outcome.error, None)

    def settle_upstream(self, index: int, error: BaseException) -> None:
        self.upstream_failed += 1
        self._feed("", None, False, error, index)

    def _feed(
        self,
        rid: str,
        result: BaseModel | None,
        computed: bool,
        error: BaseException | None,
        index: int | None,
    ) -> None:
        if not self.hooks:
            return
        event = MapProgress(
            result_id=rid,
            result=result,
            computed=computed,
            error=error,
            done=self.done,
            total=self.total,
            upstream_of=index,
        )
        for hook in self.hooks:
            hook(event)


W = TypeVar("W")


def _bounded(
    submit: Callable[[W], PrefectFuture[Any]],
    work: Iterable[W],
    limit: int | None,
    cancellation: _Cancellation | None = None,
) -> Iterator[tuple[W, PrefectFuture[Any]]]:
    """Submit each piece of ``work``, keeping at most ``limit`` runs unfinished at once;
    yield each piece with its future as the run finishes (None: submit all at once).

    Raises:
        _Cancelled: ``cancellation`` was cancelled.
    """
    finished: queue.SimpleQueue[PrefectFuture[Any] | None] = queue.SimpleQueue()
    pending: dict[PrefectFuture[Any], W] = {}
    stop = cancellation if cancellation is not None else _Cancellation()
    stop.watch(pending, finished)
    remaining = iter(work)
    while True:
        room = None if limit is None else limit - len(pending)
        for piece in itertools.islice(remaining, room):
            stop.submit(submit, piece).add_done_callback(finished.put)
        if not pending:
            return
        future = finished.get()
        if future is None or stop.cancelled:
            raise _Cancelled
        yield stop.take(future), future


def _outcome_of(future: PrefectFuture[Any], attempts: int) -> ItemOutcome:
    """An item run's outcome; a failed run made ``attempts`` attempts."""
    future.wait()  # records the final state; before that, .state may ask the server
    state = future.state
    if not state.is_completed():
        return ItemOutcome(None, computed=False, error=_exception_of(future), attempts=attempts)
    return ItemOutcome(future.result(), computed=state.name != CACHED_STATE_NAME)


def _chunk_outcomes(future: PrefectFuture[Any], size: int, attempts: int) -> list[ItemOutcome]:
    """Each item's outcome in a chunk run; the run's own failure for each when it failed
    as a whole (its worker died, say; items it stored before are found on resume)."""
    future.wait()
    if not future.state.is_completed():
        error = _exception_of(future)
        return [ItemOutcome(None, computed=False, error=error, attempts=attempts)] * size
    outcomes: list[ItemOutcome] = future.result()
    return outcomes


def _raise_failures(
    task: Task[Any, Any],
    log: logging.Logger | logging.LoggerAdapter[logging.Logger],
    missing: list[str],
    outcomes: dict[str, ItemOutcome],
    upstream: list[tuple[int, Failure]],
    inputs: int,
) -> None:
    """Log each failed ID; raise the first input's upstream failure, else the first failed
    item's error, with notes that count the failed items and the inputs whose upstream
    failed, naming the first few (those inputs were logged when found)."""
    failed = [(rid, error) for rid in missing if (error := outcomes[rid].error) is not None]
    if not failed and not upstream:
        return
    for rid, error in failed:
        log.error("results_map %s: %s failed: %r", task.name, rid, error)
    # The root cause first: an upstream failure, else the first failed item.
    first = upstream[0][1].error if upstream else failed[0][1]
    if failed:
        named = ", ".join(rid for rid, _ in failed[:IDS_NAMED_IN_ERRORS])
        more = ", ..." if len(failed) > IDS_NAMED_IN_ERRORS else ""
        first.add_note(
            f"results_map: {len(failed)} of {len(missing)} submitted items failed: {named}{more}"
        )
    if upstream:
        named = "; ".join(f"{f.label}: {f.error!r}" for _, f in upstream[:IDS_NAMED_IN_ERRORS])
        more = "; ..." if len(upstream) > IDS_NAMED_IN_ERRORS else ""
        first.add_note(
            f"results_map {task.name!r}: {len(upstream)} of {inputs} inputs not run, their "
            f"upstream failed: {named}{more}"
        )
    raise first


def _exception_of(future: PrefectFuture[Any]) -> BaseException:
    try:
        future.result(raise_on_failure=True)
    except BaseException as exc:  # noqa: BLE001 - handed back to the caller unchanged
        return exc
    return RuntimeError(f"task run {future.task_run_id} ended {future.state.type.value}")


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except MissingContextError:
        return logger
