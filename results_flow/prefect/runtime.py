"""What a results_task does around its function: build the ID, skip, lock, validate, store.

``ResultKeeper`` is the picklable part a task carries to thread pools, process pools
and Dask workers. It answers with Prefect states: a result taken from the store
completes as ``Cached`` with the result ID in the message; a computed one completes
with the ID it was stored under.
"""

from __future__ import annotations

import copy
import inspect
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple

from prefect import State, Task, get_run_logger
from prefect.context import FlowRunContext, TaskRunContext
from prefect.exceptions import MissingContextError
from prefect.logging import get_logger
from prefect.settings import PREFECT_TASKS_REFRESH_CACHE
from prefect.states import Completed
from pydantic import BaseModel, ValidationError

from results_flow.backends.base import no_locks_message
from results_flow.backends.held import HeldLock
from results_flow.errors import (
    CorruptRecordError,
    InvalidResultsError,
    ResultNotFoundError,
    ResultsFlowError,
    ResultsTaskError,
    ResultValidationError,
    UnknownModelError,
)
from results_flow.lineage import INPUTS_KEY
from results_flow.manager import (
    GetOnInvalid,
    ResultsManager,
    SetBehavior,
    decode_read,
    decode_read_many,
)
from results_flow.prefect.naming import Call, IdRecipe, current_flow_name
from results_flow.prefect.stores import StoreRef
from results_flow.records import Record, utc_now
from results_flow.result_types import adapter_of, is_model_class, type_tag
from results_flow.settings import WARNED_FLOW_RUNS, refresh_requested
from results_flow.upgrades import invalid_policy

logger = get_logger("results_flow.prefect")

CACHED_STATE_NAME = "Cached"

Settled = Literal["stored", "computed", "raced"]
"""How ``ResultKeeper.keep`` settled a call: its result taken from the store, computed
and stored here, or computed here while another run stored it first (theirs kept)."""

OnInvalid = (
    Literal["raise", "recompute", "migrate"]
    | tuple[Literal["migrate"], Literal["raise", "recompute"]]
)
"""What a results_task does with a stored result that no longer validates: raise,
recompute it, or upgrade it (``"migrate"``, see ``results_flow.upgrades``) and then
raise (``"migrate"``) or recompute (``("migrate", "recompute")``) if no upgrade accepts it."""
#: The choices besides "migrate", the default first.
ON_INVALID_CHOICES: tuple[str, ...] = ("raise", "recompute")


class Reuse(NamedTuple):
    """What one run (or chunk) may reuse from the store: nothing with ``refresh``; else a
    stored result last updated at or after ``cutoff`` (any, when None): an older one has
    expired (``expire_after``, Prefect's ``cache_expiration``) and is recomputed."""

    refresh: bool = False
    cutoff: datetime | None = None

    def expired(self, record: Record) -> bool:
        """Whether ``record`` is too old to reuse."""
        return self.cutoff is not None and record.updated_at < self.cutoff


#: Reuse any stored result: no refresh, no expiry.
REUSE_ANY = Reuse()


class Stored(NamedTuple):
    """What a lookup found: a reusable result (``found``; it may itself be None, for a
    ``Score | None`` task), or whether the stored record must be replaced (a refresh, or
    an invalid record under ``on_invalid="recompute"``)."""

    result: Any
    replace: bool = False
    found: bool = True

    @classmethod
    def missing(cls, *, replace: bool) -> Stored:
        """Nothing to reuse."""
        return cls(None, replace=replace, found=False)


