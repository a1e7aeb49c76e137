"""The upgrade registry and chain (issue 23 item 5): what registration refuses, how a
chain picks its steps, and what a record no upgrade accepts raises."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from pydantic import BaseModel, ConfigDict
from typing_extensions import TypedDict

from results_flow import UpgradeFailedError, UpgradeRegistryError, upgrades
from results_flow.upgrades import clear_upgrades, invalid_policy, upgrade, upgrades_of


class Temp(BaseModel):
    celsius: float


class TempF(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fahrenheit: float


class TempK(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kelvin: float


class TempText(TypedDict):
    reading: str


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    clear_upgrades(Temp)
    yield
    clear_upgrades(Temp)


def test_a_chain_takes_the_first_upgrade_whose_older_shape_validates() -> None:
    @upgrades(Temp)
    def from_f(old: TempF) -> TempK:
        return TempK(kelvin=(old.fahrenheit - 32) * 5 / 9 + 273.15)

    @upgrades(Temp)
    def from_k(old: TempK) -> dict[str, float]:
        return {"celsius": round(old.kelvin - 273.15, 6)}

    @upgrades(Temp)
    def from_text(old: TempText) -> TempF:  # a TypedDict shape, returning an older model
        return TempF(fahrenheit=float(old["reading"].rstrip("F")))

    done = upgrade("t/1", Temp, json.dumps({"reading": "212F"}), "why")
    assert done.value == Temp(celsius=100.0)
    assert [s.rsplit(".", 1)[1] for s in done.steps] == ["from_text", "from_f", "from_k"]
    assert upgrade("t/2", Temp, '{"kelvin": 273.15}', "why").value == Temp(celsius=0.0)
    with pytest.raises(UpgradeFailedError, match=r"'t/3' does not validate as Temp.*why$"):
        upgrade("t/3", Temp, '{"rankine": 1}', "why")


def test_an_upgrade_that_raises_or_ends_short_fails_the_record_by_name() -> None:
    @upgrades(Temp)
    def broken(old: TempF) -> Temp:
        raise ZeroDivisionError("oops")

    with pytest.raises(UpgradeFailedError, match=r"'t/1': upgrade .*broken to Temp failed: Zero"):
        upgrade("t/1", Temp, '{"fahrenheit": 1}', "why")

    @upgrades(Temp)
    def short(old: TempK) -> dict[str, float]:
        return {"kelvin_again": old.kelvin}  # validates as nothing

    with pytest.raises(UpgradeFailedError, match=r"after .*short \(older shapes: TempF, TempK\)"):
        upgrade("t/2", Temp, '{"kelvin": 1}', "why")


def test_registration_refuses_what_cannot_work() -> None:
    def no_annotation(old):  # type: ignore[no-untyped-def]
        return old

    with pytest.raises(UpgradeRegistryError, match="annotate its first parameter"):
        upgrades(Temp)(no_annotation)
    with pytest.raises(UpgradeRegistryError, match="takes Temp itself"):

        @upgrades(Temp)
        def itself(old: Temp) -> Temp:
            return old

    with pytest.raises(UpgradeRegistryError, match="needs a pydantic model class"):
        upgrades(dict)  # type: ignore[arg-type]

    @upgrades(Temp)
    def f_to_k(old: TempF) -> TempK:
        return TempK(kelvin=old.fahrenheit)

    with pytest.raises(UpgradeRegistryError, match="both take TempF"):

        @upgrades(Temp)
        def f_again(old: TempF) -> Temp:
            return Temp(celsius=old.fahrenheit)

    with pytest.raises(UpgradeRegistryError, match="makes a cycle"):

        @upgrades(Temp)
        def k_to_f(old: TempK) -> TempF:
            return TempF(fahrenheit=old.kelvin)

    assert [u.fn for u in upgrades_of(Temp)] == [f_to_k]  # nothing refused was kept
    upgrades(Temp, source=TempK)(lambda old: {"celsius": old.kelvin})  # source= given
    assert len(upgrades_of(Temp)) == 2


def test_on_invalid_choices_read_once_for_every_caller() -> None:
    own = ("raise", "recompute")
    assert invalid_policy("raise", own) == invalid_policy("raise", own)
    assert (invalid_policy("migrate", own).migrate, invalid_policy("migrate", own).otherwise) == (
        True,
        "raise",
    )
    assert invalid_policy(("migrate", "recompute"), own).otherwise == "recompute"
    assert not invalid_policy("recompute", own).migrate
    for bad in ("skip", ("migrate", "skip"), ("recompute", "migrate"), ("migrate",), None):
        with pytest.raises(ValueError, match="on_invalid must be one of"):
            invalid_policy(bad, own)
