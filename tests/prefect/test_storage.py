"""ResultsStorage, PydanticSerializer and RESULT_ID: Prefect's own result persistence
and caching in a results_flow store, across processes, sync and async."""

from __future__ import annotations

import asyncio
import base64
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from prefect import flow, task
from prefect.results import ResultStore
from prefect.serializers import Serializer
from pydantic import BaseModel, SecretStr, ValidationError

from results_flow import ResultsManager, register_model
from results_flow.errors import (
    ResultValidationError,
    StoreUnavailableError,
    UnknownModelError,
    UntrustedRecordError,
)
from results_flow.prefect import (
    RESULT_ID,
    SERIALIZER_TYPE,
    PydanticSerializer,
    ResultIdPolicy,
    ResultsStorage,
)
from tests.prefect.conftest import ROOT, CallLog, start_worker
from tests.prefect.tasks import Item, Score, plain_flow


class NeverRegistered(BaseModel):
    """A model no test registers, so its tag resolves to nothing."""

    id: str


def test_saved_block_is_loaded_in_a_new_process_and_hits_there(
    store_url: str, calls: CallLog, worker_env: dict[str, str]
) -> None:
    ResultsStorage(store_url=store_url).save("rf-tests", overwrite=True)
    assert plain_flow([1, 2]) == [10, 20]
    assert sorted(calls.lines()) == ["plain:1", "plain:2"]

    worker = start_worker(worker_env, "plain", "results-storage/rf-tests")
    out, err = worker.communicate(timeout=120)
    assert worker.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1]) == {
        "block": "ResultsStorage",
        "results": [10, 20, 30],
    }
    assert sorted(calls.lines()) == ["plain:1", "plain:2", "plain:3"]  # 1 and 2 were hits
    assert len(ResultsManager.from_url(store_url).list_ids("prefect")) == 3


def test_wrong_store_urls_fail_clearly_at_save_and_load_time(
    store_url: str, postgres_url: str
) -> None:
    with pytest.raises(ValidationError, match="unknown store URL scheme 'sqlte'"):
        ResultsStorage(store_url="sqlte:///results.db")
    with pytest.raises(ValidationError, match="memory:// store lives in one process"):
        ResultsStorage(store_url="memory://x")

    block = ResultsStorage(store_url=store_url)
    with pytest.raises(ValidationError, match="unknown store URL scheme 'nosuch'"):
        block.store_url = SecretStr("nosuch://x")
    block.__dict__["store_url"] = SecretStr("nosuch://x")  # as if edited in the UI
    block.save("rf-bad", overwrite=True)
    with pytest.raises(RuntimeError, match="'rf-bad'") as failed:
        ResultsStorage.load("rf-bad")
    assert "unknown store URL scheme 'nosuch'" in str(failed.value.__cause__)

    missing_db = postgres_url.rsplit("/", 1)[0] + "/rf_no_such_database"
    with pytest.raises(StoreUnavailableError, match="rf_no_such_database"):
        ResultsStorage(store_url=missing_db).check()


def test_block_paths_sync_and_async(store_url: str) -> None:
    block = ResultsStorage(store_url=store_url, prefix="pf/runs")
    record = json.dumps({"metadata": {"serializer": {"type": "json"}}, "result": "1"}).encode()
    assert block.write_path("k1", record, _sync=True) == "k1"
    assert block.read_path("k1", _sync=True) == record
    with pytest.raises(UntrustedRecordError, match="no serializer"):
        block.write_path("k3", b'{"x": 1}')  # a record must name its serializer
    with pytest.raises(UntrustedRecordError, match="not a JSON record"):
        asyncio.run(block.awrite_path("a/k2", b"\xff\x00 binary"))
    trusting = ResultsStorage(store_url=store_url, prefix="pf/runs", allow_pickle=True)
    asyncio.run(trusting.awrite_path("a/k2", b"\xff\x00 binary"))  # kept as base64
    assert asyncio.run(trusting.aread_path("a/k2")) == b"\xff\x00 binary"
    assert ResultsManager.from_url(store_url).list_ids() == ["pf/runs/a/k2", "pf/runs/k1"]
    with pytest.raises(FileNotFoundError, match="'nope'"):
        block.read_path("nope")


