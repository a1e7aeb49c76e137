"""Failure records (issue 23 item 4) and lineage (item 6), the store side, on every
backend: failure records live under the reserved ``_results_flow/failures/`` prefix, are
read without Prefect, and never mix with results in listings, batch reads, exports,
stats, verify, or deletes by prefix; lineage is walked from records' metadata."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

from results_flow import ResultsManager, cleanup, maintenance, register_model, transfer
from results_flow.aio import AsyncResultsManager
from results_flow.failures import (
    FAILURES_ROOT,
    ItemFailure,
    clear_failures,
    failure_id,
    failures_among,
    failures_under,
    record_failures,
    shared_folder,
)
from results_flow.lineage import lineage


@register_model(namespace="tests-failures")
class Reading(BaseModel):
    value: int


def failure(rid: str, runs: int = 1) -> ItemFailure:
    now = datetime.now(UTC)
    return ItemFailure(
        result_id=rid,
        error_type="ValueError",
        message=f"{rid} refused",
        attempts=2,
        runs_failed=runs,
        task_run_id="t-1",
        failed_at=now,
        first_failed_at=now,
    )


def test_failure_records_are_kept_apart_from_results(manager: ResultsManager) -> None:
    manager.set("f/t/1", Reading(value=1))
    manager.set("g/t/1", Reading(value=2))
    assert record_failures(manager, [failure("f/t/2"), failure("f/t/3", runs=2)]) == 2

    # Read back without Prefect, by prefix and among given IDs.
    under = failures_under(manager, "f")
    assert list(under) == ["f/t/2", "f/t/3"]
    assert under["f/t/3"].runs_failed == 2 and under["f/t/2"].message == "f/t/2 refused"
    assert failures_under(manager) == under
    assert failures_under(manager, "g") == {}
    assert list(failures_among(manager, ["f/t/1", "f/t/3"])) == ["f/t/3"]

    # Not results: whole-store listings, batch reads, exports, stats, verify skip them.
    assert manager.list_ids() == ["f/t/1", "g/t/1"]
    assert manager.list_ids("f") == ["f/t/1"]
    assert manager.get_many(["f/t/1", "f/t/2"], Reading) == {"f/t/1": Reading(value=1)}
    assert manager.exists_many(["f/t/2", "f/t/3"]) == set()
    assert [rid for rid, _ in maintenance.scan(manager)] == ["f/t/1", "g/t/1"]
    assert maintenance.stats(manager).count == 2
    assert maintenance.verify(manager).checked == 2
    out = io.StringIO()
    transfer.export_jsonl(manager, out)
    assert FAILURES_ROOT not in out.getvalue() and out.getvalue().count("\n") == 2
    assert cleanup.plan_delete(manager, prefix="f").ids == ["f/t/1"]
    # ...but a prefix under the reserved segment names them.
    assert manager.list_ids(FAILURES_ROOT) == [failure_id("f/t/2"), failure_id("f/t/3")]
    assert cleanup.plan_delete(manager, prefix=FAILURES_ROOT).ids == [
        failure_id("f/t/2"),
        failure_id("f/t/3"),
    ]

    # Overwritten in place; removed one by one.
    record_failures(manager, [failure("f/t/2", runs=5)])
    assert failures_under(manager, "f/t/2")["f/t/2"].runs_failed == 5
    assert clear_failures(manager, ["f/t/2", "f/t/1"]) == 1
    assert list(failures_under(manager)) == ["f/t/3"]
    manager.clear()
    assert manager.list_ids(FAILURES_ROOT) == []


def test_a_failure_record_too_long_for_an_id_is_skipped_not_raised(
    manager: ResultsManager,
) -> None:
    long_id = "/".join(["x" * 200] * 5)  # fits the grammar; the failure record's ID does not
    assert record_failures(manager, [failure(long_id), failure("short/1")]) == 1
    assert list(failures_under(manager)) == ["short/1"]


async def test_the_async_manager_lists_no_failure_records(store_url: str) -> None:
    sync = ResultsManager.from_url(store_url)
    if store_url.startswith("memory"):
        pytest.skip("a memory store is not shared between two managers")
    sync.set("a/1", Reading(value=1))
    record_failures(sync, [failure("a/2")])
    manager = AsyncResultsManager.from_url(store_url)
    try:
        assert await manager.list_ids() == ["a/1"]
        assert await manager.list_ids(FAILURES_ROOT) == [failure_id("a/2")]
    finally:
        await manager.close()
        sync.close()


def test_lineage_walks_the_inputs_kept_in_metadata(manager: ResultsManager) -> None:
    manager.set("raw/1", Reading(value=1), metadata={"task_name": "load"})
    manager.set("raw/2", Reading(value=2), metadata={"task_name": "load"})
    manager.set(
        "clean/1",
        Reading(value=3),
        metadata={"task_name": "clean", "inputs": {"x": ["raw/1"], "y": ["raw/2", "raw/gone"]}},
    )
    manager.set("score/1", Reading(value=4), metadata={"inputs": {"c": ["clean/1"]}})
    tree = lineage(manager, "score/1")
    assert tree.id == "score/1" and tree.parameter is None
    (clean,) = tree.inputs
    assert (clean.id, clean.parameter, clean.task_name) == ("clean/1", "c", "clean")
    assert [(n.id, n.parameter, n.missing) for n in clean.inputs] == [
        ("raw/1", "x", False),
        ("raw/2", "y", False),
        ("raw/gone", "y", True),
    ]
    assert lineage(manager, "raw/1").inputs == []


def test_failures_are_looked_up_under_whole_segments_every_id_shares() -> None:
    assert shared_folder(["flow/t/h1", "flow/t/h2"]) == "flow/t"
    assert shared_folder(["a/b", "a/b/c", "a/bc"]) == "a"  # "a/b" is no folder of "a/bc"
    assert shared_folder(["ab/c", "ab-d/e"]) == ""
    assert shared_folder(["one"]) == ""
