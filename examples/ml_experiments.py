"""Experiment tracking, as in the ResultsManager documentation: runs stored under
``models/<name>/run_<n>``, then listed by prefix and compared.

Run it with ``python examples/ml_experiments.py [STORE_URL]`` (default: the default store).
"""

from __future__ import annotations

import random
import sys
import time
from typing import Any

from pydantic import BaseModel

from results_flow import ResultsManager, SetBehavior, register_model


@register_model
class ModelMetrics(BaseModel):
    model_name: str
    accuracy: float
    precision: float
    recall: float
    training_time: float
    parameters: dict[str, Any]


def train(model_name: str, parameters: dict[str, Any], seed: int) -> ModelMetrics:
    """A stand-in for training: deterministic scores from the parameters and seed."""
    rng = random.Random(f"{model_name}-{sorted(parameters.items())}-{seed}")
    start = time.perf_counter()
    accuracy = 0.8 + rng.random() * 0.15
    return ModelMetrics(
        model_name=model_name,
        accuracy=round(accuracy, 4),
        precision=round(accuracy - rng.random() * 0.05, 4),
        recall=round(accuracy + rng.random() * 0.03, 4),
        training_time=round(time.perf_counter() - start, 6),
        parameters=parameters,
    )


GRID = {
    "random_forest": [{"n_estimators": n, "max_depth": d} for n in (100, 300) for d in (5, 10)],
    "gradient_boosting": [{"learning_rate": lr, "n_estimators": 200} for lr in (0.05, 0.1, 0.3)],
}


def main(store: str | None = None) -> dict[str, str]:
    results = ResultsManager(store)
    for name, grid in GRID.items():
        for run, parameters in enumerate(grid, start=1):
            results.set(
                f"models/{name}/run_{run}", train(name, parameters, run), SetBehavior.SKIP_IF_EXISTS
            )
    best: dict[str, str] = {}
    for name in GRID:
        print(f"{name}:")
        runs = {rid: results.get(rid, ModelMetrics) for rid in results.list_ids(f"models/{name}")}
        for rid, metrics in runs.items():
            print(f"  {rid}: accuracy={metrics.accuracy:.4f} params={metrics.parameters}")
        best[name] = max(runs, key=lambda rid: runs[rid].accuracy)
        print(f"  best: {best[name]}")
    results.close()
    return best


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