class ResultKeeper:
    """Keeps one results_task's results: its store, result type, ID recipe and policies,
    and the steps around each call (build the ID, look up, validate, store).

    The result type is a Pydantic model class (stored as it always was) or any type a
    ``TypeAdapter`` validates (``list[Score]``, ``Score | None``, ``int``), stored under
    its annotation's text and returned as that type whether computed or taken from the
    store (``results_flow.result_types``)."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        store: StoreRef,
        result_type: Any,
        recipe: IdRecipe,
        behavior: SetBehavior,
        namespace: str | None,
        lock: bool,
        lock_timeout: float,
        refresh: bool = False,
        on_invalid: OnInvalid = "raise",
        expire_after: timedelta | None = None,
    ) -> None:
        self.refresh = refresh
        self.expire_after = checked_expiry(expire_after)
        self.on_invalid: OnInvalid = on_invalid
        #: ``on_invalid`` read: upgrade first or not, and raise or recompute otherwise.
        self.invalid = invalid_policy(on_invalid, ON_INVALID_CHOICES)
        self.fn = fn
        self.store = store
        self.result_type = result_type
        #: The result type's name in messages and its records' type tag.
        self.type_name = type_tag(result_type)
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
        return self.recipe.call(task_name, arguments, flow_name)

    def replace(self, **changes: Any) -> ResultKeeper:
        """A copy with other policies (``refresh``, ``on_invalid``, ``expire_after``).

        Raises:
            ValueError: ``expire_after`` is not a positive timedelta.
        """
        clone = copy.copy(self)
        for name, value in changes.items():
            if name not in ("refresh", "on_invalid", "expire_after"):
                raise TypeError(f"ResultKeeper.replace: unknown option {name!r}")
            setattr(clone, name, checked_expiry(value) if name == "expire_after" else value)
        clone.invalid = invalid_policy(clone.on_invalid, ON_INVALID_CHOICES)
        return clone

    def reuse(self, task: Task[Any, Any] | None) -> Reuse:
        """What a run of ``task`` (this keeper's task, or a copy with other options) may
        reuse now: see ``refreshing`` and ``expiry``."""
        if self.refreshing(task):
            return Reuse(refresh=True)
        expiry = self.expiry(task)
        return Reuse(cutoff=None if expiry is None else utc_now() - expiry)

    def expiry(self, task: Task[Any, Any] | None) -> timedelta | None:
        """How old a stored result may grow before it is recomputed: ``expire_after``,
        else the task's Prefect option ``cache_expiration``; None: never too old."""
        if self.expire_after is not None:
            return self.expire_after
        own = getattr(task, "cache_expiration", None)
        return own if isinstance(own, timedelta) and own > timedelta(0) else None

    def refreshing(self, task: Task[Any, Any] | None) -> bool:
        """Whether this run recomputes and overwrites even a stored result: ``refresh=True``,
        ``RESULTS_FLOW_REFRESH=1``, or Prefect's ``refresh_cache`` (the task's own option,
        else ``PREFECT_TASKS_REFRESH_CACHE``), as Prefect itself decides it."""
        if self.refresh or refresh_requested():
            return True
        own = getattr(task, "refresh_cache", None)
        return bool(own if own is not None else PREFECT_TASKS_REFRESH_CACHE.value())

    def lookup(
        self,
        call: Call,
        *,
        reuse: Reuse = REUSE_ANY,
        since: datetime | None = None,
        lock: HeldLock | None = None,
    ) -> Stored:
        """The stored, validated result of ``call`` when this task reuses results.

        With ``reuse.refresh`` nothing is reused, except a result stored at or after
        ``since`` (another worker refreshed it while this one waited for the lock); a
        result that ``reuse`` finds expired is to be replaced (unless another worker
        replaced it meanwhile: then it is fresh). With ``lock`` (held on the ID), a result
        upgraded under ``on_invalid="migrate"`` is written back through it (the store's
        own lock on the ID is taken already).

        Raises:
            InvalidResultsError: the stored result no longer validates, or is damaged,
                and ``on_invalid="raise"``.
        """
        refresh = reuse.refresh
        if refresh:
            if since is None:
                return Stored.missing(replace=True)
            try:
                record = self.manager().record(call.result_id)
            except ResultNotFoundError:
                return Stored.missing(replace=True)
            if record.updated_at < since:
                return Stored.missing(replace=True)
        if not self.skips:
            return Stored.missing(replace=refresh)
        try:
            manager = self.manager()
            if reuse.cutoff is None:
                return Stored(
                    manager.get(
                        call.result_id, self.result_type, on_invalid=self.get_on_invalid, lock=lock
                    )
                )
            record = manager.record(call.result_id)
            if reuse.expired(record):
                logger.debug("stored result %r expired; recomputing it", call.result_id)
                return Stored.missing(replace=True)
            target = manager.backend if lock is None else lock
            return Stored(
                decode_read(target, call.result_id, record, self.result_type, self.get_on_invalid)
            )
        except ResultNotFoundError:
            if not refresh and call.former_id is not None:
                taken = self.take_over({call.result_id: call.former_id})
                if call.result_id in taken:
                    return Stored(taken[call.result_id])
            return Stored.missing(replace=refresh)
        except (ResultValidationError, UnknownModelError, CorruptRecordError) as exc:
            self.invalid_found({call.result_id: exc}, total=1)
            return Stored.missing(replace=True)

    def stored_results(self, result_ids: Sequence[str], task: Task[Any, Any] | None) -> Batch:
        """For ``results_map``: the stored results to reuse among ``result_ids``, read in one
        round trip (none when refreshing or not reusing), the IDs whose stored result
        no longer validates, and those whose stored result expired (to be recomputed).
        Under ``on_invalid="recompute"`` the invalid ones are logged and are to be
        submitted; under ``"raise"`` the caller runs the rest, then ``invalid_found``."""
        reuse = self.reuse(task)
        if not self.skips or reuse.refresh:
            return Batch({}, {}, set())
        manager = self.manager()
        records, damaged = manager.read_records(result_ids)
        expired = {rid for rid, record in records.items() if reuse.expired(record)}
        if expired:
            records = {rid: record for rid, record in records.items() if rid not in expired}
        try:
            found = decode_read_many(
                manager.backend,
                result_ids,
                records,
                self.result_type,
                self.get_on_invalid,
                damaged,
            )
            invalid: dict[str, ResultsFlowError] = {}
        except InvalidResultsError as exc:
            found, invalid = exc.found, exc.invalid
            if self.invalid.otherwise == "recompute":
                self.invalid_found(invalid, total=len(result_ids))
        flow_name = current_flow_name()
        formers = {
            rid: former
            for rid in result_ids
            if rid not in found
            and rid not in invalid
            and rid not in expired
            and (former := self.recipe.former_id(rid, flow_name)) is not None
        }
        found.update(self.take_over(formers))
        return Batch(found, invalid, expired)

    @property
    def get_on_invalid(self) -> GetOnInvalid:
        """How the store reads this task's results: upgrading them (``"migrate"``) or not;
        a record still invalid then raises, and ``on_invalid``'s other choice decides."""
        return "migrate" if self.invalid.migrate else "raise"

    def take_over(self, former_ids: Mapping[str, str]) -> dict[str, Any]:
        """The results stored under the former, flow-scoped IDs of task-scoped ones
        (``{new ID: former ID}``), read in one round trip and copied to the new IDs
        (SKIP_IF_EXISTS; the former records stay). A former result that no longer
        validates is left where it is: its call is computed again."""
        if not former_ids:
            return {}
        manager = self.manager()
        stored = manager.get_many(list(former_ids.values()), self.result_type, on_invalid="skip")
        taken: dict[str, Any] = {}
        for rid, former in former_ids.items():
            if former not in stored:
                continue
            record = manager.record(former)
            written = manager.set(
                rid,
                stored[former],
                SetBehavior.SKIP_IF_EXISTS,
                namespace=record.namespace,
                metadata={**record.metadata, "copied_from": former},
                result_type=None if is_model_class(self.result_type) else self.result_type,
            )
            taken[rid] = stored[former] if written else manager.get(rid, self.result_type)
        if taken:
            first = next(iter(taken))
            run_logger().info(
                "%d results taken over from their former flow-scoped IDs (%r from %r, ...)",
                len(taken),
                first,
                former_ids[first],
            )
        return taken

    def invalid_found(self, invalid: dict[str, ResultsFlowError], *, total: int) -> None:
        """Act on stored results that no longer validate: log each ID to be recomputed
        (``on_invalid="recompute"``; once per ID per flow run), or raise one error that
        counts them all.

        Raises:
            InvalidResultsError: ``on_invalid="raise"``; counts the IDs, names the first few.
        """
        if not invalid:
            return
        if self.invalid.otherwise == "raise":
            hint = (
                'pass on_invalid=("migrate", "recompute") to recompute those no upgrade accepts'
                if self.invalid.migrate
                else 'pass on_invalid="recompute" to recompute and overwrite them, or register '
                'upgrades (@upgrades) and pass on_invalid="migrate"'
            )
            raise InvalidResultsError.of(
                invalid, total=total, hint=f"{hint} (task type {self.type_name})"
            )
        log = run_logger()
        for result_id in invalid:
            if not _first_warning(result_id):
                continue
            log.warning(
                "stored result %r no longer validates as %s%s; recomputing it (on_invalid=%s)",
                result_id,
                self.type_name,
                " and no upgrade brings it there" if self.invalid.migrate else "",
                '("migrate", "recompute")' if self.invalid.migrate else '"recompute"',
            )

    def check_locks(self) -> None:
        """Fail once, before anything runs, when locking is on and the store has no locks.

        Raises:
            ResultsTaskError: the store offers no per-ID locks (``lock=False`` is the way).
        """
        if self.lock:
            backend = self.manager().backend
            if not backend.offers_locks:
                raise ResultsTaskError(no_locks_message(backend))

    def validate(self, call: Call, value: Any) -> Any:
        """``value`` as a value of the task's result type (a model instance, or e.g. a
        list of them for ``list[Score]``).

        Raises:
            ResultValidationError: it does not validate; names the task, type and ID.
        """
        model = self.result_type
        try:
            if not is_model_class(model):
                return adapter_of(model).validate_python(value)
            if isinstance(value, model):
                return value
            if isinstance(value, BaseModel):
                return model.model_validate(value.model_dump())
            return model.model_validate(value)
        except ValidationError as exc:
            raise ResultValidationError(
                f"task {call.task_name!r} returned a {type(value).__name__} that does not "
                f"validate as {self.type_name} (result {call.result_id!r}): {exc}"
            ) from exc

    def save(
        self, call: Call, value: Any, *, replace: bool = False, lock: HeldLock | None = None
    ) -> tuple[Any, bool]:
        """Validate and store a computed value (overwriting what is stored when ``replace``),
        through ``lock`` when one is held on the ID (refused once it is lost).

        Returns:
            The result to hand back, and whether it is the one just computed (False when
            another worker stored this ID first and SKIP_IF_EXISTS kept theirs).
        """
        result = self.validate(call, value)
        manager = self.manager()
        written = manager.set(
            call.result_id,
            result,
            SetBehavior.OVERWRITE if replace else self.behavior,
            namespace=self.namespace,
            metadata=self.metadata(call),
            lock=lock,
            # A model is stored as it always was (its class's tag); other types by theirs.
            result_type=None if is_model_class(self.result_type) else self.result_type,
        )
        if not written and self.skips:
            return manager.get(call.result_id, self.result_type), False
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
        if call.inputs:
            meta[INPUTS_KEY] = call.inputs
        return meta

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_signature"] = None  # annotations may not pickle; rebuilt on first use
        return state


class Batch(NamedTuple):
    """What results_map's batch read found: the results to reuse, the IDs whose stored
    result no longer validates, and those whose stored result expired."""

    found: dict[str, Any]
    invalid: dict[str, ResultsFlowError]
    expired: set[str]


def checked_expiry(expire_after: timedelta | None) -> timedelta | None:
    """``expire_after`` when it is None or a positive timedelta.

    Raises:
        ValueError: anything else; names the value.
    """
    if expire_after is None or (
        isinstance(expire_after, timedelta) and expire_after > timedelta(0)
    ):
        return expire_after
    raise ValueError(f"expire_after must be a positive datetime.timedelta, not {expire_after!r}")


#: The IDs warned of as invalid, per flow run, for the last few runs: results_map's batch
#: read and an item's two lookups reach one ID three times; it is logged once per run.
_WARNED: dict[str, set[str]] = {}
_WARNED_LOCK = threading.Lock()


def _first_warning(result_id: str) -> bool:
    """Whether ``result_id`` was not yet warned of in this flow run (always, outside any)."""
    task_context = TaskRunContext.get()
    flow_context = FlowRunContext.get()
    if task_context is not None and task_context.task_run.flow_run_id is not None:
        run = str(task_context.task_run.flow_run_id)
    elif flow_context is not None and flow_context.flow_run is not None:
        run = str(flow_context.flow_run.id)
    else:
        return True
    with _WARNED_LOCK:
        seen = _WARNED.setdefault(run, set())
        while len(_WARNED) > WARNED_FLOW_RUNS:
            del _WARNED[next(iter(_WARNED))]
        if result_id in seen:
            return False
        seen.add(result_id)
        return True


#: The messages of a results_task run's final state, each naming its result ID: taken
#: from the store, computed and stored, computed while another run stored it first.
_TAKEN = "Taken from the results store: {}"
_STORED = "Stored as {}"
_RACED = "Computed, but another run stored {} first; returned theirs"


def result_id_of(state: State[Any]) -> str | None:
    """The result ID a completed results_task run's state names (its lineage for the
    results computed from it); None for any other state."""
    message = state.message
    if not message or not state.is_completed():
        return None
    for template in (_STORED, _TAKEN, _RACED):
        head, _, tail = template.partition("{}")
        if message.startswith(head) and message.endswith(tail):
            inner = message[len(head) : len(message) - len(tail)]
            if inner:
                return inner
    return None


def settled_state(call: Call, result: Any, settled: Settled) -> Any:
    """What a run settled by ``ResultKeeper.keep`` returns."""
    if settled == "stored":
        return cached_state(call, result)
    return computed_state(call, result, fresh=settled == "computed")


def cached_state(call: Call, result: Any) -> Any:
    """What a run whose result was taken from the store returns (see ``state_or_result``)."""
    logger.debug("task %r: result %r taken from the store", call.task_name, call.result_id)
    return state_or_result(
        Completed(
            name=CACHED_STATE_NAME,
            message=_TAKEN.format(call.result_id),
            data=result,
        )
    )


def computed_state(call: Call, result: Any, fresh: bool) -> Any:
    """What a run that computed its result (``fresh``) or lost a race to store it returns."""
    if not fresh:
        return state_or_result(
            Completed(
                name=CACHED_STATE_NAME,
                message=_RACED.format(call.result_id),
                data=result,
            )
        )
    return state_or_result(Completed(message=_STORED.format(call.result_id), data=result))


def state_or_result(state: State[Any]) -> Any:
    """The state for Prefect's task engine; the bare result for a plain ``task.fn(...)``
    call outside any task run, which has no run to name."""
    if TaskRunContext.get() is None:
        return state.data
    return state


def current_task() -> Task[Any, Any] | None:
    """The task whose run we are in, if any."""
    context = TaskRunContext.get()
    return context.task if context is not None else None


def run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The run logger inside a flow or task run (it shows in the UI), else ours."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logger


def current_task_name(default: str) -> str:
    """The name of the task whose run we are in (a renamed copy keeps its new name)."""
    context = TaskRunContext.get()
    return context.task.name if context is not None else default
