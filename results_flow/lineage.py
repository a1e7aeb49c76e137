"""Lineage: which stored results a result was computed from.

``results_map`` keeps, in the metadata of each result it computes from upstream results
(futures of results_tasks, or the ``ResumeResults`` of another ``results_map``), the
IDs of those inputs by parameter: ``metadata["inputs"] == {"score": ["f/score/ab12"]}``.
``lineage`` walks them up, reading one record per node; ``results-flow show --lineage``
prints the tree.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from results_flow.errors import CorruptRecordError, ResultNotFoundError
from results_flow.ids import normalize_id
from results_flow.manager import ResultsManager

#: The metadata key of a record's inputs: parameter name -> the result IDs it came from.
INPUTS_KEY = "inputs"


class LineageNode(BaseModel):
    """One result in a lineage tree and the results it was computed from."""

    id: str
    parameter: str | None = None
    """The parameter of the result below it that this one fed (None at the root)."""
    task_name: str | None = None
    updated_at: datetime | None = None
    missing: bool = False
    """No longer stored (or damaged): its own inputs are unknown."""
    cycle: bool = False
    """Already among its own descendants (never written by results_flow; not walked)."""
    inputs: list[LineageNode] = []


def inputs_of(metadata: Mapping[str, Any]) -> dict[str, list[str]]:
    """The input IDs a record's metadata names, by parameter (empty when none)."""
    inputs = metadata.get(INPUTS_KEY)
    if not isinstance(inputs, dict):
        return {}
    return {
        str(name): [rid for rid in ids if isinstance(rid, str)]
        for name, ids in inputs.items()
        if isinstance(ids, list)
    }


def lineage(store: ResultsManager, result_id: str) -> LineageNode:
    """The lineage tree of ``result_id``: it, its inputs, theirs, and so on.

    Raises:
        InvalidResultIdError: the ID breaks the grammar.
        ResultNotFoundError: nothing is stored under ``result_id``.
        CorruptRecordError: its record cannot be decoded.
    """
    rid = normalize_id(result_id)
    store.record(rid)  # the root must exist; its inputs may be gone
    return _node(store, rid, None, frozenset())


def _node(
    store: ResultsManager, rid: str, parameter: str | None, below: frozenset[str]
) -> LineageNode:
    if rid in below:
        return LineageNode(id=rid, parameter=parameter, cycle=True)
    try:
        record = store.record(rid)
    except (ResultNotFoundError, CorruptRecordError):
        return LineageNode(id=rid, parameter=parameter, missing=True)
    task_name = record.metadata.get("task_name")
    return LineageNode(
        id=rid,
        parameter=parameter,
        task_name=task_name if isinstance(task_name, str) else None,
        updated_at=record.updated_at,
        inputs=[
            _node(store, upstream, name, below | {rid})
            for name, ids in inputs_of(record.metadata).items()
            for upstream in ids
        ],
    )
