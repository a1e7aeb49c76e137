"""Result IDs: one grammar, checked before any backend sees an ID.

An ID is ``a/b/c`` or the list ``["a", "b", "c"]``. Every segment is non-empty,
at most ``MAX_SEGMENT_BYTES`` bytes of UTF-8, does not start with ``.`` (so ``.``,
``..`` and hidden files are out), and holds no ``/``, ``\\``, NUL or other control
character. The whole ID is at most ``MAX_ID_BYTES`` bytes, which keeps it inside a
file name per segment and inside a PostgreSQL index entry.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from results_flow.errors import InvalidResultIdError

ResultId = str | Sequence[str]

SEPARATOR = "/"
MAX_SEGMENT_BYTES = 200
MAX_ID_BYTES = 1024


def normalize_id(result_id: ResultId) -> str:
    """Return the canonical ``a/b/c`` form of an ID.

    Raises:
        InvalidResultIdError: the ID or one of its segments breaks the grammar.
    """
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
    where = f"in result ID {_shorten(whole)!r}"
    if segment == "":
        raise InvalidResultIdError(f"empty segment {where} (leading, trailing or double '/')")
    if segment.startswith("."):
        raise InvalidResultIdError(f"segment {_shorten(segment)!r} {where} starts with '.'")
    for char in segment:
        if char in "/\\" or char == "\x00" or unicodedata.category(char) == "Cc":
            raise InvalidResultIdError(
                f"segment {_shorten(segment)!r} {where} holds the forbidden character {char!r}"
            )
    if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
        raise InvalidResultIdError(
            f"segment {_shorten(segment)!r} {where} is longer than {MAX_SEGMENT_BYTES} bytes"
        )


def _shorten(value: ResultId, limit: int = 80) -> str:
    text = value if isinstance(value, str) else SEPARATOR.join(value)
    return text if len(text) <= limit else text[:limit] + "..."
