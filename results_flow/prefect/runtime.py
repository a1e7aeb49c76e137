"""What a results_task does around its function: build the ID, skip, lock, validate, store.

``TaskRuntime`` is the picklable part a task carries to thread pools, process pools
and Dask workers. It answers with Prefect states: a result taken from the store
completes as ``Cached`` with the result ID in the message; a computed one completes
with the ID it was stored under.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from prefect import State
from prefect.context import TaskRunContext
from prefect.logging import get_logger
from prefect.states import Completed
from pydantic import BaseModel, ValidationError

from results_flow.errors import ResultNotFoundError, ResultValidationError
from results_flow.manager import ResultsManager, SetBehavior
from results_flow.prefect.naming import Call, IdRecipe
from results_flow.prefect.stores import StoreRef

logger = get_logger("results_flow.prefect")

CACHED_STATE_NAME = "Cached"


class TaskRuntime:
    """The store, model, ID recipe and policies of one results_task."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        store: StoreRef,
        model: type[BaseModel],
        recipe: IdRecipe,
        behavior: SetBehavior,
        namespace: str | None,
        lock: bool,
        lock_timeout: float,
    ) -> None:
        self.fn = fn
        self.store = store
        self.model = model
        self.recipe = recipe
        self.behavior = behavior
        self.namespace = namespace
        self.lock = lock
        self.lock_timeout = lock_timeout
        self._signature: inspect.Signature | None = None
        self._plain_names: set[str] | None = None

    @property
    def skips(self) -> bool:
        """Whether a stored result is reused instead of recomputed."""
        return self.behavior is SetBehavior.SKIP_IF_EXISTS

    def manager(self) -> ResultsManager:
        """The manager of this task's store in this process."""
        return self.store.manager()

    def bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The call's arguments by parameter name, defaults applied."""
        signature = self.signature()
        if not args and self._plain_names is not None and kwargs.keys() == self._plain_names:
            # Every parameter named (how results_map calls): Signature.bind would only
            # check what is already true, at a fifth of the cost of building an ID.
            return {name: kwargs[name] for name in signature.parameters}
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)

    def bind_names(self) -> list[str]:
        """The function's parameter names, in order."""
        return list(self.signature().parameters)

    def signature(self) -> inspect.Signature:
        """The function's signature, read once per process."""
        if self._signature is None:
            self._signature = inspect.signature(self.fn)
            kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
            parameters = self._signature.parameters.values()
            if all(p.kind in kinds for p in parameters):
                self._plain_names = {p.name for p in parameters}
        return self._signature

    def call(
        self, task_name: str, arguments: Mapping[str, Any], flow_name: str | None = None
    ) -> Call:
        """The result ID of a call and what it was built from."""
        return self.recipe.call(self.fn, task_name, arguments, flow_name)

    def lookup(self, call: Call) -> BaseModel | None:
        """The stored, validated result of ``call`` when this task reuses results."""
        if not self.skips:
            return None
        try:
            return self.manager().get(call.result_id, self.model)
        except ResultNotFoundError:
            return None

    def validate(self, call: Call, value: Any) -> BaseModel:
        """``value`` as an instance of the task's model.

        Raises:
            ResultValidationError: it does not validate; names the task, model and ID.
        """
        if isinstance(value, self.model):
            return value
        try:
            if isinstance(value, BaseModel):
                return self.model.model_validate(value.model_dump())
            return self.model.model_validate(value)
        except ValidationError as exc:
            raise ResultValidationError(
                f"task {call.task_name!r} returned a {type(value).__name__} that does not "
                f"validate as {self.model.__name__} (result {call.result_id!r}): {exc}"
            ) from exc

    def save(self, call: Call, value: Any) -> tuple[BaseModel, bool]:
        """Validate and store a computed value.

        Returns:
            The result to hand back, and whether it is the one just computed (False when
            another worker stored this ID first and SKIP_IF_EXISTS kept theirs).
        """
        result = self.validate(call, value)
        manager = self.manager()
        written = manager.set(
            call.result_id,
            result,
            self.behavior,
            namespace=self.namespace,
            metadata=self.metadata(call),
        )
        if not written and self.skips:
            return manager.get(call.result_id, self.model), False
        return result, True

    def metadata(self, call: Call) -> dict[str, Any]:
        """What the stored record says about where it came from."""
        context = TaskRunContext.get()
        run = context.task_run if context is not None else None
        meta: dict[str, Any] = {
            "flow_name": call.flow_name,
            "task_name": call.task_name,
            "flow_run_id": str(run.flow_run_id) if run is not None and run.flow_run_id else None,
            "task_run_id": str(run.id) if run is not None else None,
            "parameters": call.parameters,
        }
        if self.recipe.version is not None:
            meta["version"] = self.recipe.version
        if self.recipe.code_hash is not None:
            meta["code_hash"] = self.recipe.code_hash
        return meta

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_signature"] = None  # annotations may not pickle; rebuilt on first use
        return state


def cached_state(call: Call, result: BaseModel) -> State[Any] | BaseModel:
    """What a run whose result was taken from the store returns (see ``outcome``)."""
    logger.debug("task %r: result %r taken from the store", call.task_name, call.result_id)
    return outcome(
        Completed(
            name=CACHED_STATE_NAME,
            message=f"Taken from the results store: {call.result_id}",
            data=result,
        )
    )


def computed_state(call: Call, result: BaseModel, fresh: bool) -> State[Any] | BaseModel:
    """What a run that computed its result (``fresh``) or lost a race to store it returns."""
    if not fresh:
        return outcome(
            Completed(
                name=CACHED_STATE_NAME,
                message=f"Computed, but another run stored {call.result_id} first; returned theirs",
                data=result,
            )
        )
    return outcome(Completed(message=f"Stored as {call.result_id}", data=result))


def outcome(state: State[Any]) -> State[Any] | BaseModel:
    """The state for Prefect's task engine; the bare result for a plain ``task.fn(...)``
    call outside any task run, which has no run to name."""
    if TaskRunContext.get() is None:
        data: BaseModel = state.data
        return data
    return state


def current_task_name(default: str) -> str:
    """The name of the task whose run we are in (a renamed copy keeps its new name)."""
    context = TaskRunContext.get()
    return context.task.name if context is not None else default
