"""Flow-independent result IDs (issue 22 item 3): ``scope="task"`` (or
``RESULTS_FLOW_ID_SCOPE=task``) gives ``<task>/<key>``, so the same call is computed once
whether a parent flow, its subflow, another flow or a renamed flow makes it; a result
stored under the former ``<flow>/<task>/<key>`` of the running flow is taken over."""

from __future__ import annotations

import pytest
from prefect import flow, task
from prefect.context import TaskRunContext

from results_flow import ResultsManager
from results_flow.prefect import RESULT_ID, result_id_for, results_map, results_task
from results_flow.settings import ID_SCOPE_ENV
from tests.prefect.conftest import CallLog
from tests.prefect.tasks import Score, record_call, score


@results_task(scope="task")
def shared(n: int) -> Score:
    record_call("shared", n)
    return Score(item=n, value=n / 4, pid=0)


@results_task  # follows RESULTS_FLOW_ID_SCOPE
def moving(n: int) -> list[int]:
    record_call("moving", n)
    return [n, n * n]


@flow(name="scope-child")
def child() -> list[Score]:
    return [shared(1), shared(2)]


@flow(name="scope-parent")
def parent() -> list[Score]:
    return [shared(1), *child()]


@flow(name="scope-other")
def other() -> list[Score]:
    return list(results_map(shared, [1, 2, 3]))


def test_task_scope_reuses_one_result_from_any_flow(store_url: str, calls: CallLog) -> None:
    first = parent()
    assert first[0] == first[1]
    assert sorted(calls.lines()) == ["shared:1", "shared:2"]  # the subflow reused shared(1)
    assert [s.item for s in other()] == [1, 2, 3]
    assert other.with_options(name="scope-renamed")() == other()
    assert sorted(calls.lines()) == ["shared:1", "shared:2", "shared:3"]
    rid = result_id_for(shared, 1)
    assert rid.startswith("shared/") and rid == result_id_for(shared, 1, flow="anything")
    assert ResultsManager.from_url(store_url).list_ids() == sorted(
        result_id_for(shared, n) for n in (1, 2, 3)
    )


@task(name="keyed")
def keyed() -> str | None:
    context = TaskRunContext.get()
    return None if context is None else RESULT_ID.compute_key(context, {"x": 1}, {})


@flow(name="scope-cache")
def cache_key() -> str:
    return str(keyed())


def test_the_project_wide_setting_and_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    assert result_id_for(score, 3, flow="nightly").startswith("nightly/score/")
    monkeypatch.setenv(ID_SCOPE_ENV, "task")
    assert result_id_for(score, 3, flow="nightly").startswith("score/")
    # Prefect's own cache keys (RESULT_ID) keep naming the flow: no take-over reaches them.
    assert cache_key().startswith("scope-cache/keyed/")
    monkeypatch.setenv(ID_SCOPE_ENV, "flows")
    with pytest.raises(ValueError, match="RESULTS_FLOW_ID_SCOPE='flows'.*flow, task"):
        result_id_for(score, 3)
    with pytest.raises(ValueError, match="scope='global'.*flow, task"):
        results_task(scope="global")(score.fn)  # type: ignore[call-overload]


@flow(name="scope-legacy")
def legacy(items: list[int], chunk_size: int | None = None) -> list[list[int]]:
    return [moving(items[0]), *results_map(moving, items[1:], chunk_size=chunk_size)]


def test_task_scope_takes_over_results_stored_under_the_flow_scoped_ids(
    store_url: str, calls: CallLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert legacy([1, 2, 3]) == [[1, 1], [2, 4], [3, 9]]  # flow-scoped, as before
    assert legacy([1, 4, 5]) == [[1, 1], [4, 16], [5, 25]]
    rm = ResultsManager.from_url(store_url)
    former = rm.list_ids()
    assert len(former) == 5 and all(rid.startswith("scope-legacy/moving/") for rid in former)
    calls.clear()

    monkeypatch.setenv(ID_SCOPE_ENV, "task")
    # 1 by a direct call, 2 and 3 by results_map, 4 and 5 by a chunked one: taken over.
    assert legacy([1, 2, 3, 6]) == [[1, 1], [2, 4], [3, 9], [6, 36]]
    assert legacy([6, 4, 5], chunk_size=2) == [[6, 36], [4, 16], [5, 25]]
    assert calls.lines() == ["moving:6"]

    new = rm.record(result_id_for(moving, 2))
    assert new.metadata["copied_from"] == f"scope-legacy/{result_id_for(moving, 2)}"
    assert new.model_type == "list[int]"
    assert set(rm.list_ids()) == set(former) | {result_id_for(moving, n) for n in range(1, 7)}
