"""Day-2 operations on real Prefect runs (issue 23): expiry (item 3), failures as data
(item 4) and lineage (item 6), for sync and async tasks, per-item and chunked maps."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from rich.console import Console

from results_flow import ResultsManager
from results_flow.cli import app
from results_flow.errors import FailedItemError
from results_flow.failures import failures_under
from results_flow.prefect import ResumeResults, result_id_for, results_map, results_task
from results_flow.prefect.decorator import ResultsTask
from tests.conftest import _forget_cached_managers
from tests.prefect.conftest import CallLog
from tests.prefect.tasks import Score, record_call

#: Items the fragile tasks refuse (each test sets it).
REFUSED: set[int] = set()


@results_task(retries=1, retry_delay_seconds=0)
def fragile(item: int) -> Score:
    record_call("fragile", item)
    if item in REFUSED:
        raise ValueError(f"{item} refused")
    return Score(item=item, value=float(item), pid=os.getpid())


@results_task(retries=1, retry_delay_seconds=0)
async def afragile(item: int) -> Score:
    record_call("afragile", item)
    if item in REFUSED:
        raise ValueError(f"{item} refused")
    return Score(item=item, value=float(item), pid=os.getpid())


@results_task
def load(item: int) -> Score:
    record_call("load", item)
    return Score(item=item, value=float(item), pid=os.getpid())


@results_task
def double(score: Score) -> Score:
    return Score(item=score.item, value=2 * score.value, pid=os.getpid())


@results_task
async def adouble(score: Score) -> Score:
    return Score(item=score.item, value=2 * score.value, pid=os.getpid())


PATHS = [
    pytest.param(fragile, None, id="sync-per-item"),
    pytest.param(fragile, 2, id="sync-chunks"),
    pytest.param(afragile, None, id="async-per-item"),
    pytest.param(afragile, 2, id="async-chunks"),
]


def age(store: ResultsManager, rid: str, by: timedelta) -> datetime:
    """Make the record of ``rid`` look last updated ``by`` ago; returns its creation time."""
    record = store.record(rid)
    store.backend.upsert(rid, dataclasses.replace(record, updated_at=record.updated_at - by))
    return record.created_at


# --- 3. expiry ------------------------------------------------------------------------------


@pytest.mark.parametrize(("task", "chunk_size"), PATHS)
def test_an_expired_result_is_recomputed_overwritten_and_counted(
    store_url: str, calls: CallLog, task: ResultsTask[Any, Any], chunk_size: int | None
) -> None:
    REFUSED.clear()
    name = task.name

    @flow(name="day2-expiry")
    def mapped(items: list[int], expire_after: timedelta | None = None) -> ResumeResults[Score]:
        return results_map(task, items, chunk_size=chunk_size, expire_after=expire_after)

    @flow(name="day2-expiry")
    def sync_single(item: int, what: Any) -> Score:
        return what(item)  # type: ignore[no-any-return]

    @flow(name="day2-expiry")
    async def async_single(item: int, what: Any) -> Score:
        return await what(item)  # type: ignore[no-any-return]

    def single(item: int, what: Any) -> Score:
        if task is afragile:
            return asyncio.run(async_single(item, what))
        return sync_single(item, what)

    store = ResultsManager.from_url(store_url)
    rid = result_id_for(task, 1, flow="day2-expiry")
    assert mapped([1, 2]).computed == 2
    created = age(store, rid, timedelta(days=2))
    assert mapped([1, 2]).computed == 0  # no expiry: an old result is reused

    day = timedelta(days=1)
    report = mapped([1, 2], expire_after=day)
    assert (report.computed, report.expired, report.reused) == (1, 1, 1)
    assert "1 of them expired" in report.summary()
    record = store.record(rid)
    assert record.created_at == created and datetime.now(UTC) - record.updated_at < day
    assert calls.counts()[f"{name}:1"] == 2 and calls.counts()[f"{name}:2"] == 1
    assert mapped([1, 2], expire_after=day).computed == 0  # fresh again

    # Prefect's cache_expiration, on the task, is honoured by maps and single runs.
    age(store, rid, timedelta(days=2))
    assert mapped([1, 2]).computed == 0
    honouring = task.with_options(cache_expiration=day)
    report = results_map_flow(honouring, [1, 2], chunk_size)
    assert (report.computed, report.expired) == (1, 1)
    age(store, rid, timedelta(days=2))
    single(1, task)
    assert calls.counts()[f"{name}:1"] == 3  # reused: no expiry on the task itself
    single(1, task.with_options(expire_after=day))
    assert calls.counts()[f"{name}:1"] == 4
    single(1, task.with_options(expire_after=day))  # fresh now
    age(store, rid, timedelta(days=2))
    single(1, honouring)
    assert calls.counts()[f"{name}:1"] == 5


@flow(name="day2-expiry")
def results_map_flow(task: Any, items: list[int], chunk_size: int | None) -> ResumeResults[Any]:
    return results_map(task, items, chunk_size=chunk_size)


def test_expire_after_must_be_a_positive_timedelta() -> None:
    with pytest.raises(ValueError, match="expire_after must be a positive"):
        results_task(expire_after=timedelta(0))(load.fn)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="expire_after must be a positive"):
        load.with_options(expire_after=3600)  # type: ignore[arg-type]


# --- 4. failures as data --------------------------------------------------------------------


@pytest.mark.parametrize(("task", "chunk_size"), PATHS)
def test_failures_are_kept_counted_capped_and_cleared(
    store_url: str, calls: CallLog, task: ResultsTask[Any, Any], chunk_size: int | None
) -> None:
    name = task.name

    @flow(name="day2-failures")
    def run(
        items: list[int], max_failures: int | None = None, retry_failed: bool = True
    ) -> ResumeResults[Score]:
        return results_map(
            task,
            items,
            chunk_size=chunk_size,
            max_failures=max_failures,
            retry_failed=retry_failed,
        )

    store = ResultsManager.from_url(store_url)
    ids = {i: result_id_for(task, i, flow="day2-failures") for i in (1, 2, 3)}
    REFUSED.clear()
    REFUSED.add(2)
    with pytest.raises(ValueError, match="2 refused"):
        run([1, 2, 3])
    assert calls.counts()[f"{name}:2"] == 2  # one retry
    kept = failures_under(store)
    assert list(kept) == [ids[2]]
    first = kept[ids[2]]
    assert (first.error_type, first.message, first.attempts, first.runs_failed) == (
        "ValueError",
        "2 refused",
        2,
        1,
    )
    assert (first.flow_name, first.task_name) == ("day2-failures", name)
    assert first.flow_run_id and first.task_run_id
    assert store.list_ids() == sorted([ids[1], ids[3]])  # no failure record among results

    with pytest.raises(ValueError, match="2 refused"):
        run([1, 2, 3])  # fails again: two runs in a row
    second = failures_under(store)[ids[2]]
    assert second.runs_failed == 2 and second.first_failed_at == first.first_failed_at
    assert second.flow_run_id != first.flow_run_id

    calls.clear()
    with pytest.raises(FailedItemError, match="failed 2 run"):
        run([1, 2, 3], max_failures=2)  # capped: not run
    with pytest.raises(FailedItemError, match="retry_failed=False"):
        run([1, 2, 3], retry_failed=False)
    assert calls.lines() == []
    assert failures_under(store)[ids[2]].runs_failed == 2  # held back is not a failed run

    REFUSED.clear()
    report = run([1, 2, 3], max_failures=3)  # under the cap: retried, and it succeeds
    assert (report.computed, report.reused) == (1, 2)
    assert failures_under(store) == {}  # a success removes the failure record


def test_failure_records_on_file_and_postgres_stores(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch, calls: CallLog
) -> None:
    """The flow-level round trip on the other stores that keep failure records (the store
    side runs on every backend in tests/backends/test_failure_records.py)."""
    for url in (f"file://{tmp_path / 'files'}", postgres_url):
        monkeypatch.setenv("RESULTS_FLOW_STORE", url)
        _forget_cached_managers(url)
        REFUSED.clear()
        REFUSED.add(5)

        @flow(name="day2-stores")
        def run(items: list[int]) -> ResumeResults[Score]:
            return results_map(fragile, items)

        store = ResultsManager.from_url(url)
        rid = result_id_for(fragile, 5, flow="day2-stores")
        with pytest.raises(ValueError, match="5 refused"):
            run([4, 5])
        assert list(failures_under(store)) == [rid]
        assert store.list_ids() == [result_id_for(fragile, 4, flow="day2-stores")]
        REFUSED.clear()
        assert run([4, 5]).computed == 1
        assert failures_under(store) == {}
        store.close()


def test_max_failures_must_be_a_whole_number(store_url: str) -> None:
    @flow(name="day2-bad-cap")
    def run() -> None:
        results_map(fragile, [1], max_failures=0)

    with pytest.raises(ValueError, match="max_failures must be a whole number"):
        run()


# --- 6. lineage -----------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [None, 2])
@pytest.mark.parametrize("downstream", [double, adouble], ids=["sync", "async"])
def test_results_computed_from_upstream_results_keep_their_ids(
    store_url: str, chunk_size: int | None, downstream: ResultsTask[Any, Any]
) -> None:
    @flow(name="day2-lineage")
    def from_futures(items: list[int]) -> list[str]:
        return results_map(downstream, load.map(items), chunk_size=chunk_size).ids

    @flow(name="day2-lineage")
    def chained(items: list[int]) -> tuple[list[str], list[str]]:
        loaded = results_map(load, items)
        return loaded.ids, results_map(downstream, loaded, chunk_size=chunk_size).ids

    store = ResultsManager.from_url(store_url)
    computed = from_futures([1, 2, 3])
    loaded = [result_id_for(load, i, flow="day2-lineage") for i in (1, 2, 3)]
    for upstream, rid in zip(loaded, computed, strict=True):
        assert store.record(rid).metadata["inputs"] == {"score": [upstream]}
    assert "inputs" not in store.record(loaded[0]).metadata
    for rid in computed:
        store.delete(rid)
    # A ResumeResults chained straight into the next map: the same IDs, the same lineage.
    assert chained([1, 2, 3]) == (loaded, computed)
    for upstream, rid in zip(loaded, computed, strict=True):
        assert store.record(rid).metadata["inputs"] == {"score": [upstream]}

    # Walked up from the command line.
    out = Console(file=io.StringIO(), width=300)
    code = app(
        ["show", "--lineage", computed[0], "--store", store_url, "--json"],
        console=out,
        error_console=Console(file=io.StringIO()),
        result_action="return_value",
    )
    assert code == 0
    tree = json.loads(out.file.getvalue())  # type: ignore[attr-defined]
    assert tree["id"] == computed[0] and tree["task_name"] == downstream.name
    assert [(n["id"], n["parameter"], n["task_name"]) for n in tree["inputs"]] == [
        (loaded[0], "score", "load")
    ]


def test_ls_failed_reads_failure_records_without_a_server(store_url: str) -> None:
    REFUSED.clear()
    REFUSED.add(7)

    @flow(name="day2-ls")
    def run() -> None:
        results_map(fragile, [6, 7])

    with pytest.raises(ValueError, match="7 refused"):
        run()
    out = Console(file=io.StringIO(), width=300)
    code = app(
        ["ls", "--failed", "--store", store_url, "--json"],
        console=out,
        error_console=Console(file=io.StringIO()),
        result_action="return_value",
    )
    assert code == 0
    (row,) = json.loads(out.file.getvalue())  # type: ignore[attr-defined]
    assert row["result_id"] == result_id_for(fragile, 7, flow="day2-ls")
    assert (row["error_type"], row["message"], row["attempts"]) == ("ValueError", "7 refused", 2)
