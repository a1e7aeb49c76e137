"""Refresh (issue 9 item 7) and stored results whose model changed (issue 9 item 8,
issue 8 item 14): every way to ask for a recompute overwrites and keeps the creation
time; ``on_invalid`` raises with a count or recomputes, in results_task and results_map."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect import flow
from prefect.settings import PREFECT_TASKS_REFRESH_CACHE, temporary_settings
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel

from results_flow import InvalidResultsError, ResultsManager
from results_flow.prefect import result_id_for, results_map, results_task


class Meter(BaseModel):
    x: int
    unit: str
    run: int


class OldMeter(BaseModel):
    x: int


def make_task(rm: ResultsManager, runs: list[int], **options: object) -> object:
    @results_task(manager=rm, namespace="tests-refresh", **options)  # type: ignore[call-overload]
    def measure(x: int) -> Meter:
        runs.append(x)
        return Meter(x=x, unit="m", run=len(runs))

    return measure


def test_every_refresh_switch_recomputes_overwrites_and_keeps_the_creation_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rm = ResultsManager.from_url("memory://refresh")
    runs: list[int] = []
    measure = make_task(rm, runs)
    always = make_task(rm, runs, refresh=True)

    @flow(name="refresh-flow", task_runner=ThreadPoolTaskRunner(max_workers=2))
    def run(task: object, *xs: int) -> list[Meter]:
        return list(results_map(task, list(xs))) if len(xs) > 1 else [task(xs[0])]  # type: ignore[operator]

    rid = result_id_for(measure, 1, flow="refresh-flow")
    assert run(measure, 1)[0].run == 1
    created = rm.record(rid).created_at
    assert run(measure, 1)[0].run == 1 and runs == [1]  # reused

    def refreshed(task: object, expect_runs: int) -> None:
        assert run(task, 1)[0].run == expect_runs
        assert rm.get(rid, Meter).run == expect_runs  # overwritten
        record = rm.record(rid)
        assert record.created_at == created and record.updated_at > created

    refreshed(measure.with_options(refresh=True), 2)  # type: ignore[attr-defined]
    refreshed(always, 3)
    refreshed(measure.with_options(refresh_cache=True), 4)  # type: ignore[attr-defined]
    with temporary_settings({PREFECT_TASKS_REFRESH_CACHE: True}):
        refreshed(measure, 5)
    monkeypatch.setenv("RESULTS_FLOW_REFRESH", "1")
    refreshed(measure, 6)
    monkeypatch.delenv("RESULTS_FLOW_REFRESH")
    assert run(measure, 1)[0].run == 6  # back to reusing

    run(measure, 1, 2, 3)
    assert runs[:6] == [1] * 6 and sorted(runs[6:]) == [2, 3]  # two threads: any order
    again = run(measure.with_options(refresh=True), 1, 2, 3)  # type: ignore[attr-defined]
    assert sorted(runs[-3:]) == [1, 2, 3] and sorted(m.run for m in again) == [9, 10, 11]


def test_on_invalid_raise_counts_after_the_rest_ran_and_recompute_overwrites() -> None:
    rm = ResultsManager.from_url("memory://invalid")
    runs: list[int] = []
    measure = make_task(rm, runs)
    old = (2, 5, 7)
    for x in old:
        rm.set(result_id_for(measure, x, flow="invalid-flow"), OldMeter(x=x))

    @flow(name="invalid-flow", task_runner=ThreadPoolTaskRunner(max_workers=2))
    def many(task: object) -> list[Meter]:
        return list(results_map(task, range(10)))

    @flow(name="invalid-flow")
    def one(task: object) -> Meter:
        return task(5)  # type: ignore[operator,no-any-return]

    with pytest.raises(
        InvalidResultsError, match='(?s)^1 of 1 stored result no longer validates.*"recompute"'
    ):
        one(measure)
    with pytest.raises(InvalidResultsError) as caught:
        many(measure)
    assert str(caught.value).startswith("3 of 10 stored results no longer validate")
    assert sorted(caught.value.invalid) == sorted(
        result_id_for(measure, x, flow="invalid-flow") for x in old
    )
    assert sorted(runs) == [x for x in range(10) if x not in old]  # the rest ran first

    recompute = measure.with_options(on_invalid="recompute")  # type: ignore[attr-defined]
    results = many(recompute)
    assert [m.x for m in results] == list(range(10))
    assert sorted(runs[7:]) == list(old)  # only the invalid ones recomputed
    assert all(rm.get(result_id_for(measure, x, flow="invalid-flow"), Meter) for x in old)
    assert one(measure).x == 5  # valid now: reused without a policy
    with pytest.raises(ValueError, match="on_invalid must be one of"):
        make_task(rm, runs, on_invalid="ignore")


def test_a_damaged_stored_record_is_one_bad_id_that_recompute_overwrites(tmp_path: Path) -> None:
    """A damaged record stopped the batch read, so results_map could not plan at all."""
    rm = ResultsManager(str(tmp_path / "store"))
    runs: list[int] = []
    measure = make_task(rm, runs, on_invalid="recompute")

    @flow(name="damaged-flow", task_runner=ThreadPoolTaskRunner(max_workers=2))
    def many(task: object) -> list[Meter]:
        return list(results_map(task, range(6)))

    @flow(name="damaged-flow")
    def one(task: object) -> Meter:
        return task(4)  # type: ignore[operator,no-any-return]

    assert [m.x for m in many(measure)] == list(range(6))
    damaged = [result_id_for(measure, x, flow="damaged-flow") for x in (1, 4)]
    for rid in damaged:
        (tmp_path / "store" / f"{rid}.json").write_text('{"format": "results_flow/1", "da')
    ids = [result_id_for(measure, x, flow="damaged-flow") for x in range(6)]
    assert sorted(rm.get_many(ids, Meter, on_invalid="skip")) == sorted(set(ids) - set(damaged))
    with pytest.raises(InvalidResultsError, match="^2 of 6 stored results") as caught:
        rm.get_many(ids, Meter)
    assert sorted(caught.value.invalid) == sorted(damaged) and len(caught.value.found) == 4

    assert [m.x for m in many(measure)] == list(range(6))
    assert sorted(runs[6:]) == [1, 4]  # only the damaged ones recomputed
    assert all(rm.get(rid, Meter) for rid in damaged)
    (tmp_path / "store" / f"{damaged[1]}.json").write_text("")
    assert one(measure).x == 4 and runs[-1] == 4  # one task run: recomputed too
