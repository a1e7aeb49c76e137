"""``results_task``: a Prefect task whose validated result is kept in a results_flow store.

The decorated function is wrapped so that each run builds its result ID, returns the
stored result when that ID exists (SKIP_IF_EXISTS), and otherwise computes, validates
and stores the result, under a per-ID lock when ``lock`` is on. The wrapper reports
through the state it returns ("Cached" with the ID, or "Completed" with the ID);
``ResultsTask`` hands the model, not that state, to direct callers.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Coroutine, Iterable
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar, cast, overload

from prefect import Flow, State, Task
from prefect.context import FlowRunContext
from prefect.task_runners import ThreadPoolTaskRunner

from results_flow.errors import ModelRegistryError, ResultsTaskError
from results_flow.hashing import source_hash
from results_flow.manager import ResultsManager, SetBehavior
from results_flow.prefect.compute_once import run_async, run_sync
from results_flow.prefect.naming import Call, IdRecipe
from results_flow.prefect.runtime import (
    OnInvalid,
    ResultKeeper,
    current_task,
    current_task_name,
    settled_state,
)
from results_flow.prefect.stores import StoreRef
from results_flow.records import utc_now
from results_flow.registry import ensure_registered, namespace_of
from results_flow.result_types import adapter_of, is_model_class, models_in
from results_flow.settings import COMPUTE_LOCK_TIMEOUT, IdScope, as_id_scope
from results_flow.write_policy import as_behavior

P = ParamSpec("P")
R = TypeVar("R")


#: Options that mean the caller wants Prefect's own result persistence as well.
_PERSISTENCE_OPTIONS = (
    "persist_result",
    "cache_policy",
    "cache_key_fn",
    "result_storage",
    "result_serializer",
    "result_storage_key",
)


class ResultsTask(Task[P, R]):
    """A Prefect task made by ``results_task``; calling it returns the model itself."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = super().__call__(*args, **kwargs)
        if kwargs.get("return_state"):
            return out
        if inspect.isawaitable(out):
            return _unwrap_later(out)
        return unwrap_state(out)

    def with_options(
        self,
        *,
        refresh: bool | None = None,
        on_invalid: OnInvalid | None = None,
        expire_after: timedelta | None = None,
        **options: Any,
    ) -> ResultsTask[P, R]:
        """A copy with other Prefect options (see ``prefect.Task.with_options``) and,
        when given, another ``refresh``, ``on_invalid`` or ``expire_after`` (see
        ``results_task``)."""
        copy = super().with_options(**options)
        copy.__class__ = ResultsTask  # Task.with_options builds a plain Task
        changes = {
            name: value
            for name, value in (
                ("refresh", refresh),
                ("on_invalid", on_invalid),
                ("expire_after", expire_after),
            )
            if value is not None
        }
        if changes:
            copy.fn = _wrap(keeper_of(self).replace(**changes))
        return cast(ResultsTask[P, R], copy)

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        """``Task.submit``; a store that other processes cannot open fails here, with
        ``ResultsTaskError``, not inside the task runner's serializer."""
        check_runner_reaches(self)
        return super().submit(*args, **kwargs)

    def map(self, *args: Any, **kwargs: Any) -> Any:
        """``Task.map``, with the store checked as in ``submit``."""
        check_runner_reaches(self)
        return super().map(*args, **kwargs)

    @property
    def keeper(self) -> ResultKeeper:
        """The store, model and ID rules of this task."""
        return keeper_of(self)

    def result_id(self, *args: Any, flow: str | Flow[..., Any] | None = None, **kwargs: Any) -> str:
        """The result ID a call with these arguments would use (see ``result_id_for``)."""
        return result_id_for(self, *args, flow=flow, **kwargs)


def unwrap_state(value: Any) -> Any:
    """The data of a state our wrapper returned; anything else unchanged."""
    if isinstance(value, State):
        return value.result()
    return value


async def _unwrap_later(awaitable: typing.Awaitable[Any]) -> Any:
    value = await awaitable
    if isinstance(value, State):
        return await value.aresult()
    return value


