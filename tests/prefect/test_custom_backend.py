"""A store written outside the package from the README's custom-store contract
(tests/custom_backend, registered by entry point) runs results_map like a built-in one
(issue 20 item 12): without locks when the task says lock=False, with the store's own
lock() when it has one, and a lock=True task on a store without locks fails once with
one message before any item is submitted."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect import flow
from pydantic import BaseModel

from results_flow import ResultsFlowError, ResultsManager, register_model
from results_flow.prefect import results_map, results_task
from tests.backends.conftest import CUSTOM_SCHEME, custom_store_installed
from tests.prefect.conftest import CallLog
from tests.prefect.tasks import record_call

ITEMS = 30


@register_model(namespace="tests-custom-store")
class Square(BaseModel):
    n: int
    square: int


def squares_on(url: str, *, lock: bool) -> list[int]:
    """results_map of a fresh results_task over ``url``; the squares, in input order."""

    def failed(task: object, run: object, state: object) -> None:
        record_call("failed", getattr(run, "name", "?"))

    @results_task(manager=url, lock=lock, namespace="tests-custom-store", on_failure=[failed])
    def square(n: int) -> Square:
        record_call("square", n)
        return Square(n=n, square=n * n)

    @flow(name="custom-store-flow")
    def run() -> list[int]:
        return [result.square for result in results_map(square, range(ITEMS))]

    return run()


@pytest.mark.parametrize(
    ("scheme", "lock"), [(CUSTOM_SCHEME, False), (f"{CUSTOM_SCHEME}-locked", True)]
)
def test_results_map_over_a_custom_store(
    tmp_path: Path, calls: CallLog, scheme: str, lock: bool
) -> None:
    custom_store_installed()
    url = f"{scheme}://{tmp_path / 'tiny'}"
    assert squares_on(url, lock=lock) == [n * n for n in range(ITEMS)]
    assert sorted(calls.lines()) == sorted(f"square:{n}" for n in range(ITEMS))
    with ResultsManager(url) as rm:
        assert len(rm.list_ids()) == ITEMS
        assert rm.backend.offers_locks is lock
    calls.clear()
    assert squares_on(url, lock=lock) == [n * n for n in range(ITEMS)]  # resumed
    assert calls.lines() == []


def test_a_locking_task_on_a_store_without_locks_fails_once_before_submitting(
    tmp_path: Path, calls: CallLog
) -> None:
    custom_store_installed()
    url = f"{CUSTOM_SCHEME}://{tmp_path / 'tiny'}"
    with pytest.raises(ResultsFlowError, match="offers no per-ID locks") as caught:
        squares_on(url, lock=True)
    assert "lock=False" in str(caught.value)
    assert calls.lines() == []  # nothing was submitted: no item ran, and none failed
