"""results_task on prefect-dask's DaskTaskRunner: a local cluster of two worker
processes computing into a PostgreSQL store, then reusing it."""

from __future__ import annotations

import os

import pytest
from prefect import flow

from results_flow import ResultsManager
from tests.prefect.conftest import CallLog
from tests.prefect.tasks import Score, score

prefect_dask = pytest.importorskip("prefect_dask")


def test_dask_cluster_of_two_processes_over_postgres(
    postgres_url: str, calls: CallLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESULTS_FLOW_STORE", postgres_url)  # the workers inherit it
    runner = prefect_dask.DaskTaskRunner(
        cluster_kwargs={
            "n_workers": 2,
            "threads_per_worker": 2,
            "processes": True,
            "dashboard_address": None,
        }
    )

    @flow(name="dask-flow", task_runner=runner)
    def run(items: list[int]) -> tuple[list[Score], list[str], list[Score]]:
        first = score.map(items).result()
        ran = calls.lines()
        again = [f.result() for f in [score.submit(i) for i in items]]
        return first, ran, again

    first, ran, again = run(list(range(8)))
    assert [r.item for r in first] == list(range(8))
    assert len({r.pid for r in first} - {os.getpid()}) >= 1, "computed on dask workers"
    assert sorted(ran) == sorted(f"score:{i}" for i in range(8))
    assert again == first and calls.lines() == ran  # the second pass reused every result
    assert len(ResultsManager.from_url(postgres_url).list_ids("dask-flow/score")) == 8


def test_chunked_results_map_on_a_dask_cluster_of_two_processes(
    postgres_url: str, calls: CallLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    from results_flow.prefect import results_map

    monkeypatch.setenv("RESULTS_FLOW_STORE", postgres_url)
    runner = prefect_dask.DaskTaskRunner(
        cluster_kwargs={
            "n_workers": 2,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
        }
    )

    @flow(name="dask-chunks", task_runner=runner)
    def run(items: list[int]) -> tuple[list[Score], int]:
        report = results_map(score, items, chunk_size=5)
        return list(report), report.computed

    first, computed = run(list(range(12)))
    assert [r.item for r in first] == list(range(12)) and computed == 12
    assert {r.pid for r in first}.isdisjoint({os.getpid()}), "computed on dask workers"
    assert sorted(calls.lines()) == sorted(f"score:{i}" for i in range(12))
    rm = ResultsManager.from_url(postgres_url)
    runs = {rm.record(rid).metadata["task_run_id"] for rid in rm.list_ids("dask-chunks/score")}
    assert len(runs) == 3  # 12 items in chunks of 5
    again, computed = run(list(range(12)))
    assert again == first and computed == 0


def test_a_memory_store_task_on_dask_fails_with_a_results_task_error_from_main(
    tmp_path: os.PathLike[str], prefect_harness: None
) -> None:
    """Regression: the user caught Dask's ``TypeError: Could not serialize object``; and a
    file-store task defined in ``__main__`` beside the memory one must still work."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from prefect.settings import PREFECT_API_URL

    script = Path(__file__).with_name("dask_main_script.py")
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    root = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, str(script), f"file://{tmp_path}/store"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(out["refused"]) == {"submit", "map", "results_map", "results_map chunked"}
    assert all("cannot be reopened in another process" in m for m in out["refused"].values())
    assert out["values"] == [0, 2, 4, 6]
