"""The Prefect layer on an object store (the local S3 server): results_task with
compute-once leases, results_map resuming, and ResultsStorage keeping Prefect's own
results in a bucket (issue 10 item 4)."""

from __future__ import annotations

from collections import Counter

import pytest
from prefect import flow, task
from prefect.cache_policies import INPUTS, TASK_SOURCE
from prefect.task_runners import ThreadPoolTaskRunner

from results_flow import ResultsManager
from results_flow.prefect import ResultsStorage, results_map
from tests.prefect.conftest import CallLog
from tests.prefect.tasks import Score, racer, resume_flow, score
from tests.s3_server import S3Server


@pytest.fixture
def s3_store(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh prefix in the session bucket, made the default store."""
    url = s3_server.url()
    monkeypatch.setenv("RESULTS_FLOW_STORE", url)
    return url


def test_results_task_and_results_map_store_once_then_reuse(s3_store: str, calls: CallLog) -> None:
    first = resume_flow(12)
    assert [s.item for s in first] == list(range(12))
    assert sorted(calls.lines()) == sorted(f"score:{i}" for i in range(12))
    calls.clear()
    assert resume_flow(12) == first
    assert calls.lines() == []
    assert len(ResultsManager.from_url(s3_store).list_ids("resume-flow/score")) == 12


def test_threads_racing_on_one_id_compute_it_once_under_a_lease(
    s3_store: str, calls: CallLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RF_TEST_SLEEP", "0.3")

    @flow(name="s3-race", task_runner=ThreadPoolTaskRunner(max_workers=6))
    def race() -> list[Score]:
        return racer.map([1, 1, 1, 2, 2, 2]).result()

    results = race()
    assert Counter(calls.lines()) == {"racer:1": 1, "racer:2": 1}
    assert {r.item for r in results} == {1, 2}
    assert len({r.pid for r in results if r.item == 1}) == 1


def test_results_map_submits_only_the_missing_items(s3_store: str, calls: CallLog) -> None:
    @flow(name="s3-map", task_runner=ThreadPoolTaskRunner(max_workers=4))
    def fan_out(n: int) -> list[Score]:
        return list(results_map(score, range(n)))

    fan_out(5)
    calls.clear()
    assert [s.item for s in fan_out(8)] == list(range(8))
    assert sorted(calls.lines()) == ["score:5", "score:6", "score:7"]


def test_results_storage_block_keeps_prefect_results_in_the_bucket(
    s3_store: str, calls: CallLog
) -> None:
    block = ResultsStorage(store_url=s3_store, prefix="pf")
    block.save("rf-s3-tests", overwrite=True)
    # Bytes that are no JSON record are kept only by a block that trusts them.
    trusting = ResultsStorage(store_url=s3_store, prefix="pf", allow_pickle=True)
    assert trusting.write_path("k1", b"\xff\x00 binary", _sync=True) == "k1"
    assert trusting.read_path("k1", _sync=True) == b"\xff\x00 binary"

    @task(
        cache_policy=INPUTS + TASK_SOURCE,
        result_storage="results-storage/rf-s3-tests",
        result_serializer="json",
        persist_result=True,
    )
    def tenfold(x: int) -> int:
        calls.path.open("a").write(f"tenfold:{x}\n")
        return x * 10

    @flow(name="s3-block")
    def run(values: list[int]) -> list[int]:
        return [tenfold(v) for v in values]

    assert run([1, 2]) == [10, 20]
    assert run([1, 2, 3]) == [10, 20, 30]
    assert sorted(calls.lines()) == ["tenfold:1", "tenfold:2", "tenfold:3"]
    stored = ResultsManager.from_url(s3_store).list_ids("pf")
    assert len(stored) == 4  # k1 and three task results
