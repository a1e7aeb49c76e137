"""ResultsStorage by slug and by object, at flow level with plain tasks, and Prefect's
results kept as readable documents (issue 22 item 6)."""

from __future__ import annotations

import base64
import io
import json
import logging
import pickle
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from prefect import flow, task
from prefect.cache_policies import INPUTS
from prefect.context import TaskRunContext
from prefect.results import ResultStore
from prefect.serializers import JSONSerializer, PickleSerializer
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel
from rich.console import Console

from results_flow import ResultsManager, register_model
from results_flow.blobs import PrefectResultBlob
from results_flow.cli import app
from results_flow.errors import CorruptRecordError, UntrustedRecordError
from results_flow.prefect import PydanticSerializer, ResultsStorage
from results_flow.write_policy import SetBehavior, write_record
from tests.prefect.conftest import CallLog


@register_model(namespace="tests-prefect-documents")
class Reading(BaseModel):
    sensor: str
    value: float


class Opaque:
    """A value Prefect can pickle but that has no JSON form."""


class Planted:
    """A pickle payload that creates the file it names when unpickled."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


@pytest.fixture
def prefect_warnings() -> Iterator[list[logging.LogRecord]]:
    """Every warning or error Prefect's loggers emit during the test."""
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    handler = Keep(level=logging.WARNING)
    logger = logging.getLogger("prefect")
    logger.addHandler(handler)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)


def test_slug_and_object_forms_store_readable_documents_and_reuse_them(
    store_url: str, calls: CallLog, tmp_path: Path
) -> None:
    object_url = f"sqlite:///{tmp_path / 'object' / 'results.db'}"
    ResultsStorage(store_url=store_url).save("rf-docs-slug", overwrite=True)
    ResultsStorage(store_url=object_url).save("rf-docs-object", overwrite=True)

    def reading(kind: str, result_storage: object) -> object:
        @task(
            name=f"read-{kind}",
            cache_policy=INPUTS,
            result_storage=result_storage,  # type: ignore[arg-type]
            result_serializer=PydanticSerializer(),
        )
        def read(sensor: str) -> Reading:
            calls.path.open("a").write(f"{kind}:{sensor}\n")
            context = TaskRunContext.get()
            assert context is not None
            blocks.append(context.result_store.result_storage)
            return Reading(sensor=sensor, value=len(sensor) / 2)

        return read

    blocks: list[object] = []
    by_slug = reading("slug", "results-storage/rf-docs-slug")
    by_object = reading("object", ResultsStorage.load("rf-docs-object"))

    @flow(name="documents-flow")
    def run(sensors: list[str]) -> list[object]:
        tasks = (by_slug, by_object)
        return [t(s, return_state=True) for t in tasks for s in sensors]  # type: ignore[operator]

    first = run(["t1", "t22"])
    assert [s.result() for s in first] == [  # type: ignore[attr-defined]
        Reading(sensor="t1", value=1.0),
        Reading(sensor="t22", value=1.5),
    ] * 2
    # The slug was loaded once in the flow run: both of its task runs used one block.
    assert blocks[0] is blocks[1] and isinstance(blocks[0], ResultsStorage)

    second = run(["t1", "t22"])
    assert [s.name for s in second] == ["Cached"] * 4  # type: ignore[attr-defined]
    assert [s.result() for s in second] == [s.result() for s in first]  # type: ignore[attr-defined]
    assert sorted(calls.lines()) == ["object:t1", "object:t22", "slug:t1", "slug:t22"]

    for url, state in ((store_url, first[0]), (object_url, first[2])):
        store = ResultsManager.from_url(url)
        ids = store.list_ids("prefect")
        assert len(ids) == 2
        records = {store.get(i).sensor: store.record(i) for i in ids}
        record = records["t1"]
        assert (record.namespace, record.model_type) == ("tests-prefect-documents", "Reading")
        assert json.loads(record.data) == {"sensor": "t1", "value": 1.0}
        details = state.state_details  # type: ignore[attr-defined]
        assert record.metadata["task_run_id"] == str(details.task_run_id)
        assert record.metadata["flow_run_id"] == str(details.flow_run_id)
        assert record.metadata["flow_name"] == "documents-flow"
        assert record.metadata["task_name"].startswith("read-")
        prefect_record = record.metadata["prefect"]["record"]
        assert prefect_record["serializer"]["type"] == "results_flow_pydantic"
        assert ids[0].endswith(prefect_record["storage_key"]) or ids[1].endswith(
            prefect_record["storage_key"]
        )


