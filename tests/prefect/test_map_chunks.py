"""Chunked maps: one task run per chunk of missing inputs, each item stored under its
own ID (the same as without chunks) as soon as it is computed; a SIGKILL mid-chunk
loses only the item in flight, and the resume computes exactly the missing ones."""

from __future__ import annotations

import signal
import time

import pytest
from prefect import flow

from results_flow import ResultsManager
from results_flow.prefect import MapProgress, results_map, results_task
from results_flow.prefect.chunks import ItemOutcome, chunk_task
from tests.prefect.conftest import CallLog, start_worker
from tests.prefect.tasks import Score, ascore, chunked_resume_flow, score

ITEMS = 200
CHUNK = 50


@results_task
def picky(item: int) -> Score:
    if item % 4 == 3:
        raise ValueError(f"{item} is refused")
    return Score(item=item, value=float(item), pid=0)


def test_chunks_store_each_item_under_its_own_id_and_resume(store_url: str, calls: CallLog) -> None:
    events: list[MapProgress] = []

    @flow(name="chunk-flow")
    def run(items: list[int], chunk_size: int | None) -> tuple[list[Score], int, int, list[str]]:
        report = results_map(score, items, chunk_size=chunk_size, progress=events.append)
        return list(report), report.computed, report.reused, report.ids

    plain_ids = run([], None)[3]
    assert plain_ids == []
    results, computed, reused, ids = run([5, 1, 2, 1, 3, 4, 0], 3)
    assert [r.item for r in results] == [5, 1, 2, 1, 3, 4, 0]
    assert (computed, reused) == (7, 0)
    assert sorted(calls.lines()) == sorted(f"score:{i}" for i in range(6))  # 1 once
    assert [e.done for e in events] == [1, 2, 3, 4, 5, 6] and all(e.computed for e in events)

    rm = ResultsManager.from_url(store_url)
    runs = {rm.record(rid).metadata["task_run_id"] for rid in set(ids)}
    assert len(runs) == 2  # six distinct inputs, chunks of 3: two task runs

    calls.clear()
    again, computed, reused, again_ids = run([0, 1, 2, 3, 4, 5, 6, 7], None)
    assert again_ids[:6] == [ids[6], ids[1], ids[2], ids[4], ids[5], ids[0]]  # same IDs
    assert (computed, reused) == (2, 6) and sorted(calls.lines()) == ["score:6", "score:7"]
    assert [r.item for r in again] == list(range(8))


def test_item_failures_in_a_chunk_are_reported_per_item(store_url: str) -> None:
    events: list[MapProgress] = []

    @flow(name="chunk-flow")
    def run() -> None:
        results_map(picky, range(8), chunk_size=5, progress=events.append)

    with pytest.raises(ValueError, match="3 is refused") as info:
        run()
    assert "2 of 8 submitted items failed" in " ".join(info.value.__notes__)
    failed = sorted(e.result_id for e in events if e.error is not None)
    assert len(failed) == 2
    stored = ResultsManager.from_url(store_url).list_ids("chunk-flow/picky")
    assert len(stored) == 6 and not set(failed) & set(stored)  # the others were stored


def test_async_task_in_chunks(store_url: str, calls: CallLog) -> None:
    @flow(name="chunk-flow")
    def run() -> list[float]:
        return [r.value for r in results_map(ascore, [2, 4, 6], chunk_size=2)]

    assert run() == [1.0, 2.0, 3.0]
    assert sorted(calls.lines()) == ["ascore:2", "ascore:4", "ascore:6"]


def test_sigkill_mid_chunk_loses_only_in_flight_items_and_resumes(
    store_url: str, calls: CallLog, worker_env: dict[str, str]
) -> None:
    worker_env["RF_TEST_SLEEP"] = "0.03"
    worker = start_worker(worker_env, "resume-chunked", str(ITEMS), str(CHUNK))
    rm = ResultsManager.from_url(store_url)
    prefix = "chunked-flow/score"
    deadline = time.monotonic() + 300
    try:
        # Two chunks run at once (two threads): 60 stored means both are mid-chunk.
        while len(rm.list_ids(prefix)) < 60:
            if worker.poll() is not None:
                pytest.fail(f"the flow ended before it was killed: {worker.communicate()}")
            if time.monotonic() > deadline:
                pytest.fail("the flow stored too few results in 300 s")
            time.sleep(0.02)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.communicate()
    stored = set(rm.list_ids(prefix))
    started = {int(line.split(":")[1]) for line in calls.lines()}
    # Every body that ran, but at most one per running chunk, left its result.
    assert 60 <= len(stored) < ITEMS and len(started) - len(stored) <= 2
    assert len(stored) % CHUNK != 0  # killed inside chunks, not between them

    calls.clear()
    results = chunked_resume_flow(ITEMS, CHUNK)
    ids = [f"{prefix}/{score.result_id(i).rsplit('/', 1)[1]}" for i in range(ITEMS)]
    missing = {i for i, rid in enumerate(ids) if rid not in stored}
    assert sorted(int(line.split(":")[1]) for line in calls.lines()) == sorted(missing)
    assert [r.item for r in results] == list(range(ITEMS))
    assert len(rm.get_many(ids, Score)) == ITEMS


def test_a_chunk_reuses_an_item_another_worker_stored_after_planning(
    store_url: str, calls: CallLog
) -> None:
    """A chunk locks its items without looking first: the locked lookup must still find
    a result stored between results_map's planning and the chunk's run."""

    @flow(name="chunk-flow")
    def run() -> list[tuple[float | None, bool]]:
        rm = ResultsManager.from_url(store_url)
        rm.set(score.result_id(1), Score(item=1, value=-1.0, pid=0))
        outcomes: list[ItemOutcome] = (
            chunk_task(score).submit([{"item": 1}, {"item": 2}], 0).result()
        )
        return [(o.result.value if o.result else None, o.computed) for o in outcomes]

    assert run() == [(-1.0, False), (4.0, True)]
    assert calls.lines() == ["score:2"]


def test_chunks_honour_the_tasks_own_refresh_cache(store_url: str, calls: CallLog) -> None:
    @flow(name="chunk-flow")
    def run(refresh_cache: bool) -> int:
        task = score.with_options(refresh_cache=refresh_cache)
        return results_map(task, [1, 2, 3], chunk_size=2).computed

    assert run(False) == 3
    assert run(False) == 0
    calls.clear()
    assert run(True) == 3
    assert sorted(calls.lines()) == ["score:1", "score:2", "score:3"]


def test_chunk_size_below_one_is_refused(store_url: str) -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        results_map(score, [1], chunk_size=0)
