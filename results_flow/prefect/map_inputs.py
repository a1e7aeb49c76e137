"""What ``results_map`` maps over: ``Task.map``-style arguments turned into one keyword-
argument dict per input, with the Prefect futures and states in them replaced by their
results. An input whose upstream failed is reported, not fatal: the others still run.
An input that came from upstream results (a results_task's future or state, an item of
another results_map's ``ResumeResults``) keeps their result IDs as its lineage.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from prefect import State, Task
from prefect.futures import PrefectFuture, wait
from prefect.utilities.annotations import BaseAnnotation, unmapped
from prefect.utilities.collections import visit_collection

from results_flow.prefect.report import Failure, ResumeResults
from results_flow.prefect.runtime import result_id_of

#: Result IDs by parameter name.
InputIds = dict[str, list[str]]


@dataclass(frozen=True)
class MapInputs:
    """One keyword-argument dict per input; the inputs whose upstream failed (by index;
    their dicts hold None in its place); and per input, the result IDs its arguments
    came from (None when no input came from upstream results)."""

    calls: list[dict[str, Any]]
    upstream: dict[int, Failure]
    lineage: list[InputIds | None] | None


def expand_inputs(
    task: Task[Any, Any],
    parameter_names: Sequence[str],
    iterables: tuple[Any, ...],
    keyword_iterables: dict[str, Any],
) -> MapInputs:
    """The calls of ``Task.map``-style arguments (see ``MapInputs``). A failed upstream
    of a whole iterable, or of an ``unmapped`` value, fails every input: it raises,
    noted with the parameter."""
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
    shared: InputIds = {}  # the IDs every input came from (unmapped, whole iterables)
    each: dict[int, InputIds] = {}
    static = {
        k: _resolved(task, k, v.unwrap(), shared)
        for k, v in named.items()
        if isinstance(v, unmapped)
    }
    upstream: dict[int, Failure] = {}
    mapped = {
        k: _resolved_items(
            task, k, _as_list(task, k, _resolved_whole(task, k, v, shared), each), upstream, each
        )
        for k, v in named.items()
        if not isinstance(v, unmapped)
    }
    lengths = {k: len(v) for k, v in mapped.items()}
    if not mapped:
        raise ValueError(f"results_map {task.name!r}: give at least one iterable to map over")
    if len(set(lengths.values())) > 1:
        raise ValueError(f"results_map {task.name!r}: iterables differ in length: {lengths}")
    rows = zip(*mapped.values(), strict=True)  # lengths checked above
    calls = [{**static, **dict(zip(mapped, values, strict=True))} for values in rows]
    lineage: list[InputIds | None] | None = None
    if shared or each:
        lineage = [{**shared, **each.get(i, {})} for i in range(len(calls))]
    return MapInputs(calls, dict(sorted(upstream.items())), lineage)


def _result_ids(found: list[Any]) -> list[str]:
    """The result IDs of the finished results_task runs among futures and states."""
    ids = []
    for expr in found:
        rid = result_id_of(expr.state if isinstance(expr, PrefectFuture) else expr)
        if rid is not None:
            ids.append(rid)
    return ids


def _resolved_whole(task: Task[Any, Any], name: str, value: Any, shared: InputIds) -> Any:
    """A future or state given for a whole iterable, replaced by its result."""
    if isinstance(value, PrefectFuture | State):
        return _resolved(task, name, value, shared)
    return value


def _resolved_items(
    task: Task[Any, Any],
    name: str,
    values: list[Any],
    upstream: dict[int, Failure],
    each: dict[int, InputIds],
) -> list[Any]:
    """``values`` with the futures and states in each replaced by their results (their
    result IDs kept in ``each``); an item whose upstream failed becomes None, its failure
    kept in ``upstream`` (the first per input), so the other inputs still run."""
    # Only rebuild the items when they hold a future: rebuilding copies every model.
    if not _upstream_in(values):
        return values
    wait([f for f in _upstream_in(values) if isinstance(f, PrefectFuture)])
    resolved = []
    for index, value in enumerate(values):
        found = _upstream_in(value)
        if not found:
            resolved.append(value)
            continue
        try:
            resolved.append(visit_collection(value, _result_of, return_data=True))
        except Exception as exc:  # noqa: BLE001 - reported per input, raised at the end
            upstream.setdefault(index, Failure(f"input {index} (parameter {name!r})", exc))
            resolved.append(None)
            continue
        ids = _result_ids(found)
        if ids:
            each.setdefault(index, {})[name] = ids
    return resolved


def _result_of(expr: Any) -> Any:
    """The result of a Prefect future or state; anything else unchanged."""
    if isinstance(expr, PrefectFuture | State):
        return expr.result()
    return expr


def _resolved(task: Task[Any, Any], name: str, value: Any, shared: InputIds) -> Any:
    """``value`` with every Prefect future and state in it replaced by its result (their
    result IDs kept in ``shared`` under ``name``).

    Raises:
        Exception: a future or state that did not complete; the note names the parameter.
    """

    def resolve(expr: Any) -> Any:
        try:
            if isinstance(expr, PrefectFuture):
                return expr.result()
            if isinstance(expr, State):
                return expr.result()
        except Exception as exc:
            exc.add_note(
                f"results_map {task.name!r}: an upstream input of parameter {name!r} failed"
            )
            raise
        return expr

    # Only rebuild the arguments when they hold a future: rebuilding copies every model.
    found = _upstream_in(value)
    if not found:
        return value
    wait([f for f in found if isinstance(f, PrefectFuture)])
    resolved = visit_collection(value, resolve, return_data=True)
    ids = _result_ids(found)
    if ids:
        shared[name] = ids
    return resolved


_PLAIN = frozenset({int, float, str, bytes, bool, type(None)})


def _upstream_in(value: Any) -> list[Any]:
    """The futures and states in ``value`` and its lists, tuples, sets and dicts.

    A plain walk: ``visit_collection`` would also open every model, seconds for
    100,000 inputs.
    """
    found: list[Any] = []
    stack = [value]
    while stack:
        expr = stack.pop()
        if type(expr) in _PLAIN:
            continue
        if isinstance(expr, PrefectFuture | State):
            found.append(expr)
        elif isinstance(expr, list | tuple | set | frozenset):
            stack.extend(expr)
        elif isinstance(expr, dict):
            stack.extend(expr.keys())
            stack.extend(expr.values())
        elif isinstance(expr, BaseAnnotation):
            stack.append(expr.unwrap())
    return found


def _as_list(task: Task[Any, Any], name: str, value: Any, each: dict[int, InputIds]) -> list[Any]:
    """The items of an iterable argument; those of another results_map's ``ResumeResults``
    keep their result IDs in ``each``."""
    if isinstance(value, ResumeResults):
        for index, rid in enumerate(value.ids):
            each.setdefault(index, {})[name] = [rid]
        return list(value.results)
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ValueError(
            f"results_map {task.name!r}: parameter {name!r} needs an iterable "
            "(wrap a constant in prefect.unmapped)"
        )
    return list(value)
