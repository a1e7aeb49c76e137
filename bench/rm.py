"""Batched ``rm`` of 2,000 records side by side with one-at-a-time deletes (issue 23 item 2).

Per store (SQLite, file, PostgreSQL when reachable), in one process, rounds alternating
which goes first, each on a freshly filled store of the same 2,000 records:

- one at a time: ``manager.delete(id)`` for every ID (a durable transaction each);
- ``delete_many``: ``manager.delete_many(ids)`` (one statement per batch on SQL stores);
- ``rm`` by filter: what ``results-flow rm --task T --yes`` runs: the plan
  (``find`` through the indexed columns) and ``delete_planned`` (read again, then
  ``delete_many`` per 1,000).

Then the command line itself on SQLite: one ``results-flow rm ID --yes`` process (the
per-ID cost of the issue's 28 minutes) against one ``results-flow rm --task T --yes``
for all 2,000. Writes its section of BENCHMARKS.md.

    python bench/rm.py [--records 2000] [--rounds 3] [--pg postgresql://...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import machine, table, write_section
from results_flow import (
    FileBackend,
    Record,
    ResultsManager,
    SqliteBackend,
    cleanup,
)
from results_flow.backends.sql.store import SqlBackend
from results_flow.finding import record_query

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
TABLE = "bench_rm_records"


def record(i: int) -> Record:
    metadata = {
        "flow_name": "daily",
        "task_name": "score",
        "flow_run_id": f"run-{i % 10}",
        "task_run_id": None,
        "parameters": {"n": i},
        "version": "v1",
    }
    return Record("Score", "bench", f'{{"value": {i}}}', metadata=metadata)


def ids_of(count: int) -> list[str]:
    return [f"daily/score/{i:05d}" for i in range(count)]


def fill(manager: ResultsManager, count: int) -> None:
    for i, result_id in enumerate(ids_of(count)):
        manager.backend.upsert(result_id, record(i))


def one_at_a_time(manager: ResultsManager, count: int) -> int:
    return sum(manager.delete(result_id) for result_id in ids_of(count))


def delete_many(manager: ResultsManager, count: int) -> int:
    return manager.delete_many(ids_of(count))


def rm_by_filter(manager: ResultsManager, count: int) -> int:
    plan = cleanup.plan_delete(manager, query=record_query(task="score"))
    return cleanup.delete_planned(manager, plan).deleted


WAYS: dict[str, Callable[[ResultsManager, int], int]] = {
    "one at a time (delete per ID)": one_at_a_time,
    "delete_many": delete_many,
    "rm by filter (plan + delete_planned)": rm_by_filter,
}


def measure(manager: ResultsManager, count: int, rounds: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in WAYS}
    names = list(WAYS)
    for round_ in range(rounds):
        order = names if round_ % 2 == 0 else names[::-1]
        for name in order:
            fill(manager, count)
            start = time.perf_counter()
            deleted = WAYS[name](manager, count)
            times[name].append(time.perf_counter() - start)
            if deleted != count:
                raise SystemExit(f"{name} deleted {deleted} of {count} in {manager!r}")
    return {name: statistics.median(values) for name, values in times.items()}


def cli_seconds(url: str, count: int, repeats: int) -> tuple[float, float]:
    """One ``rm ID`` process (median of ``repeats``) and one ``rm --task`` of ``count``."""
    command = [sys.executable, "-m", "results_flow.cli"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    with ResultsManager.from_url(url) as manager:
        fill(manager, count)
    single = []
    for result_id in ids_of(count)[:repeats]:
        start = time.perf_counter()
        subprocess.run(
            [*command, "rm", result_id, "--yes", "--store", url],
            check=True,
            env=env,
            capture_output=True,
        )
        single.append(time.perf_counter() - start)
    with ResultsManager.from_url(url) as manager:
        fill(manager, count)
    start = time.perf_counter()
    done = subprocess.run(
        [*command, "rm", "--task", "score", "--yes", "--store", url],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    batched = time.perf_counter() - start
    if f"deleted {count} result(s)" not in done.stdout:
        raise SystemExit(f"rm --task did not delete {count}: {done.stdout} {done.stderr}")
    return statistics.median(single), batched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg", default=PG_URL, help="PostgreSQL URL ('' to skip)")
    args = parser.parse_args()
    count = args.records
    folder = Path(tempfile.mkdtemp(prefix="bench-rm-"))
    stores: dict[str, Callable[[], ResultsManager]] = {
        "SQLite": lambda: ResultsManager(backend=SqliteBackend(folder / "r.db")),
        "file": lambda: ResultsManager(backend=FileBackend(folder / "files")),
    }
    if args.pg:
        stores["PostgreSQL"] = lambda: ResultsManager(backend=SqlBackend(args.pg, table=TABLE))
    rows = []
    for name, opener in stores.items():
        try:
            manager = opener()
        except Exception as exc:  # noqa: BLE001 - a store this machine lacks is left out
            print(f"{name}: skipped ({exc})")
            continue
        with manager:
            timing = measure(manager, count, args.rounds)
            if isinstance(manager.backend, SqlBackend) and name == "PostgreSQL":
                manager.backend.table.drop(manager.backend.engine)
        one = timing["one at a time (delete per ID)"]
        for way, seconds in timing.items():
            rows.append(
                [
                    name,
                    way,
                    f"{seconds:.3f} s",
                    f"{seconds / count * 1e6:,.0f} µs",
                    f"{one / seconds:.1f}x",
                ]
            )
        print(name, {k: round(v, 3) for k, v in timing.items()})
    single, batched = cli_seconds(f"sqlite:///{folder / 'cli.db'}", count, repeats=5)
    print(f"CLI: one rm ID process {single:.3f} s; rm --task for {count}: {batched:.3f} s")
    minutes = single * count / 60
    body = "\n\n".join(
        [
            "## rm: batched deletes against one at a time (issue 23 item 2)",
            f"{machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the "
            f"end (a shared machine: absolute times move with it, the ratios less). "
            f"Command: `python bench/rm.py` ({count:,} "
            f"records, median of {args.rounds} rounds, the order alternating; each way on a "
            "freshly filled store).",
            f"{count:,} records of one task. *one at a time* calls `ResultsManager.delete` per "
            "ID (its own durable transaction, or a locked unlink on the file store); "
            "*delete_many* deletes in batches (one `DELETE ... WHERE id IN (batch)` per up to "
            "30,000 IDs in one transaction on SQL stores; the file store keeps a locked unlink "
            "per ID); *rm by filter* is what `results-flow rm --task score --yes` runs: the "
            "plan (an indexed `find`), then per 1,000 IDs a read that keeps records updated "
            "since the plan, and `delete_many`. Ratio: one-at-a-time time / this way's time "
            "(higher is faster).",
            table(["store", "way", "total", "per record", "vs one at a time"], rows),
            "The file store has no batch delete: both ways unlink each record under its ID's "
            "lock, so its rows differ by the disk's noise only (a profile on this machine: "
            "the unlink itself is the time); its gain is on the command line, one process "
            "instead of one per ID. *rm by filter* also reads the records back before it "
            "deletes them.",
            "The command line on SQLite, as a user runs it: one `results-flow rm ID --yes` "
            f"process took {single:.2f} s (median of 5: interpreter start, imports, opening "
            f"the store), so {count:,} IDs one per call would take about {minutes:.0f} minutes; "
            f"one `results-flow rm --task score --yes` deleting all {count:,} took "
            f"{batched:.2f} s ({single * count / batched:,.0f}x less).",
        ]
    )
    write_section("rm", body)


if __name__ == "__main__":
    main()
