"""results_task on real flow runs: sync and async, direct calls, .submit and .map,
thread and process pools, skip with a "Cached" state, stored metadata, validation."""

from __future__ import annotations

import asyncio
import os

import pytest
from prefect import flow, unmapped
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

from results_flow import ResultsManager, SetBehavior
from results_flow.errors import ResultValidationError
from results_flow.prefect import CACHED_STATE_NAME, ResultsTask, result_id_for, results_task
from tests.prefect.conftest import CallLog
from tests.prefect.tasks import Item, Score, ascore, score, weigh, wrong


def test_direct_submit_and_map_store_once_then_skip(store_url: str, calls: CallLog) -> None:
    @flow(name="deco-flow", task_runner=ThreadPoolTaskRunner(max_workers=4))
    def run() -> tuple[Score, Score, list[Score]]:
        return score(1), score.submit(2).result(), score.map([1, 2, 3, 4]).result()

    first = run()
    assert [s.item for s in first[2]] == [1, 2, 3, 4]
    assert isinstance(first[0], Score) and first[0].value == 2.0
    assert sorted(calls.lines()) == ["score:1", "score:2", "score:3", "score:4"]
    calls.clear()
    assert run() == first
    assert calls.lines() == []
    rm = ResultsManager.from_url(store_url)
    assert len(rm.list_ids("deco-flow/score")) == 4


def test_states_name_the_result_id(store_url: str, calls: CallLog) -> None:
    @flow(name="state-flow")
    def run() -> tuple[object, object]:
        return score(5, return_state=True), score(5, return_state=True)

    computed, cached = run()
    rid = result_id_for(score, 5).replace("no-flow", "state-flow")
    assert computed.name == "Completed" and rid in (computed.message or "")
    assert cached.name == CACHED_STATE_NAME and rid in (cached.message or "")
    assert cached.result() == computed.result()
    assert calls.lines() == ["score:5"]


def test_metadata_records_where_the_result_came_from(store_url: str) -> None:
    @flow(name="meta-flow")
    def run() -> Score:
        return weigh(Item(id="m1", weight=3.0))

    run()
    record = ResultsManager.from_url(store_url).record("items/m1@2")
    meta = record.metadata
    assert meta["flow_name"] == "meta-flow" and meta["task_name"] == "weigh"
    assert meta["flow_run_id"] and meta["task_run_id"] and meta["version"] == "2"
    assert meta["parameters"] == {
        "item": {"$model": {"id": "m1", "weight": 3.0}},
        "color": {"$enum": "red"},
    }
    assert (record.namespace, record.model_type) == ("tests-prefect", "Score")


def test_async_task_in_async_flow(store_url: str, calls: CallLog) -> None:
    @flow(name="async-flow")
    async def run() -> list[Score]:
        direct = await ascore(1)
        mapped = await asyncio.gather(*[ascore(i) for i in (2, 3)])
        return [direct, *mapped, await ascore(1)]

    results = asyncio.run(run())
    assert [r.item for r in results] == [1, 2, 3, 1]
    assert sorted(calls.lines()) == ["ascore:1", "ascore:2", "ascore:3"]


def test_process_pool_runs_store_in_workers(store_url: str, calls: CallLog) -> None:
    @flow(name="process-flow", task_runner=ProcessPoolTaskRunner(max_workers=2))
    def run() -> tuple[list[Score], list[Score], list[str]]:
        first = score.map([10, 11, 12], factor=unmapped(1.5)).result()
        ran = calls.lines()
        return first, score.map([10, 11, 12], factor=unmapped(1.5)).result(), ran

    first, again, ran = run()
    assert [r.value for r in first] == [15.0, 16.5, 18.0]
    assert {r.pid for r in first} - {os.getpid()}, "computed in worker processes"
    assert sorted(ran) == ["score:10", "score:11", "score:12"]
    assert again == first and calls.lines() == ran  # reused from the store, not rerun


def test_invalid_return_fails_naming_task_and_model(store_url: str) -> None:
    @flow(name="bad-flow")
    def run() -> Score:
        return wrong(1)

    with pytest.raises(ResultValidationError, match=r"task 'wrong'.*as Score"):
        run()
    assert ResultsManager.from_url(store_url).list_ids() == []


def test_options_retries_and_overwrite(tmp_path: object, calls: CallLog) -> None:
    rm = ResultsManager.from_url("memory://deco-options")
    attempts: list[int] = []

    @results_task(manager=rm, retries=2, retry_delay_seconds=0, tags=["rf"])
    def flaky(x: int) -> Score:
        attempts.append(x)
        if len(attempts) < 2:
            raise RuntimeError("first attempt fails")
        return Score(item=x, value=1.0, pid=0)

    renamed = flaky.with_options(name="renamed")
    assert isinstance(renamed, ResultsTask) and renamed.tags == {"rf"}

    @results_task(manager=rm, behavior=SetBehavior.OVERWRITE, lock=False)
    def fresh(x: int) -> Score:
        attempts.append(-x)
        return Score(item=x, value=float(len(attempts)), pid=0)

    @flow(name="opts-flow")
    def run() -> tuple[Score, Score, Score, Score]:
        return flaky(1), renamed(1), fresh(2), fresh(2)

    a, b, c, d = run()
    assert a == b and attempts[:2] == [1, 1]  # one retry, then the renamed copy computes
    assert c.value < d.value  # OVERWRITE recomputes every time
    assert sorted(rm.list_ids()) == [
        "opts-flow/flaky/" + result_id_for(flaky, 1).rsplit("/", 1)[1],
        "opts-flow/fresh/" + result_id_for(fresh, 2).rsplit("/", 1)[1],
        "opts-flow/renamed/" + result_id_for(flaky, 1).rsplit("/", 1)[1],
    ]


def test_plain_fn_call_outside_prefect_stores_and_returns_the_model(
    store_url: str, calls: CallLog
) -> None:
    first = score.fn(6)
    assert isinstance(first, Score) and first.value == 12.0
    assert score.fn(6) == first and calls.lines() == ["score:6"]
    assert ResultsManager.from_url(store_url).exists(result_id_for(score, 6))  # no-flow/...
