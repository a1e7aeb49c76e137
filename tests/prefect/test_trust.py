"""Planted Prefect records never run code (issue 21, items 1 and 2).

Each planted record carries a live payload: a pickle that creates a marker file when
unpickled, or the name of a throwaway module on ``sys.path`` that creates one when
imported. Every test reads the planted record directly (``read_path``, Prefect's
``ResultStore`` sync and async, ``PydanticSerializer.loads``) and through a real flow's
cache lookup, and checks that the payload never ran and the module was never imported.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import importlib
import json
import pickle
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prefect import flow, task
from prefect.results import ResultStore
from prefect.serializers import JSONSerializer
from pydantic import BaseModel

from results_flow import ResultsManager, SetBehavior, register_model
from results_flow.blobs import PrefectResultBlob
from results_flow.errors import CorruptRecordError, UnknownModelError, UntrustedRecordError
from results_flow.prefect import RESULT_ID, SERIALIZER_TYPE, PydanticSerializer, ResultsStorage
from tests.prefect.conftest import CallLog
from tests.prefect.tasks import Item, Score


@register_model(namespace="tests-prefect-trust")
class Tripled(BaseModel):
    value: int


class Unpickled:
    """A pickle payload that creates the file it names when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


def pickled(marker: Path) -> str:
    """What Prefect's PickleSerializer writes for the payload: base64 of the pickle."""
    return base64.b64encode(pickle.dumps(Unpickled(marker))).decode()


@dataclass
class Trap:
    """A throwaway module on ``sys.path`` that creates ``marker`` when imported."""

    name: str
    marker: Path

    def sprung(self) -> bool:
        return self.name in sys.modules or self.marker.exists()


def make_trap(folder: Path, monkeypatch: pytest.MonkeyPatch, package: bool = False) -> Trap:
    """A trap module ``rf_trap_<hex>``, or with ``package`` a package of that name that
    is imported here (harmless) and whose submodule ``evil`` is the trap."""
    name = f"rf_trap_{uuid.uuid4().hex[:12]}"
    marker = folder / f"{name}-imported"
    body = f"open({str(marker)!r}, 'w').close()\n"
    if package:
        (folder / name).mkdir()
        (folder / name / "__init__.py").write_text("")
        (folder / name / "evil.py").write_text(body)
    else:
        (folder / f"{name}.py").write_text(body)
    monkeypatch.syspath_prepend(str(folder))
    if package:
        importlib.import_module(name)
        return Trap(f"{name}.evil", marker)
    return Trap(name, marker)


@pytest.fixture
def trap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Trap:
    return make_trap(tmp_path, monkeypatch)


@pytest.fixture
def submodule_trap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Trap:
    return make_trap(tmp_path, monkeypatch, package=True)


def plant(store_url: str, result_id: str, content: bytes) -> None:
    """Write ``content`` as the Prefect record under ``result_id``, as an attacker with
    write access to the store would (no block, no check)."""
    manager = ResultsManager.from_url(store_url)
    manager.set(result_id, PrefectResultBlob.of(content), SetBehavior.OVERWRITE)


def stored_record(store_url: str, result_id: str) -> dict[str, Any]:
    """The Prefect record the block keeps under ``result_id``, as Prefect reads it."""
    block = ResultsStorage(store_url=store_url, allow_pickle=True)
    doc: dict[str, Any] = json.loads(block.read_path(result_id.removeprefix("prefect/")))
    return doc


def assert_refused_everywhere(store_url: str, key: str, error: type[Exception]) -> None:
    """The record under ``key`` is refused by the block and by Prefect, sync and async."""
    block = ResultsStorage(store_url=store_url)
    store = ResultStore(result_storage=block)
    if error is UntrustedRecordError:
        with pytest.raises(UntrustedRecordError, match=f"prefect/{key}"):
            block.read_path(key)
    with pytest.raises(error):
        store.read(key)
    with pytest.raises(error):
        asyncio.run(store.aread(key))
    assert not store.exists(key)


# Item 1: a record that names no serializer (Prefect would unpickle it).
NO_SERIALIZER: dict[str, Callable[[str], object]] = {
    "empty metadata": lambda payload: {"metadata": {}, "result": payload},
    "no metadata": lambda payload: {"result": payload},
    "metadata without serializer": lambda payload: {
        "metadata": {"prefect_version": "3"},
        "result": payload,
    },
    "old layout": lambda payload: {"data": payload},
    "bare JSON string": lambda payload: payload,  # Prefect's fallback serializer loads it
    "JSON list": lambda payload: [payload],
}


