"""The ID grammar's fast path for text IDs agrees with the segment-by-segment check."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from results_flow import AsyncResultsManager, ResultsManager
from results_flow.errors import InvalidResultIdError
from results_flow.ids import SEPARATOR, normalize_id, split_id

# Every character class the grammar cares about, and the separator in every position.
ALPHABET = ["a", "é", ".", "/", "\\", "\x00", "\x1f", "\x7f", "\x9f", " "]


def checked_segment_by_segment(result_id: str) -> str | None:
    try:
        return SEPARATOR.join(split_id(result_id))
    except InvalidResultIdError:
        return None


def normalized(result_id: str) -> str | None:
    try:
        return normalize_id(result_id)
    except InvalidResultIdError:
        return None


@pytest.mark.parametrize("length", range(5))
def test_every_short_id_is_judged_as_the_segment_check_judges_it(length: int) -> None:
    for chars in itertools.product(ALPHABET, repeat=length):
        result_id = "".join(chars)
        assert normalized(result_id) == checked_segment_by_segment(result_id), repr(result_id)


@pytest.mark.parametrize(
    "result_id",
    [
        "a" * 200,
        "a" * 201,
        "é" * 100,
        "é" * 101,
        "x/" + "a" * 201,
        "/".join(["abcd"] * 205),
        "flow/task/" + "0123456789abcdef" * 2,  # a default task ID: ASCII, over 50 chars
        "a/" * 99 + "b",  # 199 ASCII characters, 100 segments
        "a/" * 100 + "b",  # 201
        "é/" + "a" * 197,
        "a" * 199 + "/",
        "a" * 150 + "/.hidden",
    ],
)
def test_long_ids_are_judged_as_the_segment_check_judges_them(result_id: str) -> None:
    assert normalized(result_id) == checked_segment_by_segment(result_id)


@pytest.mark.parametrize("call", ["get_many", "exists_many"])
def test_a_batch_call_given_one_id_as_text_says_so(call: str) -> None:
    """Iterated, "a/b" was three IDs, and the error spoke of an empty segment '/'."""
    rm = ResultsManager.from_url("memory://one-id-as-text")
    arm = AsyncResultsManager.from_url("memory://one-id-as-text-async")
    expected = "expected a collection of result IDs, got the single ID 'a/b'"
    with pytest.raises(InvalidResultIdError, match=expected):
        getattr(rm, call)("a/b")
    with pytest.raises(InvalidResultIdError, match=expected):
        asyncio.run(getattr(arm, call)("a/b"))
    assert rm.exists_many(["a/b"]) == set()