@overload
def results_task(fn: Callable[P, R], /) -> ResultsTask[P, R]: ...
@overload
def results_task(
    fn: None = None,
    /,
    *,
    manager: ResultsManager | str | None = None,
    id: str | None = None,
    version: str | None = None,
    behavior: SetBehavior = SetBehavior.SKIP_IF_EXISTS,
    namespace: str | None = None,
    model: Any = None,
    ignore: Iterable[str] = (),
    lock: bool = True,
    lock_timeout: float = COMPUTE_LOCK_TIMEOUT,
    hash_source: bool = False,
    refresh: bool = False,
    on_invalid: OnInvalid = "raise",
    scope: IdScope | None = None,
    expire_after: timedelta | None = None,
    **prefect_task_options: Any,
) -> Callable[[Callable[P, R]], ResultsTask[P, R]]: ...
def results_task(
    fn: Callable[P, R] | None = None,
    /,
    *,
    manager: ResultsManager | str | None = None,
    id: str | None = None,
    version: str | None = None,
    behavior: SetBehavior = SetBehavior.SKIP_IF_EXISTS,
    namespace: str | None = None,
    model: Any = None,
    ignore: Iterable[str] = (),
    lock: bool = True,
    lock_timeout: float = COMPUTE_LOCK_TIMEOUT,
    hash_source: bool = False,
    refresh: bool = False,
    on_invalid: OnInvalid = "raise",
    scope: IdScope | None = None,
    expire_after: timedelta | None = None,
    **prefect_task_options: Any,
) -> ResultsTask[P, R] | Callable[[Callable[P, R]], ResultsTask[P, R]]:
    """Make a Prefect task whose result is validated, stored and reused by ID.

    Use as ``@results_task`` or ``@results_task(...)``. Every other keyword is passed to
    ``prefect.Task`` (``retries``, ``tags``, ``name``...). Prefect's own result
    persistence stays off unless one of its options is given.

    Args:
        manager: the store (a ``ResultsManager`` or a store URL); default
            ``RESULTS_FLOW_STORE`` or the embedded SQLite store.
        id: an ID template such as ``"scores/{item.id}"``; default
            ``<flow>/<task>/<key>`` (see ``results_flow.prefect.naming``).
        version: a version that refines the ID; bump it to recompute.
        behavior: what to do when the ID exists; SKIP_IF_EXISTS reuses the result.
        namespace: the registry namespace the result is stored under.
        model: the result's type; default the return annotation. A Pydantic model, or
            any type Pydantic validates (``list[Score]``, ``tuple[int, Score]``,
            ``Score | None``, ``dict[str, float]``, ``int``): the value is validated as
            it, stored as JSON tagged with the type's text (``list[Score]``) and
            returned as that type, computed or taken from the store.
        ignore: parameters left out of the ID (clients, loggers, credentials).
        lock: compute each ID once across threads and processes.
        lock_timeout: seconds to wait while another worker computes the same ID
            (default one hour); then ``LockTimeoutError`` fails the run.
        hash_source: refine the ID with a hash of the function's source.
        refresh: always recompute and overwrite the stored result (its creation time is
            kept); also ``RESULTS_FLOW_REFRESH=1`` or Prefect's ``refresh_cache``.
        on_invalid: a stored result that no longer validates as the model: ``"raise"``
            (an ``InvalidResultsError`` counting and naming them), ``"recompute"``
            (recompute and overwrite, logging each ID), or ``"migrate"`` (bring it to
            the model through the upgrades registered with ``@upgrades(Model)`` and
            write it back; one that no upgrade accepts raises, or is recomputed with
            ``("migrate", "recompute")``).
        scope: what the default ID starts with: ``"flow"`` (``<flow>/<task>/<key>``:
            each flow keeps its own results) or ``"task"`` (``<task>/<key>``: the same
            call reuses one result from any flow, subflow or renamed flow; a result
            stored under the running flow's former ``<flow>/<task>/<key>`` is taken
            over, copied to the new ID). Default ``RESULTS_FLOW_ID_SCOPE``, else
            ``"flow"``. Templates (``id=``) are not affected.
        expire_after: a stored result last updated longer ago than this is recomputed
            and overwritten (its creation time kept). Default: Prefect's
            ``cache_expiration`` of the task, else never.

    The models of the result type (``Score`` of ``list[Score]``) are registered under
    ``namespace`` (or the one each is registered in, else the default) when the task is
    decorated, so ``ResultsManager().get(id)`` without a class reads the task's results
    in any process that imported the task's module.

    Raises:
        ResultsTaskError: no return annotation (or ``model=``), a type Pydantic cannot
            validate, a generator function, or another model holds the model's name in
            that namespace.
        ValueError: ``scope`` is neither ``"flow"`` nor ``"task"``, or ``expire_after``
            is not a positive ``timedelta``.
    """

    def decorate(func: Callable[P, R]) -> ResultsTask[P, R]:
        return _build(
            func,
            store=StoreRef(manager),
            recipe=IdRecipe(
                template=id,
                version=version,
                ignore=frozenset(ignore),
                code_hash=source_hash(func) if hash_source else None,
                scope=None if scope is None else as_id_scope(scope),
            ),
            behavior=as_behavior(behavior),
            namespace=namespace,
            model=model,
            lock=lock,
            lock_timeout=lock_timeout,
            refresh=refresh,
            on_invalid=on_invalid,
            expire_after=expire_after,
            options=prefect_task_options,
        )

    return decorate if fn is None else decorate(fn)


