"""results_map takes what Task.map takes: futures, lists of futures, states, a future
whose result is the list; it resolves them and builds each ID from their results."""

from __future__ import annotations

import pytest
from prefect import flow, task, unmapped

from results_flow import UnhashableParameterError
from results_flow.prefect import result_id_for, results_map
from tests.prefect.conftest import CallLog
from tests.prefect.tasks import Score, score


@task
def double(x: int) -> int:
    return 2 * x


@task
def numbers(n: int) -> list[int]:
    return list(range(n))


@task
def explode(x: int) -> int:
    raise RuntimeError(f"upstream {x} broke")


def test_results_map_over_upstream_map_builds_ids_from_the_results(
    store_url: str, calls: CallLog
) -> None:
    @flow(name="futures-flow")
    def run() -> tuple[list[Score], list[str], list[str]]:
        report = results_map(score, double.map([1, 2, 3]))
        expected = [result_id_for(score, x) for x in (2, 4, 6)]
        return list(report), report.ids, expected

    results, ids, expected = run()
    assert [r.item for r in results] == [2, 4, 6]
    assert ids == expected and len(set(ids)) == 3  # not one ID for every future
    assert sorted(calls.lines()) == ["score:2", "score:4", "score:6"]


def test_results_map_takes_lists_of_futures_states_and_a_future_of_the_list(
    store_url: str, calls: CallLog
) -> None:
    @flow(name="futures-flow")
    def run() -> tuple[list[int], list[int], list[int], list[float]]:
        futures = [double.submit(x) for x in (5, 6)]
        states = [double(x, return_state=True) for x in (7,)]
        listed = results_map(score, futures)
        from_states = results_map(score, states)
        whole = results_map(score, numbers.submit(2))
        factor = results_map(score, [1], factor=unmapped(double.submit(5)))
        return (
            [r.item for r in listed],
            [r.item for r in from_states],
            [r.item for r in whole],
            [r.value for r in factor],
        )

    assert run() == ([10, 12], [14], [0, 1], [10.0])


def test_a_failed_upstream_future_fails_results_map_naming_the_parameter(
    store_url: str, calls: CallLog
) -> None:
    @flow(name="futures-flow")
    def run() -> None:
        results_map(score, explode.map([1]))

    with pytest.raises(RuntimeError, match="upstream 1 broke") as info:
        run()
    assert any("parameter 'item'" in note for note in getattr(info.value, "__notes__", []))
    assert calls.lines() == []


def test_a_future_given_where_no_resolution_happens_is_never_told_to_use_ignore(
    store_url: str,
) -> None:
    @flow(name="futures-flow")
    def run() -> str:
        future = double.submit(1)
        future.wait()
        try:
            result_id_for(score, future)
        except UnhashableParameterError as exc:
            return str(exc)
        return "no error"

    message = run()
    assert "future" in message and "results_map" in message
    assert "ignore=" not in message
