"""Progress of a results_map: one ``MapProgress`` per settled result ID.

``results_map(..., progress=hook)`` calls ``hook(MapProgress)`` in the caller's thread
once per distinct result ID: first for every input whose upstream failed and every ID
found in the store, then for each computed (or failed) one as its task run, or its
chunk, completes. ``progress=True``
draws a rich progress bar fed by the same events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MapProgress:
    """One result ID settled by ``results_map``, and how far the whole map is.

    ``computed`` is True when this call's task run computed it, False when it was
    reused (found in the store, or stored by another run first); ``error`` is set, and
    ``result`` is None, when its run failed. An input whose upstream future failed has
    no result ID (it is built from the upstream's result): its event has ``result_id``
    ``""``, the input's index in ``upstream_of`` and the upstream's error in ``error``.
    """

    result_id: str
    result: Any
    computed: bool
    error: BaseException | None
    done: int
    total: int
    upstream_of: int | None = None


ProgressHook = Callable[[MapProgress], None]


@contextmanager
def progress_hook(
    progress: bool | ProgressHook | None, label: str, total: int
) -> Iterator[ProgressHook | None]:
    """The hook to feed: the caller's, a rich bar's (``True``), or none."""
    if progress is None or progress is False:
        yield None
        return
    if progress is True:
        with _rich_bar(label, total) as bar:
            yield bar
        return
    yield progress


@contextmanager
def _rich_bar(label: str, total: int) -> Iterator[ProgressHook]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    # On stderr, like every progress bar: stdout stays the program's own output.
    with Progress(*columns, console=Console(stderr=True)) as bar:
        row = bar.add_task(label, total=total, failed=0)
        failed = 0

        def advance(event: MapProgress) -> None:
            nonlocal failed
            failed += event.error is not None
            bar.update(row, completed=event.done, failed=failed)

        yield advance