def _build(
    func: Callable[P, R],
    *,
    store: StoreRef,
    recipe: IdRecipe,
    behavior: SetBehavior,
    namespace: str | None,
    model: Any,
    lock: bool,
    lock_timeout: float,
    refresh: bool,
    on_invalid: OnInvalid,
    expire_after: timedelta | None,
    options: dict[str, Any],
) -> ResultsTask[P, R]:
    name = getattr(func, "__qualname__", repr(func))
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        raise ResultsTaskError(f"results_task {name!r}: generator functions are not supported")
    unknown = set(recipe.ignore) - set(inspect.signature(func).parameters)
    if unknown:
        raise ResultsTaskError(
            f"results_task {name!r}: ignore= names no parameter: {sorted(unknown)}"
        )
    result_type = model if model is not None else result_type_from_annotation(func)
    if not is_model_class(result_type):
        try:
            adapter_of(result_type)
        except TypeError as exc:
            raise ResultsTaskError(f"results_task {name!r}: {exc}; pass model=") from exc
    # The models it holds (Score of list[Score]) are registered in the namespace its
    # results are stored under, so get(id) without a class and `results-flow verify
    # --import <this module>` read what the task stores.
    for held in models_in(result_type):
        try:
            ensure_registered(held, namespace or namespace_of(held))
        except ModelRegistryError as exc:
            raise ResultsTaskError(
                f"results_task {name!r}: cannot register its model: {exc}; pass namespace= "
                "to store its results apart"
            ) from exc
    keeper = ResultKeeper(
        func,
        store=store,
        result_type=result_type,
        recipe=recipe,
        behavior=behavior,
        namespace=namespace,
        lock=lock,
        lock_timeout=lock_timeout,
        refresh=refresh,
        on_invalid=on_invalid,
        expire_after=expire_after,
    )
    if store.opened():  # a manager given: a store without locks fails here, not per item
        keeper.check_locks()
    if not any(option in options for option in _PERSISTENCE_OPTIONS):
        # The store keeps the result; Prefect persisting (and pickling) it too is waste.
        options["persist_result"] = False
    return ResultsTask(fn=cast(Callable[P, R], _wrap(keeper)), **options)


def result_type_from_annotation(func: Callable[..., Any]) -> Any:
    """The result type a function's return annotation names (a model or any type).

    Raises:
        ResultsTaskError: no return annotation, or one that cannot be resolved.
    """
    name = getattr(func, "__qualname__", repr(func))
    try:
        hints = typing.get_type_hints(func)
    except (NameError, TypeError) as exc:
        raise ResultsTaskError(
            f"results_task {name!r}: cannot resolve the return annotation ({exc}); pass model="
        ) from exc
    if "return" not in hints:
        raise ResultsTaskError(
            f"results_task {name!r}: no return annotation; annotate the return type "
            "(a pydantic model, list[Score], dict[str, float], ...) or pass model="
        )
    return hints["return"]


#: The keyword by which results_map hands an item's run the result IDs of its inputs
#: (``Call.inputs``, its lineage); only the task copies of ``taking_inputs`` take it.
INPUTS_PARAMETER = "results_flow_inputs"


def _wrap(keeper: ResultKeeper, *, takes_inputs: bool = False) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(keeper.fn):
        return _async_wrapper(keeper, takes_inputs)
    return _sync_wrapper(keeper, takes_inputs)


