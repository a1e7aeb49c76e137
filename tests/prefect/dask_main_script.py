"""Run as ``__main__`` by tests/prefect/test_dask.py: a memory:// task and a file-store
task defined side by side in a script, on a Dask cluster of two processes."""

from __future__ import annotations

import json
import sys

from prefect import flow
from prefect_dask import DaskTaskRunner
from pydantic import BaseModel

from results_flow import ResultsManager
from results_flow.errors import ResultsTaskError
from results_flow.prefect import results_map, results_task


class Doubled(BaseModel):
    value: int


store = sys.argv[1]


@results_task(manager=ResultsManager("memory://dask-main"))
def in_memory(x: int) -> Doubled:
    return Doubled(value=2 * x)


@results_task(manager=store)
def on_file(x: int) -> Doubled:
    return Doubled(value=2 * x)


runner = DaskTaskRunner(
    cluster_kwargs={
        "n_workers": 2,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": None,
    }
)


@flow(name="dask-main", task_runner=runner)
def run() -> dict[str, object]:
    refused = {}
    for name, attempt in (
        ("submit", lambda: in_memory.submit(1).result()),
        ("map", lambda: [f.result() for f in in_memory.map([1, 2])]),
        ("results_map", lambda: results_map(in_memory, [1, 2])),
        ("results_map chunked", lambda: results_map(in_memory, [1, 2], chunk_size=2)),
    ):
        try:
            attempt()
        except ResultsTaskError as exc:
            refused[name] = str(exc)
    values = [d.value for d in results_map(on_file, range(4))]
    return {"refused": refused, "values": values}


if __name__ == "__main__":
    print(json.dumps(run()))
