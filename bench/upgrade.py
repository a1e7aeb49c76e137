"""What a model change costs with upgrades (issue 23 item 5), side by side per store.

2,000 records stored in an older shape are brought to the current model by
``upgrade_store`` (the ``results-flow upgrade`` command) and by ``get_many(...,
on_invalid="migrate")`` in batches of 100 (what ``results_map`` does), next to the two
floors: reading 2,000 valid records with ``get_many``, and rewriting all 2,000 with
``set(..., OVERWRITE)`` (what a recompute costs besides its compute). Best of three
rounds, the old records planted again before each. Writes the "upgrade" section of
BENCHMARKS.md; PostgreSQL as in ``bench/store.py`` (skipped when no server answers).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from pydantic import BaseModel, ConfigDict  # noqa: E402
from report import machine, table, write_section  # noqa: E402
from store import postgres_database  # noqa: E402

from results_flow import Record, ResultsManager, SetBehavior, register_model, upgrades  # noqa: E402
from results_flow.upgrade_store import upgrade_store  # noqa: E402

N = 2_000
BATCH = 100
ROUNDS = 3
NS = "bench_upgrade"


class MeasureV1(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: float
    label: str


@register_model(namespace=NS)
class Measure(BaseModel):
    points: int
    label: str
    unit: str


@upgrades(Measure)
def measure_from_v1(old: MeasureV1) -> Measure:
    return Measure(points=round(old.value * 100), label=old.label, unit="pt")


def ids(n: int) -> list[str]:
    return [f"bench/{i // 100:03d}/{i:05d}" for i in range(n)]


def plant(rm: ResultsManager, n: int) -> None:
    for i, rid in enumerate(ids(n)):
        data = json.dumps({"value": i / n, "label": f"item {i}"})
        rm.backend.upsert(rid, Record("Measure", NS, data))


def best(
    rm: ResultsManager, run: Callable[[], object], *, replant: bool, n: int, rounds: int
) -> float:
    times = []
    for _ in range(rounds):
        if replant:
            plant(rm, n)
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(rm: ResultsManager, n: int, rounds: int) -> list[float]:
    keys = ids(n)

    def migrate_batches() -> None:
        for start in range(0, n, BATCH):
            found = rm.get_many(keys[start : start + BATCH], Measure, on_invalid="migrate")
            assert len(found) == len(keys[start : start + BATCH])

    def bulk() -> None:
        report = upgrade_store(rm, "bench")
        assert len(report.converted) == n, report

    def read_valid() -> None:
        for start in range(0, n, BATCH):
            rm.get_many(keys[start : start + BATCH], Measure)

    new = [Measure(points=i, label=f"item {i}", unit="pt") for i in range(n)]

    def rewrite() -> None:
        for rid, value in zip(keys, new, strict=True):
            rm.set(rid, value, SetBehavior.OVERWRITE)

    timed = {"n": n, "rounds": rounds}
    return [
        best(rm, bulk, replant=True, **timed),
        best(rm, migrate_batches, replant=True, **timed),
        best(rm, read_valid, replant=False, **timed),  # valid after the upgrades above
        best(rm, rewrite, replant=False, **timed),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=N)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    n, rounds = args.records, args.rounds
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory(prefix="rf-bench-") as tmp, postgres_database() as pg:
        stores = {
            "file": f"file://{tmp}/files",
            "SQLite": f"sqlite:///{tmp}/results.db",
        }
        if pg is not None:
            stores["PostgreSQL"] = pg
        for name, url in stores.items():
            with ResultsManager.from_url(url) as rm:
                times = measure(rm, n, rounds)
            per = [f"{t:.2f} s ({t / n * 1e6:,.0f} µs/record)" for t in times]
            rows.append([name, *per, f"{times[0] / times[3]:.2f}x"])
            print(name, per, flush=True)
    body = "\n\n".join(
        [
            "## Upgrade a model: convert instead of recompute",
            f"{machine()}, load average {os.getloadavg()[0]:.1f} at the end. Command: "
            f"`.venv/bin/python bench/upgrade.py --records {n} --rounds {rounds}`.",
            f"{n:,} records stored in an older shape (two fields) brought to the current "
            "model (three) by a registered upgrade: `upgrade_store` (`results-flow upgrade`) "
            f'and `get_many(..., on_invalid="migrate")` in batches of {BATCH} (what '
            "`results_map` does); next to reading the upgraded records as they are, and "
            f"rewriting all {n:,} with `set(OVERWRITE)` (a recompute's writes, its compute "
            f"left out). Best of {rounds} rounds; the old records are planted again before "
            "each upgrade round. Each upgrade write is conditional (the record must be the "
            "one read: SQL reads the row FOR UPDATE in the write's transaction, the file "
            "store takes the ID's lock).",
            table(
                [
                    "store",
                    "upgrade_store",
                    "get_many migrate",
                    "get_many (valid)",
                    "set OVERWRITE",
                    "upgrade_store / set",
                ],
                rows,
            ),
        ]
    )
    write_section("upgrade", body)


if __name__ == "__main__":
    main()
