"""What a results_map shows and survives (issue 22 items 4, 5 and 8): a failed upstream
stops only its own input; the progress and table artifacts, the task run names and the
chunk runs' reports, read back from the Prefect server; the warnings of an invalid
stored result, once per ID; Ctrl-C in a user's flow says how much is stored."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel

from results_flow import ResultsManager
from results_flow.prefect import MapProgress, aresults_map, result_id_for, results_map, results_task
from results_flow.prefect.report import Failure, MapArtifacts, MapSummary
from results_flow.urls import mask_url
from tests.prefect.conftest import CallLog, start_worker
from tests.prefect.tasks import Score, record_call, score


class Records(logging.Handler):
    """Every record of Prefect's flow and task run loggers while a test runs."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int = logging.DEBUG) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]


@pytest.fixture
def run_logs() -> Iterator[Records]:
    handler = Records()
    loggers = [logging.getLogger(name) for name in ("prefect.flow_runs", "prefect.task_runs")]
    for one in loggers:
        one.addHandler(handler)
    yield handler
    for one in loggers:
        one.removeHandler(handler)


@task
def fetch(x: int) -> int:
    if x == 3:
        raise RuntimeError(f"fetch {x} broke")
    return x


@results_task
def picky(item: int) -> Score:
    record_call("picky", item)
    if item == 3:
        raise ValueError("3 is refused")
    return Score(item=item, value=float(item), pid=0)


@results_task(retries=2, retry_delay_seconds=0)
def flaky(item: int) -> Score:
    """Item 2 fails its first attempt; item 3 fails every attempt."""
    record_call("flaky", item)
    tried = Path(os.environ["RF_TEST_CALLS"]).read_text().splitlines().count(f"flaky:{item}")
    if item == 3 or (item == 2 and tried == 1):
        raise RuntimeError(f"flaky {item} attempt {tried}")
    return Score(item=item, value=float(item), pid=0)


def notes(exc: BaseException) -> str:
    return " ".join(getattr(exc, "__notes__", []))


GOOD = [1, 2, 4, 5, 6]
UPSTREAM_NOTE = (
    "1 of 6 inputs not run, their upstream failed: input 2 (parameter 'item'): "
    "RuntimeError('fetch 3 broke')"
)


def test_a_failed_upstream_fails_only_its_input(
    store_url: str, calls: CallLog, run_logs: Records
) -> None:
    """Regression (issue 22 item 4): one failed fetch stopped the whole map, nothing was
    submitted, and every rerun failed the same way."""
    events: list[MapProgress] = []

    @flow(name="upstream-flow")
    def run() -> None:
        results_map(score, fetch.map([1, 2, 3, 4, 5, 6]), progress=events.append)

    with pytest.raises(RuntimeError, match="fetch 3 broke") as info:
        run()
    assert UPSTREAM_NOTE in notes(info.value)
    assert sorted(calls.lines()) == [f"score:{x}" for x in GOOD]
    stored = ResultsManager.from_url(store_url).exists_many(
        [result_id_for(score, x, flow="upstream-flow") for x in GOOD]
    )
    assert len(stored) == 5
    upstream = [(e.upstream_of, e.result_id, repr(e.error)) for e in events if e.error]
    assert upstream == [(2, "", "RuntimeError('fetch 3 broke')")]
    assert [e.done for e in events] == [1, 2, 3, 4, 5, 6] and {e.total for e in events} == {6}
    errors = run_logs.messages(logging.ERROR)
    assert any("input 2 (parameter 'item') not run" in m and "fetch 3 broke" in m for m in errors)

    calls.clear()  # the rerun reuses the five and reports the same input
    with pytest.raises(RuntimeError, match="fetch 3 broke") as again:
        run()
    assert calls.lines() == []
    assert UPSTREAM_NOTE in notes(again.value)


def test_a_failed_upstream_fails_only_its_input_in_aresults_map(
    store_url: str, calls: CallLog
) -> None:
    events: list[MapProgress] = []

    @flow(name="upstream-flow")
    async def run() -> None:
        await aresults_map(score, fetch.map([1, 2, 3, 4, 5, 6]), progress=events.append)

    with pytest.raises(RuntimeError, match="fetch 3 broke") as info:
        asyncio.run(run())
    assert UPSTREAM_NOTE in notes(info.value)
    assert sorted(calls.lines()) == [f"score:{x}" for x in GOOD]
    stored = ResultsManager.from_url(store_url).exists_many(
        [result_id_for(score, x, flow="upstream-flow") for x in GOOD]
    )
    assert len(stored) == 5
    assert [e.upstream_of for e in events if e.error] == [2]


