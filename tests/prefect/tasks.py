"""Models, tasks and flows the Prefect tests run, importable by worker processes.

Tasks without ``manager=`` use the default store, which the tests point at a fresh
store through ``RESULTS_FLOW_STORE``. Every body run appends one line to the file
named by ``RF_TEST_CALLS`` (the side channel the tests count); ``RF_TEST_SLEEP``
makes bodies slow enough to race or to be killed mid-run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from enum import Enum

from prefect import flow, task
from prefect.cache_policies import INPUTS, TASK_SOURCE
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel

from results_flow import register_model
from results_flow.prefect import results_map, results_task


@register_model(namespace="tests-prefect")
class Score(BaseModel):
    item: int
    value: float
    pid: int


class Item(BaseModel):
    id: str
    weight: float = 1.0


class Color(Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass(frozen=True)
class Window:
    start: int
    end: int


def record_call(name: str, item: object) -> None:
    """Append ``name:item`` to the side-channel file (one small O_APPEND write)."""
    path = os.environ.get("RF_TEST_CALLS")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{name}:{item}\n".encode())
        finally:
            os.close(fd)


def pause() -> None:
    time.sleep(float(os.environ.get("RF_TEST_SLEEP", "0")))


@results_task
def score(item: int, factor: float = 2.0) -> Score:
    record_call("score", item)
    pause()
    return Score(item=item, value=item * factor, pid=os.getpid())


@results_task(retries=2, retry_delay_seconds=0)
async def ascore(item: int) -> Score:
    record_call("ascore", item)
    await asyncio.sleep(0)
    return Score(item=item, value=item / 2, pid=os.getpid())


@results_task(id="items/{item.id}", version="2")
def weigh(item: Item, color: Color = Color.RED) -> Score:
    record_call("weigh", item.id)
    return Score(item=len(item.id), value=item.weight, pid=os.getpid())


@results_task(lock_timeout=60)
def racer(item: int) -> Score:
    record_call("racer", item)
    pause()
    return Score(item=item, value=float(item), pid=os.getpid())


@results_task
def wrong(item: int) -> Score:
    return {"item": item, "value": "not a number", "pid": 0}  # type: ignore[return-value]


@task(
    cache_policy=INPUTS + TASK_SOURCE,
    result_storage="results-storage/rf-tests",
    result_serializer="json",
)
def plain_cached(x: int) -> int:
    record_call("plain", x)
    return x * 10


@flow(name="resume-flow", task_runner=ThreadPoolTaskRunner(max_workers=4))
def resume_flow(n: int) -> list[Score]:
    return list(results_map(score, range(n)))


@flow(name="chunked-flow", task_runner=ThreadPoolTaskRunner(max_workers=2))
def chunked_resume_flow(n: int, chunk_size: int) -> list[Score]:
    return list(results_map(score, range(n), chunk_size=chunk_size))


@flow(name="plain-flow")
def plain_flow(values: list[int]) -> list[int]:
    return [plain_cached(v) for v in values]
