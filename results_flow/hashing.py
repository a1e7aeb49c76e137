"""Canonical JSON of values and stable hashes of it: what result IDs of calls are built from.

``canonical_value`` gives the same plain JSON data for equal values in every process,
machine and run; ``stable_key`` hashes it. The Prefect layer (``prefect/naming.py``)
keys a task call's result ID on the hash of its bound arguments; ``source_hash`` keys
it on the function's source when asked. The ID grammar itself is ``results_flow.ids``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import textwrap
from collections.abc import Callable, Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from pathlib import PurePath
from typing import Any
from uuid import UUID

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError

from results_flow.errors import UnhashableParameterError
from results_flow.settings import HASH_MAX_DEPTH

#: Hex digits of SHA-256 kept in a parameter key: 128 bits, still short enough to read.
KEY_HEX_DIGITS = 32


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


def _dumps(data: Any) -> str:
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _canonical(value: Any, where: str, depth: int) -> Any:
    if depth > HASH_MAX_DEPTH:
        raise UnhashableParameterError(f"{where} is nested more than {HASH_MAX_DEPTH} levels deep")
    if isinstance(value, str):
        return _utf8_text(value, where)
    if value is None or isinstance(value, bool):
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
        return {"$path": _utf8_text(value.as_posix(), where)}
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


def _utf8_text(text: str, where: str) -> str:
    """``text`` if it has a UTF-8 form (what the hash and the stored parameters need).

    Raises:
        UnhashableParameterError: it holds a lone surrogate, as a file name that is not
            UTF-8 does when Python lists a folder.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start : exc.end]
        raise UnhashableParameterError(
            f"{where} holds {bad!r} at index {exc.start}, a lone surrogate with no UTF-8 "
            "form (a file name that is not UTF-8?); pass its bytes (os.fsencode(path)) "
            "to hash it"
        ) from None
    return text


def _canonical_mapping(value: Mapping[Any, Any], where: str, depth: int) -> Any:
    if all(isinstance(k, str) for k in value):
        data = {
            _utf8_text(k, f"{where} key {k!r}"): _canonical(v, f"{where}[{k!r}]", depth + 1)
            for k, v in value.items()
        }
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