def test_a_fan_out_loads_its_slug_once(store_url: str) -> None:
    """Regression: the first task runs of a map each loaded the block (all missed at once)."""
    ResultsStorage(store_url=store_url).save("rf-docs-fanout", overwrite=True)
    blocks: list[object] = []

    @task(
        cache_policy=INPUTS,
        result_storage="results-storage/rf-docs-fanout",
        result_serializer="json",
    )
    def ident(x: int) -> int:
        context = TaskRunContext.get()
        assert context is not None
        blocks.append(context.result_store.result_storage)
        return x

    @flow(name="fan-out", task_runner=ThreadPoolTaskRunner(max_workers=8))
    def run() -> list[int]:
        return ident.map(range(16)).result()  # type: ignore[no-any-return]

    assert run() == list(range(16))
    assert len(blocks) == 16
    assert len({id(block) for block in blocks}) == 1


def test_a_slug_resolves_again_in_the_next_flow_run(
    store_url: str, calls: CallLog, tmp_path: Path
) -> None:
    """A block re-saved with another store is used by the next flow run."""
    ResultsStorage(store_url=store_url).save("rf-docs-moved", overwrite=True)

    @task(
        cache_policy=INPUTS,
        result_storage="results-storage/rf-docs-moved",
        result_serializer="json",
    )
    def double(x: int) -> int:
        calls.path.open("a").write(f"double:{x}\n")
        return 2 * x

    @flow(name="moved-flow")
    def run() -> int:
        return double(4)

    assert run() == 8
    moved_url = f"sqlite:///{tmp_path / 'moved' / 'results.db'}"
    ResultsStorage(store_url=moved_url).save("rf-docs-moved", overwrite=True)
    assert run() == 8
    assert calls.lines() == ["double:4", "double:4"]  # the new store had no record yet
    for url in (store_url, moved_url):
        (result_id,) = ResultsManager.from_url(url).list_ids("prefect")
        assert ResultsManager.from_url(url).get(result_id) == 8


def test_flow_level_storage_with_plain_tasks_stores_json_without_errors(
    store_url: str, calls: CallLog, prefect_warnings: list[logging.LogRecord]
) -> None:
    """Regression: tasks and the flow's own result (Prefect's default pickle serializer)
    logged UntrustedRecordError under a flow-level ResultsStorage."""
    ResultsStorage(store_url=store_url).save("rf-docs-flow", overwrite=True)

    @task(cache_policy=INPUTS)
    def measure(sensor: str) -> Reading:
        calls.path.open("a").write(f"measure:{sensor}\n")
        return Reading(sensor=sensor, value=2.5)

    @task(cache_policy=INPUTS)
    def pair(x: int) -> tuple[int, str]:
        calls.path.open("a").write(f"pair:{x}\n")
        return (x, str(x))

    @flow(name="flow-level", result_storage="results-storage/rf-docs-flow")
    def run() -> list[object]:
        return [measure("t1"), pair(3)]

    state = run(return_state=True)
    assert state.is_completed()
    assert state.result() == [Reading(sensor="t1", value=2.5), (3, "3")]
    assert run() == [Reading(sensor="t1", value=2.5), (3, "3")]
    assert sorted(calls.lines()) == ["measure:t1", "pair:3"]  # the second run hit the cache
    assert [r.getMessage() for r in prefect_warnings] == []

    store = ResultsManager.from_url(store_url)
    by_task = {store.record(i).metadata.get("task_name"): i for i in store.list_ids("prefect")}
    assert store.get(by_task["measure"]) == Reading(sensor="t1", value=2.5)
    assert store.get(by_task["pair"]) == (3, "3")
    assert store.record(by_task["pair"]).model_type == "tuple[int, str]"
    flow_results = [i for t, i in by_task.items() if t is None]
    assert flow_results, "the flow's own result is stored too"
    flow_record = store.record(flow_results[0])
    assert flow_record.metadata["flow_name"] == "flow-level"
    assert json.loads(flow_record.data) == [{"sensor": "t1", "value": 2.5}, [3, "3"]]
    # Prefect reads the flow's result back from the block, as JSON, not a pickle.
    block = ResultsStorage.load("rf-docs-flow")
    key = flow_results[0].removeprefix("prefect/")
    assert json.loads(block.read_path(key))["metadata"]["serializer"]["type"] == (
        "results_flow_pydantic"
    )
    assert ResultStore(result_storage=block).read(key).result == [
        Reading(sensor="t1", value=2.5),
        (3, "3"),
    ]


