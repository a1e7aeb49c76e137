"""results_map's progress hook: one event per distinct result ID, stored ones first,
then each computed or failed one, fed in the caller's thread; and the rich bar."""

from __future__ import annotations

import threading

import pytest
from prefect import flow

from results_flow.prefect import MapProgress, results_map, results_task
from tests.prefect.conftest import CallLog
from tests.prefect.tasks import Score, score


@results_task
def picky(item: int) -> Score:
    if item == 3:
        raise ValueError("3 is refused")
    return Score(item=item, value=float(item), pid=0)


def test_progress_hook_is_fed_every_settled_id(store_url: str, calls: CallLog) -> None:
    events: list[MapProgress] = []
    threads: set[int] = set()

    def hook(event: MapProgress) -> None:
        events.append(event)
        threads.add(threading.get_ident())

    @flow(name="progress-flow")
    def run(items: list[int]) -> int:
        results_map(score, items, progress=hook)
        return threading.get_ident()

    run([1, 2])
    events.clear()
    caller = run([1, 2, 3, 3, 4])

    assert threads == {caller}
    assert [e.done for e in events] == [1, 2, 3, 4] and {e.total for e in events} == {4}
    assert [(e.result.item if e.result else None, e.computed) for e in events[:2]] == [
        (1, False),
        (2, False),
    ]
    assert sorted((e.result.item, e.computed) for e in events[2:] if e.result) == [
        (3, True),
        (4, True),
    ]
    assert all(e.error is None for e in events)


def test_progress_reports_failures_per_item_and_the_bar_draws(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    events: list[MapProgress] = []

    @flow(name="progress-flow")
    def run(progress: object) -> None:
        results_map(picky, [1, 2, 3], progress=progress)  # type: ignore[arg-type]

    with pytest.raises(ValueError, match="3 is refused") as info:
        run(events.append)
    assert sorted(e.result_id for e in events if e.error) == [
        picky.result_id(3).replace("no-flow", "progress-flow")
    ]
    assert "1 of 3 submitted items failed" in " ".join(info.value.__notes__)

    with pytest.raises(ValueError, match="3 is refused"):
        run(True)
    assert "3/3" in capsys.readouterr().err  # the bar draws on stderr