def test_pydantic_serializer_validates_on_load() -> None:
    serializer = Serializer(type=SERIALIZER_TYPE)
    assert isinstance(serializer, PydanticSerializer)
    blob = serializer.dumps(Score(item=1, value=2.0, pid=3))
    assert json.loads(blob)["namespace"] == "tests-prefect"
    assert serializer.loads(blob) == Score(item=1, value=2.0, pid=3)
    assert serializer.loads(serializer.dumps([1, "a", None])) == [1, "a", None]

    tampered = blob.replace(b"2.0", b'"two"')
    with pytest.raises(ResultValidationError, match="does not validate as Score"):
        serializer.loads(tampered)
    # A blob's recorded type is rebuilt from registered models and plain types only,
    # never by importing (issue 21: see test_trust.py).
    unregistered = serializer.dumps(NeverRegistered(id="x"))
    with pytest.raises(UnknownModelError, match="register_model"):
        serializer.loads(unregistered)
    elsewhere = serializer.dumps([NeverRegistered(id="x")])
    elsewhere = elsewhere.replace(__name__.encode(), b"no_such_module_rf")
    with pytest.raises(UnknownModelError, match="'no_such_module_rf.NeverRegistered'"):
        serializer.loads(elsewhere)
    assert "no_such_module_rf" not in sys.modules
    explicit = PydanticSerializer(model="tests.prefect.tasks.Score")
    assert explicit.loads(explicit.dumps(Score(item=1, value=2.0, pid=3))).pid == 3
    with pytest.raises(UnknownModelError, match="register_model"):
        PydanticSerializer(model="tests.prefect.tasks.Item").loads(explicit.dumps(Item(id="x")))


@register_model(namespace="tests-prefect-storage")
class Doubled(BaseModel):
    value: int