def artifacts_of(run_id: UUID) -> dict[str, Any]:
    """The run's artifacts by key, read from the server."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    return {artifact.key: artifact for artifact in found}


def task_run_names(run_id: UUID) -> dict[str, Any]:
    """The run's task runs by name, read from the server."""
    with get_client(sync_client=True) as client:
        found = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        )
    return {one.name: one for one in found}


def test_artifacts_and_task_run_names_show_what_the_map_did(store_url: str, calls: CallLog) -> None:
    """Regression (issue 22 item 5): one log line with counts, no artifact, task runs
    named picky-xyz, reused items without a trace."""
    run_ids: list[UUID] = []

    @flow(name="ui-flow")
    def run(items: list[int]) -> None:
        run_ids.append(flow_run.get_id())  # type: ignore[arg-type]
        results_map(picky, items)

    run([1])
    with pytest.raises(ValueError, match="3 is refused"):
        run([1, 2, 3, 3])
    ids = {x: result_id_for(picky, x, flow="ui-flow") for x in (1, 2, 3)}

    found = artifacts_of(run_ids[1])
    progress = found["results-map-picky-progress"]
    assert progress.type == "progress" and float(progress.data) == 100.0
    table = found["results-map-picky"]
    assert table.type == "table"
    rows = {row["item"]: row["value"] for row in json.loads(table.data)}
    assert rows["inputs"] == 4 and rows["distinct result IDs"] == 3
    assert (rows["computed"], rows["reused from the store"], rows["failed"]) == (1, 1, 2)
    assert rows["store"] == f"{mask_url(store_url)} (default)"  # RESULTS_FLOW_STORE
    assert rows["ID prefix"] == "ui-flow/picky"
    assert "3 is refused" in rows[f"failed: {ids[3]}"]
    assert "2 failed" in (table.description or "")

    names = task_run_names(run_ids[1])
    assert set(names) == {ids[2], ids[3]}  # the reused item 1 ran no task
    assert names[ids[2]].state_type.value == "COMPLETED"


def test_the_table_masks_the_store_password_and_lists_the_first_failures() -> None:
    summary = MapSummary(
        task_name="t",
        inputs=30,
        distinct=30,
        computed=5,
        reused=0,
        failed=25,
        failures=[Failure(f"f/t/{i}", ValueError(i)) for i in range(25)],
        store="postgresql://ann:s3cret@db/results",
        prefix="f/t",
        seconds=1.0,
    )
    rows = summary.table(limit=20)
    text = json.dumps(rows)
    assert "s3cret" not in text and "postgresql://ann:***@db/results" in text
    assert sum(1 for row in rows if row["item"].startswith("failed: f/t/")) == 20
    assert rows[-1] == {"item": "failed: ...", "value": "5 more not listed"}


def test_a_chunk_run_reports_its_items_retries_and_failures(
    store_url: str, calls: CallLog, run_logs: Records
) -> None:
    """Regression (issue 22 item 5): a retried item in a chunk was invisible (the chunk
    said "0 failed", nothing was logged)."""
    run_ids: list[UUID] = []

    @flow(name="chunk-ui-flow")
    def run() -> None:
        run_ids.append(flow_run.get_id())  # type: ignore[arg-type]
        results_map(flaky, [1, 2, 3], chunk_size=10)

    with pytest.raises(RuntimeError, match="flaky 3 attempt 3"):
        run()
    (chunk,) = task_run_names(run_ids[0]).values()
    assert chunk.name == "flaky-chunk-0"
    assert chunk.state.message == "3 items: 2 computed, 1 failed, 3 retries"
    ids = {x: result_id_for(flaky, x, flow="chunk-ui-flow") for x in (2, 3)}
    logged = run_logs.messages(logging.WARNING)
    assert (
        f"item {ids[2]} failed (attempt 1 of 3), retrying in 0s: RuntimeError('flaky 2 attempt 1')"
        in logged
    )
    assert sum(1 for m in logged if m.startswith(f"item {ids[3]} failed (attempt")) == 2
    assert f"item {ids[3]} failed after 3 attempts: RuntimeError('flaky 3 attempt 3')" in logged


class Meter(BaseModel):
    x: int
    unit: str


class OldMeter(BaseModel):
    x: int


