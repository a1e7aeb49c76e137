"""results_task with any return type Pydantic validates (issue 22 item 2): list[Point],
tuple[int, Point], dict[str, Point], Point | None, unions and plain JSON values are
stored, taken from the store on a rerun (the body does not run) and come back as the
same type, through direct calls, .submit, .map and results_map (with and without chunks).

``Point`` is registered by the decoration (in the default namespace), so ``get(id)``
without a type rebuilds ``list[Point]`` from the tag."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel

from results_flow import ResultsManager
from results_flow.errors import ResultsTaskError, ResultValidationError
from results_flow.prefect import result_id_for, results_map, results_task
from tests.prefect.conftest import CallLog
from tests.prefect.tasks import record_call


class Point(BaseModel):
    x: int
    label: str = ""


@results_task
def points(n: int) -> list[Point]:
    record_call("points", n)
    return [Point(x=i) for i in range(n)]


@results_task
def pair(n: int) -> tuple[int, Point]:
    record_call("pair", n)
    return n, Point(x=n)


@results_task
def by_name(n: int) -> dict[str, Point]:
    record_call("by_name", n)
    return {f"p{i}": {"x": i, "label": str(i)} for i in range(n)}  # type: ignore[misc]


@results_task
def maybe(n: int) -> Point | None:
    record_call("maybe", n)
    return Point(x=n) if n else None


@results_task
def either(n: int) -> Point | int:
    record_call("either", n)
    return Point(x=n) if n % 2 else n


@results_task
def count(n: int) -> int:
    record_call("count", n)
    return n * 10


@results_task
def label(n: int) -> str:
    record_call("label", n)
    return f"n={n}"


@results_task
def weights(n: int) -> dict[str, float]:
    record_call("weights", n)
    return {"a": n / 2, "b": 1.0}


@results_task
async def apoints(n: int) -> list[Point]:
    record_call("apoints", n)
    await asyncio.sleep(0)
    return [Point(x=-i) for i in range(n)]


@results_task
def broken(n: int) -> list[Point]:
    return ["not a point"]  # type: ignore[list-item]


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same type all the way down."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


@flow(name="types-flow", task_runner=ThreadPoolTaskRunner(max_workers=4))
def types_flow() -> dict[str, Any]:
    return {
        "direct": [
            points(3),
            pair(2),
            by_name(2),
            maybe(0),
            maybe(4),
            either(2),
            either(3),
            count(5),
            label(5),
            weights(3),
        ],
        "submit": [points.submit(4).result(), apoints.submit(2).result()],
        "map": maybe.map([0, 5]).result(),
        "results_map": list(results_map(maybe, [0, 6, 6, 7])),
        "chunked": list(results_map(pair, [1, 2, 3], chunk_size=2)),
        "chunked_async": list(results_map(apoints, [1, 3], chunk_size=5)),
        "invalid": broken(1, return_state=True),
    }


def test_any_return_type_is_stored_reused_and_returned_as_its_type(
    store_url: str, calls: CallLog
) -> None:
    first = types_flow()
    invalid = first.pop("invalid")
    assert first["direct"][0] == [Point(x=0), Point(x=1), Point(x=2)]
    assert first["direct"][2] == {"p0": Point(x=0, label="0"), "p1": Point(x=1, label="1")}
    assert first["direct"][3] is None and first["results_map"][0] is None
    assert first["direct"][5] == 2 and first["direct"][6] == Point(x=3)
    assert first["chunked"][2] == (3, Point(x=3))
    ran = len(calls.lines())
    assert ran == 19, calls.lines()  # every distinct call once (maybe(0) and maybe(6) too)

    # The value that does not validate fails its run, naming the task, the type and the ID.
    with pytest.raises(ResultValidationError) as info:
        invalid.result()
    message = str(info.value)
    assert "'broken'" in message and "list[Point]" in message
    assert result_id_for(broken, 1, flow="types-flow") in message

    calls.clear()
    second = types_flow()
    second.pop("invalid")
    assert calls.lines() == []  # everything taken from the store
    assert same(second, first), (second, first)

    rm = ResultsManager.from_url(store_url)
    rid = result_id_for(points, 3, flow="types-flow")
    record = rm.record(rid)
    assert (record.model_type, record.data) == (
        "list[Point]",
        '[{"x":0,"label":""},{"x":1,"label":""},{"x":2,"label":""}]',
    )
    assert rm.record(result_id_for(maybe, 0, flow="types-flow")).model_type == "Point | None"
    assert rm.record(result_id_for(weights, 3, flow="types-flow")).model_type == "dict[str, float]"
    assert same(rm.get(rid, list[Point]), first["direct"][0])
    assert same(rm.get_many([rid], list[Point]), {rid: first["direct"][0]})
    # Without a type: rebuilt from the models the decoration registered, never imported.
    assert same(rm.get(rid), first["direct"][0])
    assert rm.get(result_id_for(maybe, 0, flow="types-flow")) is None
    assert same(rm.get(result_id_for(pair, 3, flow="types-flow")), (3, Point(x=3)))


def test_a_result_type_pydantic_cannot_validate_fails_at_decoration() -> None:
    class Opaque:
        pass

    def no_annotation(n):  # type: ignore[no-untyped-def]
        return n

    with pytest.raises(ResultsTaskError, match="'.*opaque'.*Opaque"):

        @results_task
        def opaque(n: int) -> Opaque:
            return Opaque()

    with pytest.raises(ResultsTaskError, match="no return annotation"):
        results_task(no_annotation)