def test_result_id_policy_keys_prefect_cache_by_readable_ids(
    store_url: str, calls: CallLog
) -> None:
    ResultsStorage(store_url=store_url).save("rf-policy", overwrite=True)
    serializer = PydanticSerializer(model=f"{__name__}.Doubled")

    @task(
        cache_policy=RESULT_ID,
        result_storage="results-storage/rf-policy",
        result_serializer=serializer,
    )
    def double(x: int) -> Doubled:
        calls.path.open("a").write(f"double:{x}\n")
        return Doubled(value=2 * x)

    @task(
        cache_policy=ResultIdPolicy(id="halves/{x}"),
        result_storage="results-storage/rf-policy",
        result_serializer=serializer,
    )
    async def half(x: int) -> Doubled:
        calls.path.open("a").write(f"half:{x}\n")
        return Doubled(value=x // 2)

    @flow(name="policy-flow")
    async def run() -> list[object]:
        return [double(4), await half(8), double(4, return_state=True)]

    first = asyncio.run(run())
    assert first[:2] == [Doubled(value=8), Doubled(value=4)]
    assert first[2].name == "Cached"  # type: ignore[attr-defined]
    assert asyncio.run(run())[:2] == first[:2]
    assert sorted(calls.lines()) == ["double:4", "half:8"]
    ids = ResultsManager.from_url(store_url).list_ids("prefect")
    assert "prefect/halves/8" in ids
    assert any(i.startswith("prefect/policy-flow/double/") for i in ids)


def test_block_registers_from_the_cli_and_the_collection_entry_point(
    worker_env: dict[str, str],
) -> None:
    from prefect.plugins import load_prefect_collections

    assert "results_flow" in load_prefect_collections()
    done = subprocess.run(
        [sys.executable, "-m", "prefect", "block", "register", "-m", "results_flow.prefect"],
        env=worker_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Results Storage" in done.stdout


def test_cache_hits_in_another_process_return_the_types_of_a_computed_run(
    store_url: str, calls: CallLog, worker_env: dict[str, str]
) -> None:
    from tests.prefect import typed_tasks

    ResultsStorage(store_url=store_url).save("rf-typed", overwrite=True)
    computed = typed_tasks.typed_flow()
    assert all(
        typed_tasks.same(r, e) for r, e in zip(computed, typed_tasks.expected(), strict=True)
    )
    assert len(calls.lines()) == 6

    done = subprocess.run(
        [sys.executable, "-m", "tests.prefect.typed_tasks"],
        cwd=ROOT,
        env=worker_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["same"] == [True] * 6, report["types"]
    assert len(calls.lines()) == 6  # every call in the second process was a cache hit


class Planted:
    """A pickle payload that creates the file it names when unpickled."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


def cli(store_url: str, env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from results_flow.cli import main; main()",
            *args,
            "--store",
            store_url,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_a_planted_pickle_record_is_refused_and_its_payload_never_runs(
    store_url: str, calls: CallLog, worker_env: dict[str, str], tmp_path: Path
) -> None:
    """Regression: a record naming the pickle serializer ran its payload on a cache hit."""
    ResultsStorage(store_url=store_url).save("rf-trust", overwrite=True)

    @task(
        cache_policy=RESULT_ID,
        result_storage="results-storage/rf-trust",
        result_serializer=PydanticSerializer(),
    )
    def triple(x: int) -> Doubled:
        calls.path.open("a").write(f"triple:{x}\n")
        return Doubled(value=3 * x)

    @flow(name="trust-flow")
    def run() -> Doubled:
        return triple(5)

    assert run() == Doubled(value=15)
    (result_id,) = ResultsManager.from_url(store_url).list_ids("prefect")
    key = result_id.removeprefix("prefect/")

    # Plant: export, swap in a pickle record, import it over the real one.
    exported = tmp_path / "export.jsonl"
    cli(store_url, worker_env, "export", str(exported))
    line = json.loads(exported.read_text())  # a readable document (issue 22 item 6)
    marker = tmp_path / "payload-ran"
    prefect = line["metadata"]["prefect"]
    prefect["record"]["serializer"] = {"type": "pickle", "picklelib": "cloudpickle"}
    del prefect["wrapper"]  # the data is then the serializer's whole text
    line["data"] = base64.b64encode(pickle.dumps(Planted(str(marker)))).decode()
    planted = tmp_path / "planted.jsonl"
    planted.write_text(json.dumps(line) + "\n")
    cli(store_url, worker_env, "import", str(planted), "--on-conflict", "overwrite")

    block = ResultsStorage.load("rf-trust")
    with pytest.raises(UntrustedRecordError, match="'pickle'.*allow_pickle=True"):
        ResultStore(result_storage=block).read(key)
    assert not marker.exists()

    # The cache lookup takes the refusal for a miss: recompute, overwrite the record.
    assert run() == Doubled(value=15)
    assert calls.lines() == ["triple:5", "triple:5"]
    assert not marker.exists()
    assert "results_flow_pydantic" in block.read_path(key).decode()

    # The planted payload was live: a block that opts in runs it.
    cli(store_url, worker_env, "import", str(planted), "--on-conflict", "overwrite")
    trusting = ResultsStorage(store_url=store_url, allow_pickle=True)
    ResultStore(result_storage=trusting).read(key)
    assert marker.exists()


def test_untrusted_serializers_are_refused_on_write_and_read(store_url: str) -> None:
    block = ResultsStorage(store_url=store_url)
    pickled = json.dumps({"metadata": {"serializer": {"type": "pickle"}}, "result": "x"})
    with pytest.raises(UntrustedRecordError, match="'pickle'.*PydanticSerializer"):
        block.write_path("k", pickled.encode())
    assert ResultsManager.from_url(store_url).list_ids() == []
    for doc in [
        {"metadata": {"serializer": {"type": "json"}}, "serializer": {"type": "pickle"}},
        {"metadata": {"serializer": {"type": "json", "jsonlib": "jsonpickle"}}},
        {"metadata": {"serializer": {"type": "compressed", "serializer": {"type": "json"}}}},
        {"metadata": {"serializer": {"type": SERIALIZER_TYPE, "model": "rf_nowhere.M"}}},
    ]:
        ResultsStorage(store_url=store_url, allow_pickle=True).write_path(
            "k", json.dumps(doc).encode()
        )
        with pytest.raises(UntrustedRecordError):
            block.read_path("k")
    duplicated = b'{"metadata": {"serializer": {"type": "pickle"}, "serializer": {"type": "json"}}}'
    with pytest.raises(UntrustedRecordError):
        block.write_path("k", duplicated)
    trusted = json.dumps({"metadata": {"serializer": {"type": "json"}}, "result": "1"}).encode()
    assert block.read_path(block.write_path("k", trusted)) == trusted
