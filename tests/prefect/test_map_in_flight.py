"""results_map keeps a bounded number of task runs in flight: Prefect's default thread
pool has no bound, and one run per item over 2,000 fresh items started 2,000 threads
whose SQLite writes then timed out with StoreBusyError (the regression guarded here)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from prefect import flow
from pydantic import BaseModel

from results_flow.prefect import results_map, results_task
from results_flow.settings import MAP_MAX_IN_FLIGHT


class Seen(BaseModel):
    item: int


class Overlap:
    """How many task bodies run at once. Bodies hold on until the bound is reached, then
    a while longer (so that runs beyond the bound, if submitted, start and are counted)."""

    def __init__(self, bound: int) -> None:
        self.guard = threading.Lock()
        self.reset(bound)

    def reset(self, bound: int) -> None:
        self.bound = bound
        self.running = 0
        self.most = 0
        self.full = threading.Event()
        self.over = threading.Event()
        self.release = threading.Event()

    def enter(self) -> None:
        with self.guard:
            self.running += 1
            self.most = max(self.most, self.running)
            if self.running >= self.bound:
                self.full.set()
            if self.running > self.bound:
                self.over.set()
        self.release.wait(timeout=120)  # a safety net; the watcher releases much sooner
        with self.guard:
            self.running -= 1

    def watch(self) -> None:
        self.full.wait(timeout=120)
        self.over.wait(timeout=3)  # time for excess runs to show up; set at once if they do
        self.release.set()


overlap = Overlap(MAP_MAX_IN_FLIGHT)


@results_task(name="in-flight")
def held(item: int) -> Seen:
    overlap.enter()
    return Seen(item=item)


@flow(name="in-flight-flow")  # Prefect's default task runner: a thread pool with no bound
def fill(items: list[int], options: dict[str, Any]) -> int:
    return results_map(held, items, **options).computed


@pytest.mark.parametrize(
    ("bound", "options"),
    [
        (MAP_MAX_IN_FLIGHT, {}),
        (3, {"max_in_flight": 3}),
        (2, {"max_in_flight": 2, "chunk_size": 1}),
    ],
    ids=["default", "given", "chunks"],
)
def test_results_map_keeps_at_most_max_in_flight_runs(
    store_url: str, bound: int, options: dict[str, Any]
) -> None:
    overlap.reset(bound)
    watcher = threading.Thread(target=overlap.watch, daemon=True)
    watcher.start()
    items = list(range(2 * bound + 1))
    computed = fill(items, options)
    watcher.join()
    assert computed == len(items)
    assert overlap.most == bound


@pytest.mark.parametrize("name", ["max_in_flight", "chunk_size"])
@pytest.mark.parametrize("bad", [0, -3, 2.5, "10", True])
def test_a_bound_that_is_no_whole_number_of_at_least_one_is_refused(
    store_url: str, name: str, bad: object
) -> None:
    with pytest.raises(ValueError, match=f"{name} must be a whole number, at least 1, not"):
        results_map(held, [1], **{name: bad})
