"""Issue 23 item 2, the library side: rm plans by IDs and filters, gc by versions, validity
and size, and deletion that keeps what changed since the plan, on the file, SQLite,
PostgreSQL and S3 stores and a store with only the abstract methods."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel

from results_flow import Record, ResultsManager, register_model
from results_flow import cleanup as cl
from results_flow.errors import MaintenanceError, ResultNotFoundError, UnknownModelError
from results_flow.finding import record_query
from results_flow.maintenance import document_size
from tests.test_maintenance import MinimalBackend

NAMESPACE = "cleanup_test"


@register_model(namespace=NAMESPACE)
class Score(BaseModel):
    value: int


@pytest.fixture(autouse=True)
def _registered() -> None:
    register_model(Score, namespace=NAMESPACE)


@pytest.fixture(params=["file", "sqlite", "postgres", "s3", "minimal"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ResultsManager]:
    if request.param == "minimal":
        manager = ResultsManager(backend=MinimalBackend())
    else:
        from tests.backends.conftest import url_for

        manager = ResultsManager.from_url(url_for(request.param, tmp_path, request))
    with manager:
        yield manager


def put(
    store: ResultsManager, result_id: str, version: str, days_ago: float, *, task: str = "score"
) -> None:
    moment = datetime.now(UTC) - timedelta(days=days_ago)
    metadata = {"flow_name": "daily", "task_name": task, "version": version, "parameters": {}}
    record = Record("Score", NAMESPACE, '{"value": 1}', moment, moment, metadata)
    store.backend.upsert(result_id, record)


def test_rm_plans_many_ids_and_names_the_missing(store: ResultsManager) -> None:
    for i in range(3):
        put(store, f"r/{i}", "v1", 1)
    plan = cl.plan_delete(store, ["r/0", "r/2", "r/0"])
    assert plan.ids == ["r/0", "r/2"] and plan.planned_at is None
    with pytest.raises(ResultNotFoundError, match=r"2 of the IDs are not stored.*'x/1', 'x/2'"):
        cl.plan_delete(store, ["r/0", "x/1", "x/2"])
    with pytest.raises(MaintenanceError, match="not both or neither"):
        cl.plan_delete(store, ["r/0"], prefix="r")
    with pytest.raises(MaintenanceError, match="never deletes everything"):
        cl.plan_delete(store, query=record_query())
    assert cl.delete_planned(store, plan).deleted == 2
    assert store.list_ids() == ["r/1"]


def test_rm_by_filters_keeps_what_changed_since_the_plan(store: ResultsManager) -> None:
    put(store, "daily/a", "v1", 3)
    put(store, "daily/b", "v1", 3)
    put(store, "daily/c", "v2", 3)
    plan = cl.plan_delete(store, query=record_query("daily", version="v1"))
    assert plan.ids == ["daily/a", "daily/b"] and plan.selection == "under 'daily', version=v1"
    put(store, "daily/b", "v1", 0)  # written again after the plan: kept
    report = cl.delete_planned(store, plan)
    assert (report.deleted, report.kept) == (1, 1)
    assert store.list_ids() == ["daily/b", "daily/c"]


def test_gc_keeps_the_newest_versions_per_task(store: ResultsManager) -> None:
    for version, age in (("v1", 30), ("v2", 20), ("v3", 10)):
        put(store, f"daily/score/{version}-a", version, age)
        put(store, f"daily/score/{version}-b", version, age + 1)
    put(store, "daily/other/v1", "v1", 40, task="other")  # the only version of its task
    store.set("plain", Score(value=2), namespace=NAMESPACE)  # no version: never chosen
    plan = cl.plan_gc(store, keep_versions=2)
    assert plan.ids == ["daily/score/v1-a", "daily/score/v1-b"]
    assert plan.reasons == {"older than the newest 2 versions of their task": 2}
    # A version is as new as its newest record: v1 written again is the newest one.
    put(store, "daily/score/v1-again", "v1", 5)
    assert cl.plan_gc(store, keep_versions=2).ids == ["daily/score/v2-a", "daily/score/v2-b"]
    newest = cl.plan_gc(store, keep_versions=1)
    assert newest.ids == [f"daily/score/v{v}-{x}" for v in (2, 3) for x in "ab"]
    plan = cl.plan_gc(store, keep_versions=2)
    with pytest.raises(MaintenanceError, match="at least 1 version"):
        cl.plan_gc(store, keep_versions=0)
    assert cl.delete_planned(store, plan).deleted == 2


def test_gc_invalid_and_size(store: ResultsManager) -> None:
    for i in range(4):
        put(store, f"s/{i}", "v1", 10 - i)  # s/0 oldest
    bad = Record("Score", NAMESPACE, '{"value": "many"}')
    store.backend.upsert("s/bad", bad)
    assert cl.plan_gc(store, invalid=True).ids == ["s/bad"]
    one = document_size(store.record("s/0"))
    total = sum(document_size(store.record(rid)) for rid in store.list_ids())
    sized = cl.plan_gc(store, max_size=total - one)
    assert sized.ids == ["s/0"]
    both = cl.plan_gc(store, invalid=True, max_size=total - document_size(bad))
    assert both.ids == ["s/bad"] and both.reasons == {"no longer valid": 1}
    assert cl.plan_gc(store, max_size=0).ids == sorted(store.list_ids())
    store.backend.upsert("s/ghost", Record("Ghost", NAMESPACE, "{}"))
    with pytest.raises(UnknownModelError, match="import the module"):
        cl.plan_gc(store, invalid=True)
    with pytest.raises(MaintenanceError, match="gc needs a rule"):
        cl.plan_gc(store)


def test_parse_size() -> None:
    assert cl.parse_size("1500000") == 1_500_000
    assert cl.parse_size("500MB") == 500_000_000
    assert cl.parse_size("1.5G") == 1_500_000_000
    assert cl.parse_size("2GiB") == 2 * 2**30
    assert cl.parse_size("64k") == 64_000
    assert cl.parse_size("10 kib") == 10_240
    for bad in ("", "-5MB", "5 parsecs", "MB", "1e9"):
        with pytest.raises(MaintenanceError, match="is not a size such as 500MB"):
            cl.parse_size(bad)
