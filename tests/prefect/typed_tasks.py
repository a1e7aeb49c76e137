"""Tasks whose Prefect cache hits must return the types their runs return (issue 9 item 1).

``python -m tests.prefect.typed_tasks BLOCK`` runs ``typed_flow`` in a process of its
own and prints whether every value equals, type for type, what a computed run returns.
The models are not registered: a hit rebuilds them from the task's return annotation.
"""

from __future__ import annotations

import json
import sys

from prefect import flow, task
from prefect.cache_policies import INPUTS, TASK_SOURCE
from pydantic import BaseModel

from results_flow.prefect import PydanticSerializer
from tests.prefect.tasks import record_call

BLOCK = "results-storage/rf-typed"
CACHED = {
    "cache_policy": INPUTS + TASK_SOURCE,
    "result_storage": BLOCK,
    "result_serializer": PydanticSerializer(),
}


class Point(BaseModel):
    x: int
    label: str = ""


class Path2(BaseModel):
    points: list[Point]


@task(**CACHED)  # type: ignore[call-overload]
def points(n: int) -> list[Point]:
    record_call("points", n)
    return [Point(x=i) for i in range(n)]


@task(**CACHED)  # type: ignore[call-overload]
def pair(n: int) -> tuple[int, Point]:
    record_call("pair", n)
    return n, Point(x=n)


@task(**CACHED)  # type: ignore[call-overload]
def by_name(n: int) -> dict[str, Point]:
    record_call("by_name", n)
    return {f"p{i}": Point(x=i, label=str(i)) for i in range(n)}


@task(**CACHED)  # type: ignore[call-overload]
def maybe(n: int) -> Point | None:
    record_call("maybe", n)
    return Point(x=n) if n else None


@task(**CACHED)  # type: ignore[call-overload]
def nested(n: int) -> dict[int, list[tuple[Path2, Point | None]]]:
    record_call("nested", n)
    return {n: [(Path2(points=[Point(x=n)]), None), (Path2(points=[]), Point(x=-n))]}


@flow(name="typed-flow")
def typed_flow() -> list[object]:
    return [points(2), pair(3), by_name(2), maybe(1), maybe(0), nested(4)]


def expected() -> list[object]:
    """What a computed run of ``typed_flow`` returns."""
    return [
        [Point(x=0), Point(x=1)],
        (3, Point(x=3)),
        {"p0": Point(x=0, label="0"), "p1": Point(x=1, label="1")},
        Point(x=1),
        None,
        {4: [(Path2(points=[Point(x=4)]), None), (Path2(points=[]), Point(x=-4))]},
    ]


def same(a: object, b: object) -> bool:
    """Equal, with the same container and model types all the way down."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)  # type: ignore[call-overload]
    return a == b


if __name__ == "__main__":
    results = typed_flow()
    print(
        json.dumps(
            {
                "same": [same(r, e) for r, e in zip(results, expected(), strict=True)],
                "types": [type(r).__name__ for r in results],
            }
        )
    )
    sys.exit(0)