def test_an_invalid_stored_result_is_warned_of_once_per_id(run_logs: Records) -> None:
    """Regression (issue 22 item 8): results_map's batch read and the item's two lookups
    each logged the warning: three lines per ID."""
    rm = ResultsManager.from_url("memory://warn-once")

    @results_task(manager=rm, namespace="tests-warn-once", on_invalid="recompute")
    def measure(x: int) -> Meter:
        return Meter(x=x, unit="m")

    for x in (1, 2):
        rm.set(result_id_for(measure, x, flow="warn-flow"), OldMeter(x=x))

    @flow(name="warn-flow", task_runner=ThreadPoolTaskRunner(max_workers=2))
    def run() -> list[Meter]:
        return list(results_map(measure, [1, 2, 3]))

    assert [m.unit for m in run()] == ["m", "m", "m"]
    warned = [m for m in run_logs.messages(logging.WARNING) if "no longer validates" in m]
    assert sorted(warned) == sorted(
        f"stored result {result_id_for(measure, x, flow='warn-flow')!r} no longer validates "
        'as Meter; recomputing it (on_invalid="recompute")'
        for x in (1, 2)
    )


def test_results_flow_refresh_takes_yes_and_refuses_a_typo(
    store_url: str, calls: CallLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README and the code agree (issue 22 item 8): 1/true/yes/on recompute,
    0/false/no/off or unset do not, any other value is an error naming the variable."""
    score(41)
    monkeypatch.setenv("RESULTS_FLOW_REFRESH", "Yes")
    score(41)
    monkeypatch.setenv("RESULTS_FLOW_REFRESH", "off")
    score(41)
    assert calls.lines() == ["score:41", "score:41"]
    monkeypatch.setenv("RESULTS_FLOW_REFRESH", "maybe")
    with pytest.raises(ValueError, match="RESULTS_FLOW_REFRESH='maybe'"):
        score(41)


def test_ctrl_c_in_a_users_flow_says_how_many_results_are_stored(
    store_url: str, calls: CallLog, worker_env: dict[str, str]
) -> None:
    """Regression (issue 22 item 8): Ctrl-C in a flow of one's own around results_map
    ended in a bare KeyboardInterrupt traceback; only the demo said what was stored."""
    worker_env["RF_TEST_SLEEP"] = "0.2"
    child = start_worker(worker_env, "resume", "40")  # resume-flow: 4 threads
    # Eight bodies started on four threads: the first four are stored.
    while len(calls.lines()) < 8 and child.poll() is None:
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=600)
    assert child.returncode != 0, out + err
    said = re.search(r"interrupted: (\d+) of 40 results are stored", out + err)
    assert said is not None, out + err
    assert "KeyboardInterrupt" in out + err  # re-raised, as before
    stored = ResultsManager.from_url(store_url).exists_many(
        [result_id_for(score, x, flow="resume-flow") for x in range(40)]
    )
    assert 4 <= int(said.group(1)) <= len(stored) < 40


hold = threading.Event()


@results_task
def held(item: int) -> Score:
    record_call("held", item)
    if not hold.wait(300):
        raise RuntimeError("never let go")
    return Score(item=item, value=float(item), pid=0)


def test_a_cancelled_aresults_map_says_how_many_results_are_stored(
    store_url: str, calls: CallLog, run_logs: Records
) -> None:
    """The async twin of Ctrl-C: asyncio.run cancels the flow's coroutine on Ctrl-C."""
    hold.clear()

    @flow(name="async-ui-flow", task_runner=ThreadPoolTaskRunner(max_workers=2))
    async def run() -> None:
        mapping = asyncio.create_task(aresults_map(held, [7, 8, 9], max_in_flight=2))
        while len(calls.lines()) < 2:  # two runs started, held
            await asyncio.sleep(0.01)
        mapping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await mapping
        hold.set()

    asyncio.run(run())
    store = f"{mask_url(store_url)} (default)"
    assert (
        f"results_map held cancelled: 0 of 3 results are stored in {store}; run it again to "
        "compute only the missing ones"
    ) in run_logs.messages(logging.WARNING)


def test_progress_artifact_updates_are_throttled() -> None:
    """At most one update per ``interval``: with an hour's interval, 100 settled items
    send no update until the map finishes (10,000 items must not be 10,000 API calls)."""

    def progress_of(run_id: UUID) -> float:
        return float(artifacts_of(run_id)["results-map-throttled-progress"].data)

    @flow(name="throttle-flow")
    def run() -> tuple[float, float]:
        run_id: UUID = flow_run.get_id()  # type: ignore[assignment]
        artifacts = MapArtifacts("throttled", 100, interval=3600)
        artifacts.start(done=10)
        for done in range(11, 101):
            artifacts.progress(MapProgress(f"t/{done}", None, True, None, done, 100))
        between = progress_of(run_id)
        summary = MapSummary("throttled", 100, 100, 90, 10, 0, [], "file:///x", "t", 1.0)
        artifacts.finish(summary, done=100)
        return between, progress_of(run_id)

    assert run() == (10.0, 100.0)
