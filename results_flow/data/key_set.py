"""KeySet: the key values of a streamed table's earlier chunks, kept small.

A Python set costs about 64 bytes per integer key, so at a million rows the key set
was most of a streamed load's growth in memory. Integer keys are kept here as sorted
runs of 8-byte integers, one run per chunk: as long as each chunk's values lie outside
the range of every earlier run (ascending IDs, the usual case), no lookup is needed.
When ranges overlap, or the values are not 64-bit integers, they go to a plain set and
checks are exact as before.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterable
from typing import Any

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class KeySet:
    """A set of key values with the few set operations key checks use."""

    def __init__(self) -> None:
        self._set: set[Any] = set()
        self._runs: list[array[int]] = []
        self._low = self._high = 0  # the range of all runs, when there are runs

    def update(self, values: Iterable[Any]) -> None:
        """Add ``values``."""
        values = list(values)
        if values and self._compact(values) and not self._overlaps(values):
            run = array("q", sorted(values))
            self._runs.append(run)
            self._low = min(self._low, run[0]) if len(self._runs) > 1 else run[0]
            self._high = max(self._high, run[-1]) if len(self._runs) > 1 else run[-1]
            return
        self._spill()
        self._set.update(values)

    def isdisjoint(self, values: list[Any]) -> bool:
        """Whether no value of ``values`` is in the set."""
        if not values:
            return True
        if self._runs and (not self._compact(values) or self._overlaps(values)):
            self._spill()
        return self._set.isdisjoint(values)

    def __contains__(self, value: Any) -> bool:
        if value in self._set:
            return True
        if type(value) is not int:
            if self._runs:
                self._spill()  # 3.0 or True may equal a kept int: ask a set
                return value in self._set
            return False
        for run in self._runs:
            if run[0] <= value <= run[-1]:
                at = bisect.bisect_left(run, value)
                if at < len(run) and run[at] == value:
                    return True
        return False

    def __len__(self) -> int:
        return len(self._set) + sum(map(len, self._runs))

    @staticmethod
    def _compact(values: list[Any]) -> bool:
        """Whether ``values`` can be kept as a run: 64-bit integers (not bools)."""
        return (
            bool(values)
            and set(map(type, values)) == {int}
            and min(values) >= _INT64_MIN
            and max(values) <= _INT64_MAX
        )

    def _overlaps(self, values: list[Any]) -> bool:
        """Whether the range of ``values`` meets the range of a run."""
        if not self._runs:
            return False
        low, high = min(values), max(values)
        if low > self._high or high < self._low:
            return False  # beyond every run: ascending keys end here
        return any(run[0] <= high and low <= run[-1] for run in self._runs)

    def _spill(self) -> None:
        """Move the runs into the set (from then on it is a plain set)."""
        for run in self._runs:
            self._set.update(run)
        self._runs = []
