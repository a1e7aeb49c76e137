"""aresults_map: results_map awaited in an async def flow, without blocking its loop."""

from __future__ import annotations

import asyncio
import threading

from prefect import flow

from results_flow.prefect import aresults_map, results_task
from tests.prefect.conftest import CallLog
from tests.prefect.tasks import Score, ascore, record_call, score

loop_ran = threading.Event()


@results_task
def needs_the_loop(item: int) -> Score:
    record_call("needs_the_loop", item)
    # Set by a coroutine of the flow's event loop: only possible if the loop is free.
    if not loop_ran.wait(120):
        raise RuntimeError("the flow's event loop was blocked")
    return Score(item=item, value=float(item), pid=0)


def test_aresults_map_in_an_async_flow(store_url: str, calls: CallLog) -> None:
    @flow(name="async-map-flow")
    async def run() -> tuple[list[float], list[float], int, int]:
        first = await aresults_map(ascore, [2, 4, 2])
        chunked = await aresults_map(score, [1, 2, 3], chunk_size=2)
        again = await aresults_map(ascore, [2, 4, 6])
        return [r.value for r in first], [r.value for r in chunked], again.computed, again.reused

    assert asyncio.run(run()) == ([1.0, 2.0, 1.0], [2.0, 4.0, 6.0], 1, 2)
    assert sorted(calls.lines()) == [
        "ascore:2",
        "ascore:4",
        "ascore:6",
        "score:1",
        "score:2",
        "score:3",
    ]


def test_aresults_map_leaves_the_event_loop_free(store_url: str, calls: CallLog) -> None:
    loop_ran.clear()

    async def release() -> None:
        await asyncio.sleep(0)
        loop_ran.set()

    @flow(name="async-map-flow")
    async def run() -> list[int]:
        report, _ = await asyncio.gather(aresults_map(needs_the_loop, [1, 2]), release())
        return [r.item for r in report]

    assert asyncio.run(run()) == [1, 2]
