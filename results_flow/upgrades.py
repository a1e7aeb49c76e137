"""Upgrades: a stored record of an older shape brought to its model's current shape,
so a model change costs a conversion, not the compute.

A user registers, for a model, functions that take the data of an older shape::

    class ScoreV1(BaseModel):  # how Score used to look
        value: float

    @upgrades(Score)
    def score_from_v1(old: ScoreV1) -> Score:
        return Score(points=old.value * 100)

The older shape is the type of the function's first parameter (or ``source=``): any
type a Pydantic ``TypeAdapter`` validates (a model, a ``TypedDict``, a dataclass). An
upgrade returns the current model, or data of another older shape that a further
upgrade takes (a model instance, or plain JSON data), so upgrades chain across versions
(v1 -> v2 -> current) and each is written once, from one shape to the next.

``upgrade`` applies them to a stored record's JSON: while the data does not validate
as the model, the first registered upgrade (not yet applied to it) whose older shape
validates the data is applied. An upgrade *accepts* a record when its older shape
validates it; a record that no upgrade accepts, or that an upgrade fails on, is an
``UpgradeFailedError`` (a ``ResultValidationError``, so callers treat it as any record
that does not validate). Each upgrade runs at most once per record and a chain stops
after ``MAX_UPGRADE_STEPS``; registering a cycle that return annotations show
(``A -> B -> A``) is refused. Upgrades are kept per model class (a name registered in
two namespaces is two classes, each with its own upgrades).

``invalid_policy`` reads the ``on_invalid`` choice of ``get_many`` and the Prefect
layer: ``"migrate"`` (upgrade, and else the caller's first choice) or a pair such as
``("migrate", "recompute")``.
"""

from __future__ import annotations

import threading
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import to_json

from results_flow.errors import UpgradeFailedError, UpgradeRegistryError
from results_flow.result_types import adapter_of, is_model_class, type_tag
from results_flow.settings import MAX_UPGRADE_STEPS

F = TypeVar("F", bound=Callable[..., Any])

MIGRATE = "migrate"
"""The ``on_invalid`` choice that upgrades a record before any other choice applies."""


@dataclass(frozen=True)
class Upgrade:
    """One registered upgrade of ``model``: ``fn`` takes data of shape ``source``."""

    model: type[BaseModel]
    source: Any
    fn: Callable[[Any], Any]
    #: The return annotation when it is a class (another older shape, or the model).
    target: Any | None
    name: str


@dataclass(frozen=True)
class Upgraded:
    """A record brought to its model: the model instance and the upgrades applied."""

    value: BaseModel
    steps: tuple[str, ...]


_lock = threading.Lock()
_upgrades: dict[type[BaseModel], list[Upgrade]] = {}


def upgrades(model: type[BaseModel], *, source: Any = None) -> Callable[[F], F]:
    """Register the decorated function as an upgrade of stored ``model`` records from an
    older shape: the type of its first parameter, or ``source``.

    Raises:
        UpgradeRegistryError: ``model`` is no Pydantic model, the older shape is missing
            or is ``model`` itself, another upgrade of ``model`` takes that shape, or
            the return annotations make a cycle.
    """
    if not is_model_class(model):
        raise UpgradeRegistryError(f"@upgrades needs a pydantic model class, got {model!r}")

    def register(fn: F) -> F:
        _register(model, fn, source)
        return fn

    return register


def _register(model: type[BaseModel], fn: Callable[..., Any], source: Any) -> None:
    name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
    hints = _hints(fn, name, need_source=source is None)
    if source is None:
        params = [p for p in hints if p != "return"]
        if not params:
            raise UpgradeRegistryError(
                f"upgrade {name} of {model.__name__}: annotate its first parameter with the "
                "older shape (a model of how the data used to look), or pass source="
            )
        source = hints[params[0]]
    try:
        adapter_of(source)
    except TypeError as exc:
        raise UpgradeRegistryError(f"upgrade {name} of {model.__name__}: {exc}") from exc
    if source is model:
        raise UpgradeRegistryError(
            f"upgrade {name} takes {model.__name__} itself: an upgrade starts from an older "
            "shape (a record that validates as the model needs none)"
        )
    returned = hints.get("return")
    target = returned if isinstance(returned, type) else None
    entry = Upgrade(model=model, source=source, fn=fn, target=target, name=name)
    with _lock:
        chain = [u for u in _upgrades.get(model, []) if u.name != name]  # a reload replaces
        for other in chain:
            if other.source == source:
                raise UpgradeRegistryError(
                    f"upgrades of {model.__name__}: {name} and {other.name} both take "
                    f"{type_tag(source)}; one older shape has one upgrade"
                )
        if target is not None and _reaches(chain, target, source):
            raise UpgradeRegistryError(
                f"upgrade {name} of {model.__name__} from {type_tag(source)} to "
                f"{type_tag(target)} makes a cycle: {type_tag(target)} is upgraded back "
                f"to {type_tag(source)}"
            )
        _upgrades[model] = [*chain, entry]


