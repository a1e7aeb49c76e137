"""Result IDs: one grammar, checked before any backend sees an ID.

An ID is ``a/b/c`` or the list ``["a", "b", "c"]``. Every segment is non-empty,
at most ``MAX_SEGMENT_BYTES`` bytes of UTF-8, does not start with ``.`` (so ``.``,
``..`` and hidden files are out), and holds no ``/``, ``\\``, NUL or other control
character. The whole ID is at most ``MAX_ID_BYTES`` bytes, which keeps it inside a
file name per segment and inside a PostgreSQL index entry.

The second half turns values into canonical JSON (``canonical_json``) and stable
hashes of it (``stable_key``): what the Prefect layer builds task result IDs from.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import math
import re
import textwrap
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from pathlib import PurePath
from typing import Any
from uuid import UUID

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError

from results_flow.errors import InvalidResultIdError, UnhashableParameterError

ResultId = str | Sequence[str]

#: ``\\``, the control characters (Unicode category Cc: C0, DEL and C1) and lone
#: surrogates (no UTF-8 form; an undecodable file name arrives holding them); with
#: ``/``, the characters no segment may hold.
_FORBIDDEN_CHARS = r"\\\x00-\x1f\x7f-\x9f\ud800-\udfff"
_FORBIDDEN = re.compile(f"[/{_FORBIDDEN_CHARS}]")

SEPARATOR = "/"
MAX_SEGMENT_BYTES = 200
MAX_ID_BYTES = 1024


def normalize_id(result_id: ResultId) -> str:
    """Return the canonical ``a/b/c`` form of an ID.

    Raises:
        InvalidResultIdError: the ID or one of its segments breaks the grammar.
    """
    if isinstance(result_id, str):
        return _normalize_text(result_id)
    return _normalize(result_id)


@functools.lru_cache(maxsize=65_536)
def _normalize_text(result_id: str) -> str:
    # Stores see the same IDs again and again (set, then get, exists, resume checks);
    # the check was a third of a SQLite get. Errors are raised, never cached.
    return _normalize(result_id)


#: Anything that can make a text ID invalid apart from length: a forbidden character,
#: or a segment that is empty or starts with ``.`` (at the start, after ``/``, or at
#: the end). No match proves a text ID valid when it is also short enough.
_SUSPECT = re.compile(f"[{_FORBIDDEN_CHARS}]|(?:^|/)(?:[./]|$)")


def _normalize(result_id: ResultId) -> str:
    if (
        isinstance(result_id, str)
        and len(result_id) * 4 <= MAX_SEGMENT_BYTES
        and _SUSPECT.search(result_id) is None
    ):
        # Every segment fits in MAX_SEGMENT_BYTES (4 bytes per character at most), and so
        # does the whole ID; nothing else can be wrong. Planning 100k IDs spent a third
        # of its time checking segment by segment.
        return result_id
    segments = split_id(result_id)
    text = SEPARATOR.join(segments)
    if len(text.encode("utf-8")) > MAX_ID_BYTES:
        raise InvalidResultIdError(
            f"result ID {_shorten(text)!r} is longer than {MAX_ID_BYTES} bytes"
        )
    return text


def split_id(result_id: ResultId) -> list[str]:
    """Return the validated segments of an ID.

    Raises:
        InvalidResultIdError: the ID or one of its segments breaks the grammar.
    """
    if isinstance(result_id, str):
        if result_id == "":
            raise InvalidResultIdError("result ID is empty")
        segments = result_id.split(SEPARATOR)
    elif isinstance(result_id, Sequence) and all(isinstance(s, str) for s in result_id):
        segments = list(result_id)
        if not segments:
            raise InvalidResultIdError("result ID has no segments")
    else:
        raise InvalidResultIdError(
            f"result ID must be a string or a list of strings, not {type(result_id).__name__}"
        )
    for segment in segments:
        _check_segment(segment, result_id)
    return segments


def is_under(result_id: str, prefix: str) -> bool:
    """Whether ``result_id`` equals ``prefix`` or lies below it, by whole segments."""
    return result_id == prefix or result_id.startswith(prefix + SEPARATOR)


def prefix_upper_bound(prefix: str) -> str:
    """The smallest string above every ``prefix/...`` ID (``/`` + 1 is ``0``)."""
    return prefix + chr(ord(SEPARATOR) + 1)


def _check_segment(segment: str, whole: ResultId) -> None:
    # The message is built only on failure: this runs for every segment of every ID.
    if (
        segment
        and not segment.startswith(".")
        and _FORBIDDEN.search(segment) is None  # first: a lone surrogate has no UTF-8 length
        and (
            len(segment) * 4 <= MAX_SEGMENT_BYTES
            or len(segment.encode("utf-8")) <= MAX_SEGMENT_BYTES
        )
    ):
        return
    where = f"in result ID {_shorten(whole)!r}"
    if segment == "":
        raise InvalidResultIdError(f"empty segment {where} (leading, trailing or double '/')")
    if segment.startswith("."):
        raise InvalidResultIdError(f"segment {_shorten(segment)!r} {where} starts with '.'")
    forbidden = _FORBIDDEN.search(segment)
    if forbidden is not None:
        raise InvalidResultIdError(
            f"segment {_shorten(segment)!r} {where} holds the forbidden character "
            f"{forbidden.group()!r}"
        )
    raise InvalidResultIdError(
        f"segment {_shorten(segment)!r} {where} is longer than {MAX_SEGMENT_BYTES} bytes"
    )


def _shorten(value: ResultId, limit: int = 80) -> str:
    text = value if isinstance(value, str) else SEPARATOR.join(value)
    return text if len(text) <= limit else text[:limit] + "..."


# --- Canonical JSON and stable keys (the Prefect layer builds task result IDs on these) ---

#: Hex digits of SHA-256 kept in a parameter key: 128 bits, still short enough to read.
KEY_HEX_DIGITS = 32
_MAX_DEPTH = 64


def canonical_value(value: Any, where: str = "value") -> Any:
    """``value`` as plain JSON data that is the same in every process, machine and run.

    Handles None, bools, ints, finite and non-finite floats, strings, Pydantic models
    (their JSON-mode dump), dataclasses, enums (their value), dates and times, UUIDs,
    Decimals, paths (POSIX form), bytes, sets (sorted), mappings and lists/tuples.
    Non-primitive kinds are tagged (``{"$date": ...}``) so ``"2024-01-01"`` and
    ``date(2024, 1, 1)`` differ; class names are not part of the form, so renaming a
    model keeps its keys.

    Raises:
        UnhashableParameterError: a value (named by its path from ``where``) has no
            canonical form.
    """
    return _canonical(value, where, 0)


def canonical_json(value: Any, where: str = "value") -> str:
    """The canonical JSON text of ``value``: sorted keys, no spaces, UTF-8 kept.

    Raises:
        UnhashableParameterError: a part of ``value`` has no canonical form.
    """
    return _dumps(canonical_value(value, where))


def stable_key(value: Any, where: str = "value") -> str:
    """A short stable hash (hex SHA-256 prefix) of the canonical JSON of ``value``.

    Raises:
        UnhashableParameterError: a part of ``value`` has no canonical form.
    """
    return digest_of(canonical_value(value, where))


def digest_of(canonical: Any) -> str:
    """The stable hash of data that is already in canonical form (see ``canonical_value``)."""
    return hashlib.sha256(_dumps(canonical).encode("utf-8")).hexdigest()[:KEY_HEX_DIGITS]


def source_hash(fn: Callable[..., Any]) -> str:
    """A stable hash of a function's source text (dedented), for code-versioned IDs.

    Raises:
        UnhashableParameterError: the source cannot be read (a builtin, a REPL lambda).
    """
    target = inspect.unwrap(fn)
    try:
        text = textwrap.dedent(inspect.getsource(target)).strip()
    except (OSError, TypeError) as exc:
        raise UnhashableParameterError(
            f"cannot read the source of {getattr(target, '__qualname__', target)!r} "
            f"to hash it: {exc}"
        ) from exc
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:KEY_HEX_DIGITS]


def safe_segment(name: str) -> str:
    """A flow or task name made fit for one ID segment (``/``, ``\\``, control
    characters and a leading ``.`` replaced by ``_``)."""
    cleaned = _FORBIDDEN.sub("_", name).strip()
    if not cleaned:
        return "_"
    if cleaned.startswith("."):
        cleaned = "_" + cleaned[1:]
    return (
        cleaned[: MAX_SEGMENT_BYTES // 4] if len(cleaned.encode()) > MAX_SEGMENT_BYTES else cleaned
    )


def _dumps(data: Any) -> str:
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _canonical(value: Any, where: str, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise UnhashableParameterError(f"{where} is nested more than {_MAX_DEPTH} levels deep")
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, Enum):
        return {"$enum": _canonical(value.value, f"{where}.value", depth + 1)}
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, BaseModel):
        try:
            dumped = value.model_dump(mode="json")
        except PydanticSerializationError as exc:
            raise UnhashableParameterError(
                f"{where}: {type(value).__name__} cannot be dumped to JSON: {exc}"
            ) from exc
        return {"$model": _canonical(dumped, where, depth + 1)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            "$dataclass": {
                f.name: _canonical(getattr(value, f.name), f"{where}.{f.name}", depth + 1)
                for f in dataclasses.fields(value)
            }
        }
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, time):
        return {"$time": value.isoformat()}
    if isinstance(value, timedelta):
        return {"$timedelta": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, UUID):
        return {"$uuid": str(value)}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, PurePath):
        return {"$path": value.as_posix()}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": bytes(value).hex()}
    if isinstance(value, Mapping):
        return _canonical_mapping(value, where, depth)
    if isinstance(value, list | tuple):
        return [_canonical(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, set | frozenset):
        items = [_canonical(v, f"{where}{{...}}", depth + 1) for v in value]
        return {"$set": sorted(items, key=_dumps)}
    raise UnhashableParameterError(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}, "
        "which has no canonical JSON form"
    )


def _canonical_mapping(value: Mapping[Any, Any], where: str, depth: int) -> Any:
    if all(isinstance(k, str) for k in value):
        data = {k: _canonical(v, f"{where}[{k!r}]", depth + 1) for k, v in value.items()}
        # A user dict that looks like one of our tags must not collide with it.
        return {"$dict": data} if any(k.startswith("$") for k in data) else data
    pairs = [
        [
            _canonical(k, f"{where} key {k!r}", depth + 1),
            _canonical(v, f"{where}[{k!r}]", depth + 1),
        ]
        for k, v in value.items()
    ]
    return {"$items": sorted(pairs, key=lambda pair: _dumps(pair[0]))}