def test_a_value_with_no_json_form_is_refused_by_name_or_kept_with_allow_pickle(
    store_url: str, calls: CallLog, prefect_warnings: list[logging.LogRecord]
) -> None:
    ResultsStorage(store_url=store_url).save("rf-docs-opaque", overwrite=True)
    pickles = ResultsStorage(store_url=store_url, prefix="pickles", allow_pickle=True)
    pickles.save("rf-docs-pickles", overwrite=True)

    @task(cache_policy=INPUTS)
    def make(x: int) -> Opaque:
        calls.path.open("a").write(f"make:{x}\n")
        return Opaque()

    @flow(name="opaque-refused", result_storage="results-storage/rf-docs-opaque")
    def refused() -> int:
        return 1 if isinstance(make(1), Opaque) else 0

    @flow(name="opaque-kept", result_storage="results-storage/rf-docs-pickles")
    def kept() -> int:
        return 2 if isinstance(make(2), Opaque) else 0

    assert refused() == 1  # Prefect logs the refusal and goes on without the record
    # Logged as a failed commit of the task's cache transaction, with the error attached.
    messages = [
        f"{r.getMessage()}: {r.exc_info[1] if r.exc_info else ''}" for r in prefect_warnings
    ]
    assert any("of type Opaque, which has no JSON form" in m for m in messages), messages
    store = ResultsManager.from_url(store_url)
    assert [store.record(i).metadata.get("task_name") for i in store.list_ids("prefect")] == [
        None  # only the flow's own result, 1
    ]

    assert kept() == 2
    assert kept() == 2
    assert calls.lines() == ["make:1", "make:2"]  # the pickled record was a cache hit
    kept_ids = store.list_ids("pickles")
    assert len(kept_ids) == 3  # make(2) and the two runs' flow results, all kept pickled
    assert all(isinstance(store.get(i), PrefectResultBlob) for i in kept_ids)
    with pytest.raises(UntrustedRecordError, match="'pickle'"):
        ResultsStorage(store_url=store_url, prefix="pickles").read_path(
            kept_ids[0].removeprefix("pickles/")
        )

    # Outside a run, write_path never unpickles what it is given: it refuses it.
    content = ResultStore(serializer=PickleSerializer()).create_result_record(1, key="k")
    with pytest.raises(UntrustedRecordError, match="'pickle'"):
        ResultsStorage(store_url=store_url).write_path("k", content.serialize())


def test_show_and_get_read_a_prefect_result_directly(store_url: str) -> None:
    block = ResultsStorage(store_url=store_url)
    record = ResultStore(result_storage=block, serializer=PydanticSerializer())
    value = [Reading(sensor="a", value=1.0)]
    block.write_path("r1", record.create_result_record(value, key="r1").serialize())

    assert ResultsManager.from_url(store_url).get("prefect/r1") == value
    out = Console(file=io.StringIO(), width=200)
    command = ["show", "prefect/r1", "--json", "--store", store_url]
    assert app(command, console=out, result_action="return_value") == 0
    shown = json.loads(out.file.getvalue())  # type: ignore[attr-defined]
    assert shown["model_type"] == "list[Reading]"
    assert shown["data"] == [{"sensor": "a", "value": 1.0}]
    assert shown["metadata"]["prefect"]["record"]["storage_key"] == "r1"
    assert ResultStore(result_storage=block).read("r1").result == value


def test_records_of_earlier_versions_still_read(store_url: str) -> None:
    """A store written before documents keeps PrefectResultBlob records; they read."""
    legacy = json.dumps({"metadata": {"serializer": {"type": "json"}}, "result": "41"}).encode()
    ResultsManager.from_url(store_url).set(
        "prefect/old", PrefectResultBlob.of(legacy), SetBehavior.OVERWRITE
    )
    block = ResultsStorage(store_url=store_url)
    assert block.read_path("old") == legacy
    assert ResultStore(result_storage=block).read("old").result == 41

    ResultsManager.from_url(store_url).set("prefect/mine", Reading(sensor="x", value=0.0))
    with pytest.raises(CorruptRecordError, match="not a Prefect result record"):
        block.read_path("mine")


def test_a_planted_document_naming_pickle_is_refused_and_never_runs(
    store_url: str, tmp_path: Path
) -> None:
    block = ResultsStorage(store_url=store_url)
    block.write_path(
        "k",
        ResultStore(result_storage=block, serializer=JSONSerializer())
        .create_result_record(7, key="k")
        .serialize(),
    )
    store = ResultsManager.from_url(store_url)
    record = store.record("prefect/k")
    marker = tmp_path / "payload-ran"
    payload = base64.b64encode(pickle.dumps(Planted(str(marker)))).decode()
    metadata = json.loads(json.dumps(record.metadata))
    metadata["prefect"]["record"]["serializer"] = {"type": "pickle", "picklelib": "pickle"}
    planted = replace(record, data=json.dumps(payload), metadata=metadata)
    write_record(store.backend, "prefect/k", planted, SetBehavior.OVERWRITE)

    with pytest.raises(UntrustedRecordError, match="'pickle'"):
        ResultStore(result_storage=block).read("k")
    assert not marker.exists()
    # The payload was live: a block that opts in runs it.
    ResultStore(result_storage=ResultsStorage(store_url=store_url, allow_pickle=True)).read("k")
    assert marker.exists()
