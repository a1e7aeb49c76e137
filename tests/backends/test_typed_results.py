"""Results of any type a Pydantic TypeAdapter validates (issue 22 item 2), on every
backend and through both managers: stored with ``result_type=``, tagged with the type's
text, read back with the type as the same type, never guessed without it."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from results_flow import AsyncResultsManager, ResultsManager, SetBehavior
from results_flow.codec import encode
from results_flow.errors import ResultValidationError, UnknownModelError
from results_flow.maintenance import verify
from tests.backends.models import Person

JOHN = Person(name="John", age=30)


class Stray(BaseModel):
    """Never registered: a tag naming it is not read without the type."""

    x: int


TEAM = [JOHN, Person(name="Ann", age=41)]


def test_typed_results_round_trip(manager: ResultsManager) -> None:
    assert manager.set("t/team", TEAM, result_type=list[Person]) is True
    assert manager.set("t/pair", (7, JOHN), result_type=tuple[int, Person]) is True
    assert manager.set("t/none", None, result_type=Person | None) is True
    assert manager.set("t/weights", {"a": 0.5}, result_type=dict[str, float]) is True
    record = manager.record("t/team")
    assert (record.model_type, record.namespace) == ("list[Person]", "default")
    team = manager.get("t/team", list[Person])
    assert team == TEAM and all(type(p) is Person for p in team)
    assert manager.get("t/pair", tuple[int, Person]) == (7, JOHN)
    assert manager.get("t/none", Person | None) is None
    assert manager.get_many(["t/weights", "t/missing"], dict[str, float]) == {
        "t/weights": {"a": 0.5}
    }
    # Without a type: Person is registered in the record's namespace; Stray is not.
    assert manager.get("t/team") == TEAM and manager.get("t/none") is None
    assert manager.get_many(["t/pair"]) == {"t/pair": (7, JOHN)}
    manager.set("t/strays", [Stray(x=1)], result_type=list[Stray])
    with pytest.raises(UnknownModelError, match=r"'t/strays'.*'list\[Stray\]'.*get\("):
        manager.get("t/strays")
    report = verify(manager)  # `results-flow verify`: typed records check as models do
    assert [(f.id, f.kind) for f in report.failures] == [("t/strays", "unknown_model")]
    with pytest.raises(ResultValidationError, match=r"'t/bad'.*list\[Person\]"):
        manager.set("t/bad", ["not a person"], result_type=list[Person])
    assert not manager.exists("t/bad")
    assert manager.set("t/team", [], SetBehavior.SKIP_IF_EXISTS, result_type=list[Person]) is False


def test_a_model_given_as_result_type_is_stored_as_before() -> None:
    classic = encode("p", JOHN, None, None)
    typed = encode("p", JOHN.model_dump(), None, None, Person)
    assert (typed.model_type, typed.namespace, typed.data) == (
        classic.model_type,
        classic.namespace,
        classic.data,
    )


async def test_async_typed_results_round_trip(store_url: str) -> None:
    async with AsyncResultsManager.from_url(store_url) as rm:
        assert await rm.set("t/team", TEAM, result_type=list[Person]) is True
        assert (await rm.record("t/team")).model_type == "list[Person]"
        assert await rm.get("t/team", list[Person]) == TEAM
        assert await rm.get_many(["t/team"], list[Person]) == {"t/team": TEAM}
        assert await rm.get("t/team") == TEAM
        await rm.set("t/strays", {"a": Stray(x=1)}, result_type=dict[str, Stray])
        with pytest.raises(UnknownModelError, match=r"dict\[str, Stray\]"):
            await rm.get("t/strays")
