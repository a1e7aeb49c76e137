"""A task module whose model nobody registers but its results_task (issue 9 item 9):
importing it must be enough to read the task's results without a class."""

from __future__ import annotations

from pydantic import BaseModel

from results_flow.prefect import results_task


class Reading(BaseModel):
    sensor: str
    value: float


@results_task(namespace="tests-verify")
def read_sensor(sensor: str) -> Reading:
    return Reading(sensor=sensor, value=float(len(sensor)))
