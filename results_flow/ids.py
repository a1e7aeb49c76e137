"""Result IDs: one grammar, checked before any backend sees an ID.

An ID is ``a/b/c`` or the list ``["a", "b", "c"]``. Every segment is non-empty,
at most ``MAX_SEGMENT_BYTES`` bytes of UTF-8, does not start with ``.`` (so ``.``,
``..`` and hidden files are out), and holds no ``/``, ``\\``, NUL or other control
character. The whole ID is at most ``MAX_ID_BYTES`` bytes, which keeps it inside a
file name per segment and inside a PostgreSQL index entry.

Turning call arguments into the stable key of an ID is ``results_flow.hashing``'s job.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence

from results_flow.errors import InvalidResultIdError

ResultId = str | Sequence[str]

#: ``\\``, the control characters (Unicode category Cc: C0, DEL and C1) and lone
#: surrogates (no UTF-8 form; an undecodable file name arrives holding them); with
#: ``/``, the characters no segment may hold.
_FORBIDDEN_CHARS = r"\\\x00-\x1f\x7f-\x9f\ud800-\udfff"
_FORBIDDEN = re.compile(f"[/{_FORBIDDEN_CHARS}]")

SEPARATOR = "/"
MAX_SEGMENT_BYTES = 200
MAX_ID_BYTES = 1024
#: The top segment of the IDs results_flow keeps for its own records (failure records,
#: ``results_flow.failures``). A listing leaves them out unless its prefix names them.
RESERVED_ROOT = "_results_flow"


def normalize_id(result_id: ResultId) -> str:
    """Return the canonical ``a/b/c`` form of an ID.

    Raises:
        InvalidResultIdError: the ID or one of its segments breaks the grammar.
    """
    if isinstance(result_id, str):
        if _plainly_valid(result_id):
            return result_id
        return _normalize_text(result_id)
    return _normalize(result_id)


def normalize_ids(result_ids: Iterable[ResultId]) -> list[str]:
    """``normalize_id`` of each ID of a batch, in order.

    Raises:
        InvalidResultIdError: an ID breaks the grammar, or ``result_ids`` is one ID as
            text (iterated, it would be read as an ID per character).
    """
    if isinstance(result_ids, str):
        raise InvalidResultIdError(
            f"expected a collection of result IDs, got the single ID {_shorten(result_ids)!r}; "
            "wrap it in a list"
        )
    return [normalize_id(r) for r in result_ids]


@functools.lru_cache(maxsize=65_536)
def _normalize_text(result_id: str) -> str:
    # Long or non-ASCII IDs come again and again (set, then get, exists, resume checks);
    # the segment-by-segment check was a third of a SQLite get. Errors are never cached.
    return _normalize(result_id)


#: Anything that can make a text ID invalid apart from length: a forbidden character,
#: or a segment that is empty or starts with ``.`` (at the start, after ``/``, or at
#: the end). No match proves a text ID valid when it is also short enough.
_SUSPECT = re.compile(f"[{_FORBIDDEN_CHARS}]|(?:^|/)(?:[./]|$)")


def _plainly_valid(result_id: str) -> bool:
    """Whether a text ID is valid as it stands, by one regex search: no segment (nor the
    whole ID) can be too long, since it fits in ``MAX_SEGMENT_BYTES`` (ASCII, or at most
    4 bytes per character), and nothing ``_SUSPECT`` finds is in it. Planning 100k IDs
    spent a third of its time checking segment by segment, and 100k IDs overflow any
    cache of checked ones."""
    size = len(result_id)
    return (
        size * 4 <= MAX_SEGMENT_BYTES or (size <= MAX_SEGMENT_BYTES and result_id.isascii())
    ) and _SUSPECT.search(result_id) is None


def _normalize(result_id: ResultId) -> str:
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


def listed(ids: list[str], prefix: str | None) -> list[str]:
    """A listing's ``ids`` without results_flow's own records, unless ``prefix`` asked for
    them: under any other prefix there are none, so only a listing of everything is
    filtered."""
    if prefix is not None:
        return ids
    return [rid for rid in ids if not is_under(rid, RESERVED_ROOT)]


def common_prefix(ids: Sequence[str]) -> str:
    """The whole segments every ID starts with (``""`` when they share none)."""
    if not ids:
        return ""
    first = ids[0].split(SEPARATOR)
    shared = len(first)
    for result_id in ids[1:]:
        segments = result_id.split(SEPARATOR)
        shared = min(shared, len(segments))
        for i in range(shared):
            if segments[i] != first[i]:
                shared = i
                break
    return SEPARATOR.join(first[:shared])


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


@functools.lru_cache(maxsize=1024)  # a few flow and task names, asked for every ID built
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
