"""examples/ml_experiments.py stores runs by prefix and compares them."""

from __future__ import annotations

from pathlib import Path

from examples.ml_experiments import GRID, ModelMetrics, main
from results_flow import ResultsManager


def test_runs_are_stored_listed_and_compared(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'exp.db'}"
    best = main(url)
    rm = ResultsManager(url)
    assert rm.list_ids("models/random_forest") == [
        f"models/random_forest/run_{i}" for i in range(1, 5)
    ]
    assert len(rm.list_ids("models")) == sum(len(g) for g in GRID.values())
    for name, rid in best.items():
        scores = [rm.get(r, ModelMetrics).accuracy for r in rm.list_ids(f"models/{name}")]
        assert rm.get(rid, ModelMetrics).accuracy == max(scores)
    assert main(url) == best  # a rerun reuses the stored runs
