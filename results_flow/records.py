"""The stored envelope: what every backend keeps for one ID.

A ``Record`` holds the model's type tag and namespace, the model's data as JSON text
in Pydantic's JSON mode, its created/updated times and free metadata (the Prefect
layer fills in flow, task, run IDs and parameters). The data stays JSON text so SQL
backends hand it straight to ``model_validate_json``; nothing is ever pickled, so
reading a record never runs code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from results_flow.errors import CorruptRecordError

FORMAT = "results_flow/1"

JsonDict = dict[str, Any]


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Record:
    """One stored result: type tag, namespace, JSON data, times and metadata."""

    model_type: str
    namespace: str
    data: str
    created_at: datetime = field(default_factory=utc_now)
    updated_at: datetime = field(default_factory=utc_now)
    metadata: JsonDict = field(default_factory=dict)

    def same_content(self, other: Record) -> bool:
        """Equal type, namespace and data (compared as JSON values, not text)."""
        return (
            self.model_type == other.model_type
            and self.namespace == other.namespace
            and (self.data == other.data or json.loads(self.data) == json.loads(other.data))
        )

    def replacing(self, previous: Record) -> Record:
        """This record as an overwrite of ``previous``: it keeps the first creation time."""
        return replace(self, created_at=previous.created_at)

    def to_document(self) -> str:
        """The self-describing JSON document a file or an export line holds."""
        header = json.dumps(
            {
                "format": FORMAT,
                "model_type": self.model_type,
                "namespace": self.namespace,
                "created_at": self.created_at.isoformat(),
                "updated_at": self.updated_at.isoformat(),
                "metadata": self.metadata,
            },
            ensure_ascii=False,
        )
        return f'{header[:-1]}, "data": {self.data}}}'

    @classmethod
    def from_document(cls, text: str | bytes, where: str) -> Record:
        """Parse a document written by ``to_document``.

        Raises:
            CorruptRecordError: not JSON, or not a results_flow record; names ``where``.
        """
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise CorruptRecordError(f"{where} is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise CorruptRecordError(f"{where} is not a results_flow record (no {FORMAT!r} tag)")
        try:
            return cls(
                model_type=str(doc["model_type"]),
                namespace=str(doc["namespace"]),
                data=json.dumps(doc["data"], ensure_ascii=False, separators=(",", ":")),
                created_at=parse_time(doc["created_at"]),
                updated_at=parse_time(doc["updated_at"]),
                metadata=dict(doc.get("metadata") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptRecordError(f"{where} is a damaged results_flow record: {exc!r}") from exc


def parse_time(value: str | datetime) -> datetime:
    """An ISO time (or datetime) as an aware UTC datetime; naive values are taken as UTC."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if moment.tzinfo is UTC:  # what every store writes; skip the conversion on the read path
        return moment
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
