"""Batch resume: a 200-item fan-out killed with SIGKILL half way resumes computing
exactly the missing items; results_map reports what it computed and reused."""

from __future__ import annotations

import signal
import time

import pytest
from prefect import flow, unmapped

from results_flow import ResultsManager
from results_flow.prefect import results_map
from tests.prefect.conftest import CallLog, start_worker
from tests.prefect.tasks import Score, resume_flow, score

ITEMS = 200


def test_sigkilled_fan_out_resumes_with_only_the_missing_items(
    store_url: str, calls: CallLog, worker_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    worker_env["RF_TEST_SLEEP"] = "0.03"
    worker = start_worker(worker_env, "resume", str(ITEMS))
    rm = ResultsManager.from_url(store_url)
    deadline = time.monotonic() + 120
    try:
        while len(rm.list_ids("resume-flow/score")) < ITEMS // 2:
            if worker.poll() is not None:
                pytest.fail(f"the flow ended before it was killed: {worker.communicate()}")
            if time.monotonic() > deadline:
                pytest.fail("the flow stored too few results in 120 s")
            time.sleep(0.02)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.communicate()
    stored = set(rm.list_ids("resume-flow/score"))
    assert ITEMS // 2 <= len(stored) < ITEMS
    ids = [f"resume-flow/score/{score.result_id(i).rsplit('/', 1)[1]}" for i in range(ITEMS)]
    missing = {i for i, rid in enumerate(ids) if rid not in stored}

    calls.clear()
    results = resume_flow(ITEMS)

    assert sorted(int(line.split(":")[1]) for line in calls.lines()) == sorted(missing)
    assert [r.item for r in results] == list(range(ITEMS))
    assert all(isinstance(r, Score) and r.value == 2 * r.item for r in results)
    assert len(rm.get_many(ids, Score)) == ITEMS


def test_results_map_reports_counts_in_input_order_and_dedupes(
    store_url: str, calls: CallLog
) -> None:
    @flow(name="map-flow")
    def run(items: list[int]) -> tuple[list[Score], int, int, list[str]]:
        report = results_map(score, items, factor=unmapped(3.0))
        return list(report), report.computed, report.reused, report.ids

    first, computed, reused, ids = run([3, 1, 2, 1])
    assert [r.item for r in first] == [3, 1, 2, 1] and (computed, reused) == (4, 0)
    assert ids[1] == ids[3]
    assert sorted(calls.lines()) == ["score:1", "score:2", "score:3"]  # 1 computed once

    calls.clear()
    again, computed, reused, _ = run([1, 2, 3, 4])
    assert [r.value for r in again] == [3.0, 6.0, 9.0, 12.0]
    assert (computed, reused) == (1, 3) and calls.lines() == ["score:4"]


def test_results_map_rejects_mismatched_inputs(store_url: str) -> None:
    with pytest.raises(ValueError, match="differ in length"):
        results_map(score, [1, 2], factor=[1.0])
    with pytest.raises(ValueError, match="no parameter named"):
        results_map(score, [1], nope=[1])
