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
from typing import Any, NamedTuple, Protocol

from pydantic_core import from_json

from results_flow.errors import CorruptRecordError

FORMAT = "results_flow/1"

JsonDict = dict[str, Any]


def load_json(text: str | bytes) -> Any:
    """The JSON value of ``text``, parsed without Python recursion: every reader of a
    stored or given document uses it, so a hostile one is a ``ValueError`` (which the
    caller names), never a ``RecursionError`` or a stack overflow.

    pydantic-core's parser refuses nesting deeper than Pydantic itself reads (about 200
    levels; ``model_validate_json`` refuses the same, so no model's data is deeper) and
    integers over 4,300 digits, as ``int()`` does. NaN and Infinity pass, as in
    ``json.loads``.

    Raises:
        ValueError: not JSON (or not UTF-8), nested too deep, or a number out of range.
    """
    if isinstance(text, bytes | bytearray):  # as json.loads: UTF-8, -16 or -32, a BOM allowed
        text = text.decode(json.detect_encoding(text), "surrogatepass")
    try:
        return from_json(text)
    except RecursionError as exc:  # pydantic-core stops first; kept for other builds
        raise ValueError(f"JSON nested too deep: {exc}") from exc


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class StoredValue(Protocol):
    """What validating a stored result reads: its type tag, namespace and JSON data
    (a ``Record`` is one; ``StoredData`` is the narrow read of ``get``)."""

    @property
    def model_type(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def data(self) -> str: ...


class StoredData(NamedTuple):
    """A record's type tag, namespace and JSON data, without its times and metadata:
    what ``ResultsBackend.read_data`` gives ``get`` (a SQL row of three columns)."""

    model_type: str
    namespace: str
    data: str


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
        """Equal type, namespace and data (compared as JSON values, not text); data that
        does not parse (a damaged record) equals only the same text."""
        if self.model_type != other.model_type or self.namespace != other.namespace:
            return False
        if self.data == other.data:
            return True
        try:
            return _same_json(load_json(self.data), load_json(other.data))
        except ValueError:
            return False

    def same_version(self, other: Record) -> bool:
        """The same stored version: equal content, metadata and update time (every write
        sets a new update time), so nothing was written in between."""
        return (
            self.updated_at == other.updated_at
            and self.metadata == other.metadata
            and self.same_content(other)
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

        The data is kept as the text it was stored as, checked to be JSON but never
        dumped back (that was a third of a file-store ``get``); a document in another
        layout takes the slower path of one full parse.

        Raises:
            CorruptRecordError: not JSON, or not a results_flow record; names ``where``.
        """
        split = _split_document(text)
        if split is not None:
            return cls._from_fields(split[0], split[1], where)
        try:
            doc = load_json(text)
        except ValueError as exc:
            raise CorruptRecordError(f"{where} is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict):
            doc = {}  # no tag: refused as such
        data = doc.get("data", ...)
        dumped = (
            None if data is ... else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        )
        return cls._from_fields(doc, dumped, where)

    @classmethod
    def _from_fields(cls, header: JsonDict, data: str | None, where: str) -> Record:
        """The record of a parsed envelope and its data text (None: the data is missing)."""
        if header.get("format") != FORMAT:
            raise CorruptRecordError(f"{where} is not a results_flow record (no {FORMAT!r} tag)")
        try:
            if data is None:
                raise KeyError("data")
            return cls(
                model_type=str(header["model_type"]),
                namespace=str(header["namespace"]),
                data=data,
                created_at=parse_time(header["created_at"]),
                updated_at=parse_time(header["updated_at"]),
                metadata=dict(header.get("metadata") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptRecordError(f"{where} is a damaged results_flow record: {exc!r}") from exc


#: What ``to_document`` writes between the envelope and the data, which comes last.
_DATA_KEY = ', "data": '
_BLANK = " \t\n\r"
#: Places of that key tried before parsing the whole document instead (data from
#: PostgreSQL's jsonb may hold keys named "data" written the same way).
_DATA_KEY_TRIES = 3


def _split_document(text: str | bytes) -> tuple[JsonDict, str] | None:
    """The envelope and the data text of a document in ``to_document``'s layout, or
    None for any other document (the caller parses that one whole).

    The envelope up to a ``, "data": `` must parse as an object when closed by one
    brace: the key then stands at the document's top level (a key inside the data or
    the metadata leaves the prefix with an unclosed bracket or string). The rest up to
    the closing brace must be JSON, so it is the data and nothing follows it.
    """
    try:
        doc = text if isinstance(text, str) else text.decode("utf-8")
    except UnicodeDecodeError:
        return None
    body = doc.rstrip(_BLANK)
    if not body.endswith("}"):
        return None
    cut = len(body)
    for _ in range(_DATA_KEY_TRIES):  # from the end: a later one may sit inside the data
        cut = body.rfind(_DATA_KEY, 0, cut)
        if cut < 0:
            return None
        try:
            header = from_json(body[:cut] + "}")  # a third of json.loads's time
        except ValueError:
            continue
        data = body[cut + len(_DATA_KEY) : -1]
        try:
            from_json(data)
        except ValueError:
            return None
        if not isinstance(header, dict) or "data" in header:
            return None
        return header, data
    return None


def _same_json(a: object, b: object) -> bool:
    """Equal JSON values, types included: Python has ``True == 1 == 1.0``, JSON does not."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same_json, a, b))
    return a == b


def parse_time(value: str | datetime) -> datetime:
    """An ISO time (or datetime) as an aware UTC datetime; naive values are taken as UTC."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if moment.tzinfo is UTC:  # what every store writes; skip the conversion on the read path
        return moment
    if moment.tzinfo is not None:
        return moment.astimezone(UTC)
    if isinstance(value, str):
        # SQLite's naive text times (two per row): parsing again with an offset cost a
        # quarter of replace(tzinfo=). A date alone may take the offset and drop it.
        try:
            again = datetime.fromisoformat(value + "+00:00")
        except ValueError:
            again = moment
        if again.tzinfo is UTC:
            return again
    return moment.replace(tzinfo=UTC)