def _hints(fn: Callable[..., Any], name: str, *, need_source: bool) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception as exc:  # any annotation it cannot resolve
        if not need_source:
            return {}
        raise UpgradeRegistryError(
            f"upgrade {name}: its annotations cannot be resolved ({exc!r}); pass source="
        ) from exc


def _reaches(chain: Sequence[Upgrade], start: Any, goal: Any) -> bool:
    """Whether the upgrades of ``chain`` lead from shape ``start`` to shape ``goal``."""
    seen: list[Any] = []
    todo = [start]
    while todo:
        shape = todo.pop()
        if shape == goal:
            return True
        if shape in seen:
            continue
        seen.append(shape)
        todo.extend(u.target for u in chain if u.source == shape and u.target is not None)
    return False


def upgrades_of(model: Any) -> list[Upgrade]:
    """The upgrades registered for ``model``, in registration order (none for a type
    that is no model class)."""
    with _lock:
        return list(_upgrades.get(model, [])) if is_model_class(model) else []


def clear_upgrades(model: type[BaseModel] | None = None) -> None:
    """Forget every registered upgrade, or those of one model."""
    with _lock:
        if model is None:
            _upgrades.clear()
        else:
            _upgrades.pop(model, None)


def upgrade(result_id: str, model: type[BaseModel], data: str, why: str) -> Upgraded:
    """Bring a record's JSON ``data`` to ``model`` through its registered upgrades.

    ``why`` says why the record did not validate as it is (for the error).

    Raises:
        UpgradeFailedError: no upgrade accepts the data (or what an upgrade made of it),
            an upgrade raised or returned something that is not JSON data, or the chain
            ended after ``MAX_UPGRADE_STEPS``; names the ID, the model and the steps.
    """
    pending = upgrades_of(model)
    steps: list[str] = []
    text = data
    for _ in range(min(len(pending), MAX_UPGRADE_STEPS)):
        chosen = _accepting(pending, text)
        if chosen is None:
            break
        step, old = chosen
        pending.remove(step)
        try:
            new = step.fn(old)
            text = to_json(new).decode()
        except Exception as exc:  # the user's code: its failure is this record's
            raise UpgradeFailedError(
                f"result {result_id!r}: upgrade {step.name} to {model.__name__} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        steps.append(step.name)
        try:
            return Upgraded(model.model_validate_json(text), tuple(steps))
        except ValidationError:
            continue
    shapes = ", ".join(type_tag(u.source) for u in upgrades_of(model)) or "none registered"
    after = f" after {' -> '.join(steps)}" if steps else ""
    raise UpgradeFailedError(
        f"result {result_id!r} does not validate as {model.__name__} and no upgrade "
        f"brings it there{after} (older shapes: {shapes}); {why}"
    )


def _accepting(pending: Sequence[Upgrade], text: str) -> tuple[Upgrade, Any] | None:
    """The first upgrade whose older shape validates ``text``, and the validated data."""
    for step in pending:
        try:
            return step, adapter_of(step.source).validate_json(text)
        except ValidationError:
            continue
    return None


@dataclass(frozen=True)
class InvalidPolicy:
    """An ``on_invalid`` choice read: whether to upgrade first, and what to do otherwise."""

    migrate: bool
    otherwise: str


def invalid_policy(on_invalid: object, otherwise: tuple[str, ...]) -> InvalidPolicy:
    """Read ``on_invalid``: one of ``otherwise`` (the caller's own choices, its default
    first), ``"migrate"`` (upgrade; a record no upgrade accepts goes by the default),
    or a pair ``("migrate", choice)``.

    Raises:
        ValueError: anything else; lists what is accepted.
    """
    if isinstance(on_invalid, str) and on_invalid in otherwise:
        return InvalidPolicy(migrate=False, otherwise=on_invalid)
    if on_invalid == MIGRATE:
        return InvalidPolicy(migrate=True, otherwise=otherwise[0])
    if (
        isinstance(on_invalid, tuple | list)
        and len(on_invalid) == 2
        and on_invalid[0] == MIGRATE
        and on_invalid[1] in otherwise
    ):
        return InvalidPolicy(migrate=True, otherwise=str(on_invalid[1]))
    accepted = ", ".join(
        [repr(c) for c in (*otherwise, MIGRATE)] + [repr((MIGRATE, c)) for c in otherwise]
    )
    raise ValueError(f"on_invalid must be one of {accepted}; not {on_invalid!r}")
