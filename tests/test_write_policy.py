"""The write policy lives in one place: ``write_policy.write_record`` (and its async
twin) is what ResultsManager, AsyncResultsManager and transfer call."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from pydantic import BaseModel

import results_flow
from results_flow import manager, write_policy
from results_flow.backends.memory import MemoryBackend
from results_flow.codec import encode
from results_flow.errors import ResultConflictError, ResultExistsError
from results_flow.write_policy import SetBehavior, awrite_record, write_record

PACKAGE = Path(results_flow.__file__).parent


class Point(BaseModel):
    x: int


def test_set_behavior_is_still_importable_from_manager() -> None:
    assert manager.SetBehavior is write_policy.SetBehavior is results_flow.SetBehavior


def test_write_record_follows_the_table() -> None:
    backend = MemoryBackend()
    one, two = encode("a", Point(x=1), None, None), encode("a", Point(x=2), None, None)
    assert write_record(backend, "a", one, SetBehavior.RAISE_IF_EXISTS) is True
    with pytest.raises(ResultExistsError):
        write_record(backend, "a", one, SetBehavior.RAISE_IF_EXISTS)
    assert write_record(backend, "a", two, SetBehavior.SKIP_IF_EXISTS) is False
    assert write_record(backend, "a", one, SetBehavior.RAISE_IF_DIFFERENT) is False
    with pytest.raises(ResultConflictError):
        write_record(backend, "a", two, SetBehavior.RAISE_IF_DIFFERENT)
    assert write_record(backend, "a", two, SetBehavior.OVERWRITE) is True
    twin = backend.to_async()
    assert asyncio.run(awrite_record(twin, "a", one, SetBehavior.SKIP_IF_EXISTS)) is False
    assert asyncio.run(awrite_record(twin, "b", one, SetBehavior.OVERWRITE)) is True


@pytest.mark.parametrize("module", ["manager.py", "aio.py", "transfer.py"])
def test_writers_do_not_restate_the_rule(module: str) -> None:
    text = (PACKAGE / module).read_text()
    assert "SetBehavior.OVERWRITE:" not in text
    assert "resolve_insert(" not in text


def test_a_behavior_given_as_its_string_acts_as_the_member() -> None:
    """A plain "overwrite" once matched no member and wrote as RAISE_IF_DIFFERENT."""
    rm = results_flow.ResultsManager.from_url("memory://behavior-strings")
    rm.set("a", Point(x=1))
    assert rm.set("a", Point(x=2), behavior="overwrite") is True  # type: ignore[arg-type]
    assert rm.get("a", Point) == Point(x=2)
    assert rm.set("a", Point(x=3), behavior="skip_if_exists") is False  # type: ignore[arg-type]
    with pytest.raises(ResultExistsError):
        rm.set("a", Point(x=2), behavior="raise_if_exists")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["overwrite!", "OVERWRITE", "", None, 3])
def test_an_unknown_behavior_is_refused_by_name_and_nothing_changes(bad: object) -> None:
    rm = results_flow.ResultsManager.from_url("memory://behavior-bad")
    rm.set("a", Point(x=1))
    with pytest.raises(
        ValueError, match="behavior must be a SetBehavior or one of 'raise_if_exists'"
    ):
        rm.set("a", Point(x=2), behavior=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=re.escape(f"not {bad!r}")):
        asyncio.run(_aset(bad))
    assert rm.get("a", Point) == Point(x=1)


async def _aset(behavior: object) -> None:
    arm = results_flow.AsyncResultsManager.from_url("memory://behavior-bad-async")
    await arm.set("a", Point(x=2), behavior=behavior)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("stored", "given"),
    [(1, True), (1, 1.0), (0.0, False), ([1, 1], [1, True]), ({"a": False}, {"a": 0})],
)
def test_raise_if_different_tells_json_types_apart(stored: object, given: object) -> None:
    """Compared as Python values, True == 1 == 1.0 made different data look equal."""

    class Loose(BaseModel):
        v: object

    backend = MemoryBackend()
    write_record(backend, "a", encode("a", Loose(v=stored), None, None), SetBehavior.OVERWRITE)
    with pytest.raises(ResultConflictError):
        write_record(
            backend, "a", encode("a", Loose(v=given), None, None), SetBehavior.RAISE_IF_DIFFERENT
        )
    same = encode("a", Loose(v=stored), None, None)
    assert write_record(backend, "a", same, SetBehavior.RAISE_IF_DIFFERENT) is False


@pytest.mark.parametrize("bad", ["Point", Point(x=1), 3])
def test_reading_as_something_that_is_no_type_is_named(bad: object) -> None:
    """It was a bare AttributeError: 'dict' has no attribute 'model_validate_json'.
    (Types such as ``dict`` and ``int`` are read through a TypeAdapter since issue 22.)"""
    rm = results_flow.ResultsManager.from_url("memory://not-a-model")
    rm.set("a", Point(x=1))
    with pytest.raises(TypeError, match="result 'a': .* is not a type"):
        rm.get("a", bad)
    with pytest.raises(TypeError, match="result 'a': .* is not a type"):
        rm.get_many(["a"], bad)
    assert rm.get("a", dict) == {"x": 1}
