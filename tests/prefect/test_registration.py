"""results_task registers its model when it is decorated (issue 9 item 9), so a store
read without a class and ``results-flow verify --import <task module>`` know its results."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from prefect import flow
from pydantic import BaseModel

from results_flow import get_model_class
from results_flow.errors import ResultsTaskError
from results_flow.prefect import results_task
from results_flow.registry import namespace_of
from tests.prefect.conftest import ROOT
from tests.prefect.tasks import Score
from tests.prefect.verify_tasks import Reading, read_sensor


def run_python(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def test_decorating_registers_the_model_under_the_task_namespace() -> None:
    assert get_model_class("Reading", namespace="tests-verify") is Reading
    assert namespace_of(Reading) == "tests-verify"

    @results_task(manager="memory://registration", namespace="tests-elsewhere")
    def rescore(item: int) -> Score:
        return Score(item=item, value=0.0, pid=0)

    assert get_model_class("Score", namespace="tests-elsewhere") is Score
    assert namespace_of(Score) == "tests-prefect"  # its own registration still decides


def test_another_model_of_the_same_name_fails_at_decoration() -> None:
    class Reading(BaseModel):  # not tests.prefect.verify_tasks.Reading
        other: int

    def body(x: int) -> Reading:
        return Reading(other=x)

    with pytest.raises(ResultsTaskError, match=r"'Reading'.*'tests-verify'.*pass namespace="):
        results_task(manager="memory://registration", namespace="tests-verify", model=Reading)(body)


def test_get_without_class_and_verify_import_read_task_results(
    store_url: str, worker_env: dict[str, str]
) -> None:
    @flow(name="registration-flow")
    def run() -> str:
        read_sensor("abc")
        return read_sensor.result_id("abc")

    rid = run()
    read = (
        "import sys, tests.prefect.verify_tasks\n"
        "from results_flow import ResultsManager\n"
        "print(ResultsManager(sys.argv[1]).get(sys.argv[2]).model_dump_json())"
    )
    got = run_python(worker_env, "-c", read, store_url, rid)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout.strip().splitlines()[-1]) == {"sensor": "abc", "value": 3.0}

    cli = ["-c", "from results_flow.cli import main; main()", "verify", "--store", store_url]
    cli.append("--json")
    without = run_python(worker_env, *cli)
    assert without.returncode == 1, without.stderr  # nothing imported: an unknown model
    assert json.loads(without.stdout)["failures"][0]["kind"] == "unknown_model"
    checked = run_python(worker_env, *cli, "--import", "tests.prefect.verify_tasks")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(checked.stdout)["valid"] == 1