def _begin(
    keeper: ResultKeeper, takes_inputs: bool, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Call:
    """The call of a run, its lineage taken out of ``kwargs`` when it takes one."""
    inputs = kwargs.pop(INPUTS_PARAMETER, None) if takes_inputs else None
    call = keeper.call(current_task_name(keeper.fn.__name__), keeper.bind(args, kwargs))
    return dataclasses.replace(call, inputs=inputs) if inputs else call


def _sync_wrapper(keeper: ResultKeeper, takes_inputs: bool) -> Callable[..., Any]:
    fn = keeper.fn

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        started = utc_now()
        call = _begin(keeper, takes_inputs, args, kwargs)
        reuse = keeper.reuse(current_task())
        compute = functools.partial(fn, *args, **kwargs)
        settled = run_sync(keeper, call, compute, reuse=reuse, started=started)
        return settled_state(call, *settled)

    run.__results_flow_keeper__ = keeper  # type: ignore[attr-defined]
    return run


def _async_wrapper(
    keeper: ResultKeeper, takes_inputs: bool
) -> Callable[..., Coroutine[Any, Any, Any]]:
    fn = keeper.fn

    @functools.wraps(fn)
    async def run(*args: Any, **kwargs: Any) -> Any:
        started = utc_now()
        call = _begin(keeper, takes_inputs, args, kwargs)
        reuse = keeper.reuse(current_task())
        compute = functools.partial(fn, *args, **kwargs)
        settled = await run_async(keeper, call, compute, reuse=reuse, started=started)
        return settled_state(call, *settled)

    run.__results_flow_keeper__ = keeper  # type: ignore[attr-defined]
    return run


def with_keeper(task: Task[Any, Any], keeper: ResultKeeper) -> Task[Any, Any]:
    """A copy of results task ``task`` that keeps its results by ``keeper``."""
    copy = task.with_options()
    copy.fn = _wrap(keeper)
    return copy


def taking_inputs(task: Task[Any, Any]) -> Task[Any, Any]:
    """A copy of results task ``task`` whose runs also take the keyword
    ``INPUTS_PARAMETER``: the result IDs of their inputs, kept as their lineage. It
    travels as a run parameter, so it reaches every task runner (Dask, processes)."""
    keeper = keeper_of(task)
    fn = _wrap(keeper, takes_inputs=True)
    signature = inspect.signature(keeper.fn)
    extra = inspect.Parameter(INPUTS_PARAMETER, inspect.Parameter.KEYWORD_ONLY, default=None)
    parameters = list(signature.parameters.values())
    at = next(
        (i for i, p in enumerate(parameters) if p.kind is inspect.Parameter.VAR_KEYWORD),
        len(parameters),
    )
    fn.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*parameters[:at], extra, *parameters[at:]]
    )
    copy = task.with_options()
    copy.fn = fn
    return copy


def keeper_of(task: Task[Any, Any]) -> ResultKeeper:
    """The keeper of a task made by ``results_task``.

    Raises:
        ResultsTaskError: ``task`` was not made by ``results_task``.
    """
    keeper = getattr(task.fn, "__results_flow_keeper__", None)
    if not isinstance(keeper, ResultKeeper):
        raise ResultsTaskError(f"task {task.name!r} was not made by results_task")
    return keeper


def result_id_for(
    task: Task[Any, Any], /, *args: Any, flow: str | Flow[..., Any] | None = None, **kwargs: Any
) -> str:
    """The result ID that calling ``task`` with these arguments would store under
    (task-scoped when the task's ``scope`` or ``RESULTS_FLOW_ID_SCOPE`` says so; then
    ``flow`` changes nothing).

    ``flow`` names the flow whose runs stored it (a name or the flow itself), so a
    notebook can find what a flow stored: ``result_id_for(score, 7, flow="nightly")``.
    Without it, the running flow's name inside a flow run, else ``no-flow``. A task
    parameter that is itself called ``flow`` is passed positionally.

    Raises:
        ResultsTaskError: ``task`` was not made by ``results_task``.
        UnhashableParameterError: an argument has no canonical JSON; names it.
        InvalidResultIdError: the ID template cannot be filled or gives a bad ID.
        ValueError: ``RESULTS_FLOW_ID_SCOPE`` is neither ``flow`` nor ``task``.
    """
    keeper = keeper_of(task)
    names = keeper.bind_names()
    if flow is not None and "flow" in names and len(args) <= names.index("flow"):
        raise ResultsTaskError(
            f"result_id_for({task.name!r}): flow= names the flow, but the task also has a "
            "parameter 'flow'; pass that parameter positionally"
        )
    flow_name = flow.name if isinstance(flow, Flow) else flow
    return keeper.call(task.name, keeper.bind(args, kwargs), flow_name).result_id


def check_runner_reaches(task: Task[Any, Any]) -> None:
    """Fail early when the flow's task runner runs tasks in other processes (Dask, a
    process pool) and ``task``'s store cannot be reopened there.

    Raises:
        ResultsTaskError: the store is process-local (memory://, a custom table).
    """
    context = FlowRunContext.get()
    if context is None or isinstance(context.task_runner, ThreadPoolTaskRunner):
        return
    keeper_of(task).store.portable_url()
