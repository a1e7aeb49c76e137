"""Prefect result records as readable results_flow documents, and back.

Prefect hands ``ResultsStorage`` the bytes of a ``ResultRecord``: ``{"metadata": {...},
"result": "<the serializer's text>"}``, the value's JSON escaped inside a JSON string.
The block keeps a results_flow record instead, which ``ResultsManager.get`` and
``results-flow show`` read like any other result:

* the type tag and namespace of the value (``Score`` in its namespace, ``list[Score]``,
  ``int``; ``Any`` for a value of Prefect's ``json`` serializer or an exception);
* the data: the value's JSON;
* the metadata: the flow and task run that wrote it (``flow_name``, ``flow_run_id``,
  ``task_name``, ``task_run_id``, run names) and, under ``prefect``, what Prefect needs
  to rebuild its record: ``record`` (Prefect's record metadata as it wrote it: storage
  key, expiration, serializer, Prefect version, block ID) and ``wrapper`` (the
  ``results_flow_pydantic`` serializer's text around the value, without the value:
  the key that holds it, its model tag, its type tree).

``prefect_bytes`` rebuilds a record Prefect deserializes to the same value; the trust
gate (``results_flow.prefect.trust``) then checks those bytes like any other.

A record of Prefect's default ``pickle`` serializer (a task or flow that sets no
serializer, under a flow-level ``result_storage=``) is turned into a
``results_flow_pydantic`` one when written: the bytes Prefect has just pickled in this
process are loaded once here and written as JSON, as if the task had set
``result_serializer=PydanticSerializer()``. A value with no JSON form is refused with
``UntrustedRecordError``. Nothing read from a store is ever unpickled here.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from prefect.context import FlowRunContext, TaskRunContext

# Where Prefect's documentation imports it from, without listing it in an __all__.
from prefect.results import ResultRecordMetadata  # type: ignore[attr-defined]
from prefect.serializers import PickleSerializer

from results_flow.errors import (
    CorruptRecordError,
    ResultValidationError,
    UnknownModelError,
    UntrustedRecordError,
)
from results_flow.prefect.serializer import PydanticSerializer
from results_flow.prefect.trust import SERIALIZER_TYPE
from results_flow.prefect.value_types import annotation_of_tree
from results_flow.records import JsonDict, Record, load_json, utc_now
from results_flow.registry import DEFAULT_NAMESPACE, namespace_of
from results_flow.result_types import models_in, type_tag

#: The metadata key under which a document keeps what Prefect needs to rebuild its record.
PREFECT_KEY = "prefect"
#: The tag of a value whose type is not recorded (Prefect's ``json`` serializer).
ANY_TAG = "Any"
#: The keys under which a ``results_flow_pydantic`` text keeps its value.
_VALUE_KEYS = ("data", "json", "exception")
#: The pickle libraries of Prefect's default serializer, the only pickles turned to JSON.
_DEFAULT_PICKLE_LIBS = ("cloudpickle", "pickle")


def readable(content: bytes) -> Record | None:
    """The document that keeps a trusted Prefect record (one ``record_refusal`` passed),
    or None when its value has no strict JSON form (NaN, or text that is no JSON): the
    record is then kept as it is."""
    doc = json.loads(content)
    metadata, text = doc["metadata"], doc["result"]
    wrapper: JsonDict | None = None
    try:
        inner = load_json(text)
    except ValueError:
        return None
    if metadata["serializer"]["type"] == SERIALIZER_TYPE:
        key = (
            next((k for k in _VALUE_KEYS if k in inner), None) if isinstance(inner, dict) else None
        )
        if key is None:
            return None
        value = inner.pop(key)
        wrapper = {"key": key, "fields": inner}
        tag, namespace = _tag_of(key, inner)
        data = _strict_json(value)
    else:  # Prefect's json: the text is the value's JSON
        tag, namespace = ANY_TAG, DEFAULT_NAMESPACE
        data = _strict_json(inner)
    if data is None:
        return None
    prefect: JsonDict = {"record": metadata}
    if wrapper is not None:
        prefect["wrapper"] = wrapper
    now = utc_now()
    return Record(
        model_type=tag,
        namespace=namespace,
        data=data,
        created_at=now,
        updated_at=now,
        metadata={**run_metadata(), PREFECT_KEY: prefect},
    )


def is_document(record: Record) -> bool:
    """Whether ``record`` is a document ``readable`` wrote."""
    prefect = record.metadata.get(PREFECT_KEY)
    return isinstance(prefect, dict) and isinstance(prefect.get("record"), dict)


def prefect_bytes(record: Record, where: str) -> bytes:
    """The Prefect record a document keeps, as the bytes Prefect deserializes.

    Raises:
        CorruptRecordError: the document's Prefect metadata or data is damaged; names
            ``where``.
    """
    prefect = record.metadata[PREFECT_KEY]
    wrapper = prefect.get("wrapper")
    if wrapper is None:
        text = record.data
    else:
        try:
            fields, key = dict(wrapper["fields"]), str(wrapper["key"])
            fields[key] = load_json(record.data)
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptRecordError(
                f"{where}: a damaged Prefect result document ({exc!r})"
            ) from exc
        text = json.dumps(fields, ensure_ascii=False)
    return json.dumps({"metadata": prefect["record"], "result": text}, ensure_ascii=False).encode()


def as_whole_record(content: bytes, storage_key: str, block_id: object) -> bytes | None:
    """A serializer's bare text wrapped in the whole record it belongs to, or None when
    ``content`` is a whole record already, or is written outside a run.

    Prefect writes a flow's own result bare (its record metadata goes with the flow
    run's state) and reads it back with that metadata's serializer unless the bytes are a
    whole record. The serializer is that of the run writing now, the one that made
    ``content``; a whole record naming it lets the trust gate and ``readable`` treat the
    flow's result like a task's.
    """
    try:
        doc = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        doc = None
    if isinstance(doc, dict) and set(doc) == {"metadata", "result"}:
        return None
    context = TaskRunContext.get() or FlowRunContext.get()
    if context is None or context.result_store is None:
        return None
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return None
    metadata = ResultRecordMetadata(
        storage_key=storage_key,
        serializer=context.result_store.serializer,
        storage_block_id=block_id if isinstance(block_id, UUID) else None,
    )
    record = {"metadata": json.loads(metadata.dump_bytes()), "result": text}
    return json.dumps(record, ensure_ascii=False).encode()


def pickled_as_json(content: bytes, path: str) -> bytes | None:
    """The ``results_flow_pydantic`` record of a record Prefect has just written with its
    default pickle serializer in this process, or None when it is no such record (or it
    is written outside a flow or task run, where it may come from anywhere).

    Raises:
        UntrustedRecordError: the value has no JSON form; names its type.
    """
    try:
        doc = json.loads(content)
        serializer, text = doc["metadata"]["serializer"], doc["result"]
    except (ValueError, KeyError, TypeError):
        return None
    if not (
        isinstance(serializer, dict)
        and serializer.get("type") == "pickle"
        and serializer.get("picklelib", "cloudpickle") in _DEFAULT_PICKLE_LIBS
        and isinstance(text, str)
    ):
        return None
    if TaskRunContext.get() is None and FlowRunContext.get() is None:
        return None  # not Prefect persisting a result it has just made: never unpickled
    pickler = PickleSerializer(picklelib=serializer.get("picklelib", "cloudpickle"))
    try:
        value = pickler.loads(text.encode())
    except Exception:  # noqa: BLE001 - any failure to unpickle: the caller refuses the record
        return None
    try:
        result = PydanticSerializer().dumps(value)
    except ResultValidationError as exc:
        raise UntrustedRecordError(
            f"Prefect pickled the result for key {path!r}, of type {type(value).__name__}, which "
            f"has no JSON form, and this ResultsStorage keeps no pickles ({exc}): return a "
            "model or JSON-shaped value, or set allow_pickle=True on the block to keep it "
            "pickled"
        ) from exc
    doc["metadata"]["serializer"] = {"type": SERIALIZER_TYPE, "model": None}
    doc["result"] = result.decode("utf-8")
    return json.dumps(doc, ensure_ascii=False).encode()


def run_metadata() -> JsonDict:
    """The flow and task run writing now: names and IDs (those known here)."""
    meta: JsonDict = {}
    flow_context = FlowRunContext.get()
    if flow_context is not None and flow_context.flow_run is not None:
        meta["flow_name"] = flow_context.flow.name if flow_context.flow else None
        meta["flow_run_id"] = str(flow_context.flow_run.id)
        meta["flow_run_name"] = flow_context.flow_run.name
    task_context = TaskRunContext.get()
    if task_context is not None:
        run = task_context.task_run
        if run.flow_run_id is not None:
            meta.setdefault("flow_run_id", str(run.flow_run_id))
        meta["task_name"] = task_context.task.name
        meta["task_run_id"] = str(run.id)
        meta["task_run_name"] = run.name
    return meta


def _tag_of(key: str, fields: JsonDict) -> tuple[str, str]:
    """The type tag and namespace of a ``results_flow_pydantic`` value."""
    if key == "data":  # a model: its registry tag
        return str(fields.get("model_type")), str(fields.get("namespace"))
    if key == "json" and "type" in fields:
        try:
            annotation = annotation_of_tree(fields["type"])
        except (UnknownModelError, CorruptRecordError):
            return ANY_TAG, DEFAULT_NAMESPACE
        models = models_in(annotation)
        return type_tag(annotation), namespace_of(models[0]) if models else DEFAULT_NAMESPACE
    return ANY_TAG, DEFAULT_NAMESPACE


def _strict_json(value: Any) -> str | None:
    """``value`` as compact JSON text, or None when only non-standard JSON (NaN,
    Infinity) can hold it."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return None
