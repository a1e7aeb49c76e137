"""aresults_map: results_map awaited in an async def flow, without blocking its loop, and
stopped by cancelling it."""

from __future__ import annotations

import asyncio
import threading

import pytest
from prefect import flow, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from results_flow.prefect import aresults_map, results_task
from tests.prefect.conftest import CallLog
from tests.prefect.tasks import Score, ascore, record_call, score

loop_ran = threading.Event()
gate = threading.Event()


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


@results_task
def gated(item: int) -> Score:
    record_call("gated", item)
    if not gate.wait(120):  # opened by the test once it has cancelled the map
        raise RuntimeError("the gate was never opened")
    return Score(item=item, value=float(item), pid=0)


def test_cancelling_aresults_map_stops_submitting_and_cancels_runs_not_started(
    store_url: str, calls: CallLog
) -> None:
    """Regression (issue 21 #12): after a cancelled aresults_map returned, its worker
    thread went on submitting task runs (12 started after the cancellation)."""
    gate.clear()

    # Two worker threads, four runs in flight: at the cancel, runs 0 and 1 are running
    # (held at the gate) and runs 2 and 3 are submitted but queued, not started.
    @flow(name="async-map-cancel-flow", task_runner=ThreadPoolTaskRunner(max_workers=2))
    async def run() -> tuple[list[str], str]:
        mapping = asyncio.create_task(aresults_map(gated, list(range(20)), max_in_flight=4))
        while len(calls.lines()) < 2:
            await asyncio.sleep(0.01)
        mapping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await mapping
        at_cancel = calls.lines()
        gate.set()
        # The executor starts queued runs in order: once this run has started, every
        # run queued before it has started too, unless it was cancelled.
        await asyncio.to_thread(gated.submit(99).result)
        return at_cancel, str(flow_run.get_id())

    at_cancel, run_id = asyncio.run(run())
    assert sorted(at_cancel) == ["gated:0", "gated:1"]
    assert sorted(calls.lines()) == ["gated:0", "gated:1", "gated:99"]

    async def task_runs() -> int:
        async with get_client() as client:
            found = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
            )
        return len(found)

    assert asyncio.run(task_runs()) == 3  # items 0, 1 and 99: no run started after the cancel
