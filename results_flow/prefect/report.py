"""What a results_map reports: the ``ResumeResults`` it returns, and in the Prefect UI
a progress artifact, updated as items settle, and a table artifact at the end.

The progress artifact is created when the map starts (counting the results found in the
store) and updated at most once every ``MAP_ARTIFACT_UPDATE_SECONDS``, so 10,000 items
cost a few hundred API calls, not 10,000; the last update says 100 %. The table counts
inputs, computed, reused and failed items, names the store (its password masked) and
the IDs' common prefix, and lists the first ``MAP_ARTIFACT_FAILURES`` failures with
their errors. Outside a flow or task run (no run to attach them to) nothing is created.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast, overload
from uuid import UUID

from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.context import get_run_context
from prefect.exceptions import MissingContextError
from pydantic import BaseModel

from results_flow.prefect.progress import MapProgress
from results_flow.settings import MAP_ARTIFACT_FAILURES, MAP_ARTIFACT_UPDATE_SECONDS
from results_flow.urls import mask_url

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class ResumeResults(Sequence[M], Generic[M]):
    """Every input's result in input order, with what this call computed and reused.

    Iterate it or index it like a list of results.
    """

    results: list[M]
    ids: list[str]
    computed: int
    reused: int
    seconds: float = field(default=0.0, compare=False)
    #: Of the computed, how many replaced a stored result that had expired.
    expired: int = 0

    @overload
    def __getitem__(self, index: int) -> M: ...
    @overload
    def __getitem__(self, index: slice) -> list[M]: ...
    def __getitem__(self, index: int | slice) -> M | list[M]:
        return self.results[index]

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[M]:
        return iter(self.results)

    def summary(self) -> str:
        """One line for logs: how many results, computed (expired ones among them) and
        reused."""
        expired = f" ({self.expired} of them expired)" if self.expired else ""
        return (
            f"{len(self.results)} results: {self.computed} computed{expired}, "
            f"{self.reused} reused from the store ({self.seconds:.2f}s)"
        )


@dataclass(frozen=True)
class Failure:
    """One input that produced no result: ``label`` is its result ID, or, when its
    upstream failed before an ID could be built, ``input N (parameter 'p')``."""

    label: str
    error: BaseException


@dataclass(frozen=True)
class MapSummary:
    """What one results_map did, for its table artifact: counts per input; ``failures``
    once per distinct result ID (and per input whose upstream failed)."""

    task_name: str
    inputs: int
    distinct: int
    computed: int
    reused: int
    failed: int
    failures: Sequence[Failure]
    store: str
    prefix: str
    seconds: float
    expired: int = 0
    """Of the computed, how many replaced a stored result that had expired."""

    def table(self, limit: int = MAP_ARTIFACT_FAILURES) -> list[dict[str, Any]]:
        """The table's rows: one per count, then one per failure (the first ``limit``)."""
        rows: list[dict[str, Any]] = [
            {"item": "inputs", "value": self.inputs},
            {"item": "distinct result IDs", "value": self.distinct},
            {"item": "computed", "value": self.computed},
            {"item": "computed: expired before", "value": self.expired},
            {"item": "reused from the store", "value": self.reused},
            {"item": "failed", "value": self.failed},
            {"item": "store", "value": mask_url(self.store)},
            {"item": "ID prefix", "value": self.prefix},
            {"item": "seconds", "value": round(self.seconds, 2)},
        ]
        for failure in self.failures[:limit]:
            rows.append({"item": f"failed: {failure.label}", "value": repr(failure.error)})
        if len(self.failures) > limit:
            rows.append(
                {"item": "failed: ...", "value": f"{len(self.failures) - limit} more not listed"}
            )
        return rows

    def description(self) -> str:
        """One Markdown line for the artifact."""
        return (
            f"**results_map `{self.task_name}`**: {self.inputs} inputs, {self.computed} "
            f"computed ({self.expired} expired), {self.reused} reused, {self.failed} failed "
            f"({self.seconds:.2f} s), store `{mask_url(self.store)}`"
        )


def artifact_key(task_name: str) -> str:
    """The artifact key of a task's maps: lowercase letters, digits and dashes only."""
    slug = re.sub(r"[^a-z0-9]+", "-", task_name.lower()).strip("-") or "task"
    return f"results-map-{slug}"


class MapArtifacts:
    """The progress and table artifacts of one results_map (see the module docstring).

    Each call goes to Prefect's API synchronously (``_sync=True``), also from an async
    flow, since results_map runs them in its own thread.
    """

    def __init__(self, task_name: str, total: int, interval: float) -> None:
        self.key = artifact_key(task_name)
        self.label = f"results_map `{task_name}`"
        self.total = total
        self.interval = interval
        self._last = 0.0
        self._shown = -1
        self._id: UUID | None = None

    @classmethod
    def open(
        cls, task_name: str, total: int, interval: float = MAP_ARTIFACT_UPDATE_SECONDS
    ) -> MapArtifacts | None:
        """The artifacts of a map run inside a flow or task run; None outside any."""
        try:
            get_run_context()
        except MissingContextError:
            return None
        return cls(task_name, total, interval)

    def _percent(self, done: int) -> float:
        return 100.0 if self.total == 0 else round(100.0 * done / self.total, 1)

    def start(self, done: int) -> None:
        """Create the progress artifact, ``done`` of ``total`` settled already."""
        created = create_progress_artifact(  # type: ignore[call-arg]
            progress=self._percent(done),
            key=f"{self.key}-progress",
            description=f"{self.label}: {done} of {self.total} results settled",
            _sync=True,
        )
        self._id = cast(UUID, created)
        self._last, self._shown = time.monotonic(), done

    def progress(self, event: MapProgress) -> None:
        """Show ``event.done``, unless the last update is less than ``interval`` old."""
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._update(event.done)
            self._last = now

    def _update(self, done: int) -> None:
        if self._id is None or done == self._shown:
            return
        update_progress_artifact(  # type: ignore[call-arg]
            artifact_id=self._id,
            progress=self._percent(done),
            description=f"{self.label}: {done} of {self.total} results settled",
            _sync=True,
        )
        self._shown = done

    def finish(self, summary: MapSummary, done: int) -> None:
        """The last progress update, and the table artifact of ``summary``."""
        self._update(done)
        create_table_artifact(  # type: ignore[call-arg]
            table=summary.table(),
            key=self.key,
            description=summary.description(),
            _sync=True,
        )
