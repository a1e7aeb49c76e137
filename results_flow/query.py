"""What a find or a clean-up asks for: records by what made them.

Every record written by a results task keeps ``flow_name``, ``task_name``,
``flow_run_id``, ``task_run_id``, ``parameters`` and ``version`` in its metadata. A
``RecordQuery`` selects records by those (and by ID prefix and age); ``matches`` is
the one rule of what it selects, which every backend applies (a SQL store narrows the
rows first through indexed columns, ``index_keys``, then applies the rule too where
the columns cannot say it exactly).

A value compares as text: a string as itself, any other JSON value as its compact
JSON (``3``, ``true``, ``[1,2]``), so ``--param n=3`` finds ``n=3`` stored as a number.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from results_flow.errors import MaintenanceError
from results_flow.records import Record, utc_now
from results_flow.settings import INDEX_KEY_MAX_LENGTH

#: The metadata keys a query selects on exactly, by the ``RecordQuery`` field that names
#: them; SQL stores keep each in an indexed column of the same name.
INDEXED_FIELDS = {
    "flow": "flow_name",
    "task": "task_name",
    "flow_run": "flow_run_id",
    "version": "version",
}


def as_text(value: Any) -> str | None:
    """A metadata value as the text a filter compares with: a string as itself, any
    other JSON value as compact JSON; None for a missing value (JSON null included)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        return None


def index_key(text: str | None) -> str | None:
    """The indexed form of a filter value: cut to ``INDEX_KEY_MAX_LENGTH`` characters,
    NUL left out (PostgreSQL text cannot hold it). Equal values have equal keys; equal
    keys only narrow, ``RecordQuery.matches`` decides."""
    if text is None:
        return None
    return text.replace("\x00", "")[:INDEX_KEY_MAX_LENGTH]


def index_keys(metadata: Mapping[str, Any]) -> dict[str, str | None]:
    """The indexed column values of a record with ``metadata`` (SQL stores)."""
    return {key: index_key(as_text(metadata.get(key))) for key in INDEXED_FIELDS.values()}


@dataclass(frozen=True)
class RecordQuery:
    """Records by ID prefix, by what made them, and by age; every given part must hold.

    ``prefix`` is a normalized ID (whole segments); ``params`` maps a parameter name to
    the text its value must have; ``updated_before`` keeps records last updated before it.
    """

    prefix: str | None = None
    flow: str | None = None
    task: str | None = None
    flow_run: str | None = None
    version: str | None = None
    params: tuple[tuple[str, str], ...] = field(default=())
    updated_before: datetime | None = None

    @property
    def exact_fields(self) -> dict[str, str]:
        """The metadata keys this query needs equal, with their texts."""
        wanted = {name: getattr(self, name) for name in INDEXED_FIELDS}
        return {INDEXED_FIELDS[name]: text for name, text in wanted.items() if text is not None}

    @property
    def selects_by_metadata(self) -> bool:
        """Whether it asks anything of the metadata (else prefix and age say it all)."""
        return bool(self.exact_fields or self.params)

    @property
    def needs_records(self) -> bool:
        """Whether indexed columns cannot answer it alone: it names parameters, or a
        value that its index key does not hold whole."""
        return bool(self.params) or any(
            index_key(text) != text for text in self.exact_fields.values()
        )

    def matches(self, record: Record) -> bool:
        """Whether ``record`` (stored under an ID already within ``prefix``) is selected."""
        if self.updated_before is not None and not record.updated_at < self.updated_before:
            return False
        meta = record.metadata
        for key, text in self.exact_fields.items():
            if as_text(meta.get(key)) != text:
                return False
        if self.params:
            given = meta.get("parameters")
            if not isinstance(given, dict):
                return False
            for name, text in self.params:
                if name not in given or as_text(given[name]) != text:
                    return False
        return True

    def describe(self) -> str:
        """The filters for people: ``flow=daily task=score n=3 updated before ...``."""
        parts = [f"under {self.prefix!r}"] if self.prefix is not None else []
        parts += [f"{name}={getattr(self, name)}" for name in INDEXED_FIELDS if getattr(self, name)]
        parts += [f"param {name}={text}" for name, text in self.params]
        if self.updated_before is not None:
            parts.append(f"last updated before {self.updated_before:%Y-%m-%d %H:%M:%S}")
        return ", ".join(parts) or "every result"


def parse_params(
    pairs: Mapping[str, Any] | Sequence[str] | None,
) -> tuple[tuple[str, str], ...]:
    """Parameters as ``(name, text)`` pairs, from a mapping (values turned to text by
    ``as_text``) or from ``name=value`` strings.

    Raises:
        MaintenanceError: a string without ``=`` or with an empty name.
    """
    if not pairs:
        return ()
    if isinstance(pairs, Mapping):
        items = [(str(name), as_text(value)) for name, value in pairs.items()]
        return tuple((name, "null" if text is None else text) for name, text in items)
    parsed = []
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name.strip():
            raise MaintenanceError(f"parameter filter {pair!r} is not NAME=VALUE (e.g. n=3)")
        parsed.append((name.strip(), text))
    return tuple(parsed)


def cutoff_of(older_than: timedelta, now: datetime | None = None) -> datetime:
    """The time before which a record is older than ``older_than``.

    Raises:
        MaintenanceError: ``older_than`` is negative, or reaches back before the year 1.
    """
    if older_than < timedelta(0):
        raise MaintenanceError(f"an age must be zero or more, got {human_age(older_than)}")
    try:
        return (now or utc_now()) - older_than
    except OverflowError as exc:
        raise MaintenanceError(
            f"age {human_age(older_than)} reaches back before the year 1; no record can be that old"
        ) from exc


def human_age(age: timedelta) -> str:
    """An age for people: ``30 days``, ``1 day 12 hours``, ``-5 days``, ``0 seconds``."""
    sign, total = ("-", -age) if age < timedelta(0) else ("", age)
    seconds = round(total.total_seconds())
    parts = []
    for name, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count:,} {name}{'' if count == 1 else 's'}")
    return sign + (" ".join(parts) or "0 seconds")
