"""Which cache policies keep two tasks with the same inputs apart in a shared store
(issue 9 item 14: ``cache_policy=INPUTS`` alone gave one task another task's result)."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import INPUTS, TASK_SOURCE, CachePolicy

from results_flow.prefect import RESULT_ID, ResultsStorage
from tests.prefect.conftest import CallLog


def pair(policy: CachePolicy, calls: CallLog) -> tuple[object, object]:
    """Two different tasks that cache under ``policy`` in the same store."""
    options = {"cache_policy": policy, "result_storage": "results-storage/rf-policies"}

    @task(name="first", result_serializer="json", **options)  # type: ignore[call-overload]
    def first(x: int) -> str:
        calls.path.open("a").write(f"first:{x}\n")
        return f"first:{x}"

    @task(name="second", result_serializer="json", **options)  # type: ignore[call-overload]
    def second(x: int) -> str:
        calls.path.open("a").write(f"second:{x}\n")
        return f"second:{x}"

    return first, second


def test_inputs_alone_shares_keys_and_the_recommended_policies_keep_tasks_apart(
    store_url: str, calls: CallLog
) -> None:
    ResultsStorage(store_url=store_url).save("rf-policies", overwrite=True)
    policies = {"inputs": INPUTS, "result_id": RESULT_ID, "inputs+source": INPUTS + TASK_SOURCE}
    tasks = {name: pair(policy, calls) for name, policy in policies.items()}

    @flow(name="policies-flow")
    def run() -> dict[str, list[str]]:
        results: dict[str, list[str]] = {}
        for x, (name, (first, second)) in enumerate(tasks.items()):
            results[name] = [first(x), second(x)]  # type: ignore[operator]
        return results

    assert run() == {
        "inputs": ["first:0", "first:0"],  # the trap: second got first's result
        "result_id": ["first:1", "second:1"],
        "inputs+source": ["first:2", "second:2"],
    }
    assert "second:0" not in calls.lines()
    assert sorted(calls.lines()) == ["first:0", "first:1", "first:2", "second:1", "second:2"]