@pytest.mark.parametrize("shape", list(NO_SERIALIZER))
def test_a_record_naming_no_serializer_is_refused_and_never_unpickled(
    store_url: str, tmp_path: Path, shape: str
) -> None:
    marker = tmp_path / "payload-ran"
    planted = NO_SERIALIZER[shape](pickled(marker))
    plant(store_url, "prefect/k", json.dumps(planted).encode())
    assert_refused_everywhere(store_url, "k", UntrustedRecordError)
    assert not marker.exists()
    # The payload is live: Prefect's own default loads it when nothing stands between
    # (since Prefect 3.9 its fallback no longer reaches a record without metadata or of
    # the old layout; such a payload is still live for any reader that unpickles it).
    if shape in ("JSON list", "no metadata", "old layout"):
        pickle.loads(base64.b64decode(pickled(marker)))
    else:
        trusting = ResultsStorage(store_url=store_url, allow_pickle=True)
        ResultStore(result_storage=trusting).read("k")
    assert marker.exists()


def test_a_record_naming_no_serializer_is_never_unpickled_on_a_cache_hit(
    store_url: str, calls: CallLog, tmp_path: Path
) -> None:
    ResultsStorage(store_url=store_url).save("rf-trust-none", overwrite=True)

    @task(
        cache_policy=RESULT_ID,
        result_storage="results-storage/rf-trust-none",
        result_serializer=PydanticSerializer(),
    )
    def triple(x: int) -> Tripled:
        calls.path.open("a").write(f"triple:{x}\n")
        return Tripled(value=3 * x)

    @flow(name="trust-none-flow")
    def run() -> Tripled:
        return triple(5)

    assert run() == Tripled(value=15)
    (result_id,) = ResultsManager.from_url(store_url).list_ids("prefect")
    marker = tmp_path / "payload-ran"
    plant(store_url, result_id, json.dumps({"metadata": {}, "result": pickled(marker)}).encode())

    assert run() == Tripled(value=15)  # the planted record is a miss: computed again
    assert calls.lines() == ["triple:5", "triple:5"]
    assert not marker.exists()
    assert stored_record(store_url, result_id)["metadata"]["serializer"]["type"] == (
        SERIALIZER_TYPE
    )


# Item 2a: a PydanticSerializer blob whose recorded type names an arbitrary class.
def hostile_blobs(module: str) -> dict[str, bytes]:
    """Blobs whose type tree names Prefect's PickleSerializer, whose own validator
    imports the module its ``picklelib`` names."""
    tree = {"t": "prefect.serializers:PickleSerializer"}
    nested = {"t": "list", "args": [tree]}
    return {
        "plain value": {"json": {"picklelib": module}, "type": tree},
        "in a list": {"json": [{"picklelib": module}], "type": nested},
        "model blob": {
            "model_type": "PickleSerializer",
            "namespace": "default",
            "data": {"picklelib": module},
            "type": tree,
        },
    }


def test_a_blob_naming_an_arbitrary_class_imports_nothing(store_url: str, trap: Trap) -> None:
    for name, blob in hostile_blobs(trap.name).items():
        content = json.dumps(blob).encode()
        with pytest.raises(UnknownModelError, match="PickleSerializer"):
            PydanticSerializer().loads(content)
        assert not trap.sprung(), name
        record = {"metadata": {"serializer": {"type": SERIALIZER_TYPE}}, "result": content.decode()}
        plant(store_url, "prefect/k", json.dumps(record).encode())
        assert_refused_everywhere(store_url, "k", UnknownModelError)
        assert not trap.sprung(), name


def test_a_blob_naming_an_arbitrary_class_imports_nothing_on_a_cache_hit(
    store_url: str, calls: CallLog, trap: Trap
) -> None:
    ResultsStorage(store_url=store_url).save("rf-trust-tree", overwrite=True)

    @task(
        cache_policy=RESULT_ID,
        result_storage="results-storage/rf-trust-tree",
        result_serializer=PydanticSerializer(),
    )
    def pair(x):  # type: ignore[no-untyped-def]  # unannotated: the blob's type is used
        calls.path.open("a").write(f"pair:{x}\n")
        return [x, x + 1]

    @flow(name="trust-tree-flow")
    def run() -> object:
        return pair(5)

    assert run() == [5, 6]
    (result_id,) = ResultsManager.from_url(store_url).list_ids("prefect")
    record = stored_record(store_url, result_id)
    record["result"] = json.dumps(hostile_blobs(trap.name)["in a list"])
    plant(store_url, result_id, json.dumps(record).encode())

    assert run() == [5, 6]
    assert calls.lines() == ["pair:5", "pair:5"]
    assert not trap.sprung()


def test_recorded_types_are_rebuilt_only_from_registered_models_and_plain_types() -> None:
    serializer = PydanticSerializer()
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    value = {"a": [Score(item=1, value=2.0, pid=3)], "b": [when]}
    assert serializer.loads(serializer.dumps(value)) == value
    # An unregistered model is not rebuilt from its name, however imported it is.
    with pytest.raises(UnknownModelError, match="Item"):
        serializer.loads(serializer.dumps([Item(id="x")]))
    # A planted type nested too deeply is a named error, not a RecursionError.
    for depth in (200, 5000):
        tree = '{"t": "list", "args": [' * depth + '{"t": "builtins:int"}' + "]}" * depth
        with pytest.raises(CorruptRecordError):
            serializer.loads(f'{{"json": [], "type": {tree}}}'.encode())


