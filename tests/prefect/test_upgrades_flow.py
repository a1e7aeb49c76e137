"""A model change costs a conversion, not the compute (issue 23 item 5): on a real
Prefect run, results_task and results_map with ``on_invalid="migrate"`` upgrade stored
results through ``@upgrades`` and write them back without calling the function; a
record no upgrade accepts raises (``"migrate"``) or is recomputed
(``("migrate", "recompute")``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, ConfigDict

from results_flow import InvalidResultsError, Record, ResultsManager, upgrades
from results_flow.prefect import result_id_for, results_map, results_task

NS = "tests-upgrade-flow"
FLOW = "upgrade-flow"


class Gauge(BaseModel):
    x: int
    unit: str


class GaugeV1(BaseModel):
    model_config = ConfigDict(extra="forbid")
    x: int


@upgrades(Gauge)
def gauge_from_v1(old: GaugeV1) -> Gauge:
    return Gauge(x=old.x, unit="m")


def test_results_task_and_results_map_upgrade_instead_of_recomputing(tmp_path: Path) -> None:
    rm = ResultsManager(f"sqlite:///{tmp_path / 'results.db'}")
    runs: list[int] = []

    @results_task(manager=rm, namespace=NS, on_invalid="migrate")
    def measure(x: int) -> Gauge:
        runs.append(x)
        return Gauge(x=x, unit="computed")

    def rid(x: int) -> str:
        return result_id_for(measure, x, flow=FLOW)

    for x in (1, 2, 3):
        rm.backend.upsert(rid(x), Record("Gauge", NS, json.dumps({"x": x})))
    rm.backend.upsert(rid(4), Record("Gauge", NS, json.dumps({"y": 4})))  # no upgrade fits

    @flow(name=FLOW)
    def one(task: object, x: int) -> Gauge:
        return task(x)  # type: ignore[operator,no-any-return]

    @flow(name=FLOW, task_runner=ThreadPoolTaskRunner(max_workers=2))
    def many(task: object) -> list[Gauge]:
        return list(results_map(task, range(6)))

    assert one(measure, 1) == Gauge(x=1, unit="m") and runs == []  # converted, not computed
    assert rm.get(rid(1), Gauge) == Gauge(x=1, unit="m")  # and written back
    assert rm.record(rid(1)).metadata["upgraded"]["from"] == f"{NS}:Gauge"

    with pytest.raises(InvalidResultsError, match="1 of 6 stored result") as caught:
        many(measure)
    assert list(caught.value.invalid) == [rid(4)]
    assert sorted(runs) == [0, 5]  # the missing ones ran; 2 and 3 were converted
    assert rm.get_many([rid(2), rid(3)], Gauge) == {
        rid(2): Gauge(x=2, unit="m"),
        rid(3): Gauge(x=3, unit="m"),
    }

    fallback = measure.with_options(on_invalid=("migrate", "recompute"))  # type: ignore[attr-defined]
    results = many(fallback)
    assert [g.x for g in results] == list(range(6))
    assert sorted(runs) == [0, 4, 5]  # only the one no upgrade accepts was recomputed
    assert rm.get(rid(4), Gauge) == Gauge(x=4, unit="computed")
    assert [g.unit for g in results] == ["computed", "m", "m", "m", "computed", "computed"]