# Item 2b: PydanticSerializer(model=<imported package>.<submodule>).
def test_a_model_naming_a_submodule_imports_nothing(store_url: str, submodule_trap: Trap) -> None:
    trap = submodule_trap
    blob = PydanticSerializer().dumps(Tripled(value=1))
    with pytest.raises(UnknownModelError, match=trap.name):
        PydanticSerializer(model=trap.name).loads(blob)
    assert not trap.sprung()
    config = {"type": SERIALIZER_TYPE, "model": trap.name}
    record = {"metadata": {"serializer": config}, "result": blob.decode()}
    plant(store_url, "prefect/k", json.dumps(record).encode())
    assert_refused_everywhere(store_url, "k", UntrustedRecordError)
    assert not trap.sprung()
    # A model= that names a registered model is read.
    named = PydanticSerializer(model=f"{__name__}.Tripled")
    assert named.loads(blob) == Tripled(value=1)
    with pytest.raises(UnknownModelError, match="register_model"):
        PydanticSerializer(model="tests.prefect.tasks.Item").loads(blob)


def test_a_model_naming_a_submodule_imports_nothing_on_a_cache_hit(
    store_url: str, calls: CallLog, submodule_trap: Trap
) -> None:
    ResultsStorage(store_url=store_url).save("rf-trust-model", overwrite=True)

    @task(
        cache_policy=RESULT_ID,
        result_storage="results-storage/rf-trust-model",
        result_serializer=PydanticSerializer(model=f"{__name__}.Tripled"),
    )
    def triple(x: int) -> Tripled:
        calls.path.open("a").write(f"triple:{x}\n")
        return Tripled(value=3 * x)

    @flow(name="trust-model-flow")
    def run() -> Tripled:
        return triple(2)

    assert run() == Tripled(value=6)
    assert run() == Tripled(value=6)
    assert calls.lines() == ["triple:2"]  # a registered model= is a hit
    (result_id,) = ResultsManager.from_url(store_url).list_ids("prefect")
    record = stored_record(store_url, result_id)
    record["metadata"]["serializer"]["model"] = submodule_trap.name
    plant(store_url, result_id, json.dumps(record).encode())

    assert run() == Tripled(value=6)
    assert calls.lines() == ["triple:2", "triple:2"]
    assert not submodule_trap.sprung()


# The second serializer: Prefect's 'json' imports what '__class__' or '__exc_type__' names.
def hostile_json(module: str) -> dict[str, object]:
    return {
        "class in the module": {"__class__": f"{module}.Thing", "data": 1},
        "class whose validator imports": {
            "__class__": "prefect.serializers.PickleSerializer",
            "data": {"picklelib": module},
        },
        "nested": {"ok": [1, {"__class__": f"{module}.Thing", "data": 1}]},
        "exception": {"__exc_type__": f"{module}.Boom", "message": "x"},
    }


def test_a_json_record_naming_an_arbitrary_class_imports_nothing(
    store_url: str, trap: Trap
) -> None:
    for name, result in hostile_json(trap.name).items():
        record = {"metadata": {"serializer": {"type": "json"}}, "result": json.dumps(result)}
        plant(store_url, "prefect/k", json.dumps(record).encode())
        assert_refused_everywhere(store_url, "k", UntrustedRecordError)
        assert not trap.sprung(), name
    # What Prefect's json writes for registered models, plain types and builtin
    # exceptions is still read.
    when = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    value = [Score(item=1, value=2.0, pid=3), when, uuid.UUID(int=7), ValueError("bad")]
    result = JSONSerializer().dumps(value).decode()
    record = {"metadata": {"serializer": {"type": "json"}}, "result": result}
    plant(store_url, "prefect/k", json.dumps(record).encode())
    read = ResultStore(result_storage=ResultsStorage(store_url=store_url)).read("k").result
    assert read[:3] == value[:3]
    assert isinstance(read[3], ValueError)


def test_a_json_record_naming_an_arbitrary_class_imports_nothing_on_a_cache_hit(
    store_url: str, calls: CallLog, trap: Trap
) -> None:
    ResultsStorage(store_url=store_url).save("rf-trust-json", overwrite=True)

    @task(
        cache_policy=RESULT_ID,
        result_storage="results-storage/rf-trust-json",
        result_serializer="json",
    )
    def tenfold(x: int) -> int:
        calls.path.open("a").write(f"tenfold:{x}\n")
        return 10 * x

    @flow(name="trust-json-flow")
    def run() -> int:
        return tenfold(3)

    assert run() == 30
    (result_id,) = ResultsManager.from_url(store_url).list_ids("prefect")
    record = stored_record(store_url, result_id)
    record["result"] = json.dumps(hostile_json(trap.name)["class whose validator imports"])
    plant(store_url, result_id, json.dumps(record).encode())

    assert run() == 30
    assert calls.lines() == ["tenfold:3", "tenfold:3"]
    assert not trap.sprung()
