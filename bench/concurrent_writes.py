"""Concurrent durable writes: ``set`` throughput at 1, 8 and 32 threads of one process,
results_flow's SQLite and PostgreSQL stores side by side with the raw drivers at the
same durability (issue 25: group commit).

Run with ``make bench`` (``.venv/bin/python bench/concurrent_writes.py``); writes the
"concurrent-writes" section of BENCHMARKS.md. Each cell: durable writes per second,
the best of ``--repeat`` rounds, each round writing ``--writes`` fresh IDs split evenly
over the threads, the subjects taking turns round by round.

* results_flow: ``ResultsManager.set`` (``RAISE_IF_EXISTS``) of a fresh ID on one
  manager shared by the threads; a write returns once the commit holding it is done
  (writers that commit at the same moment share it: ``backends/sql/group_commit.py``).
* raw sqlite3: a connection per thread, WAL and ``synchronous=FULL`` as the store uses,
  INSERT + COMMIT per write (SQLite's busy handler makes the threads take turns).
* raw psycopg: a connection per thread, INSERT ... ON CONFLICT DO NOTHING + commit per
  write (the server's own WAL flush may serve several at once).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from report import machine, table, write_section
from store import PG_SERVER, Sample, postgres_database, samples

from results_flow import ResultsManager
from results_flow.backends.sql.engine import SQLITE_PRAGMAS

THREADS = (1, 8, 32)
COMMAND = "make bench  (= .venv/bin/python bench/concurrent_writes.py)"

#: A subject: given a round's IDs and models, returns a write function for one ID.
Writer = Callable[[str, Sample], None]


class Ours:
    name = "results_flow"

    def __init__(self, url: str) -> None:
        self.rm = ResultsManager.from_url(url)

    def writer(self) -> Writer:
        return lambda rid, model: self.rm.set(rid, model) and None

    def close(self) -> None:
        self.rm.close()


class RawSqlite:
    name = "raw sqlite3"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.local = threading.local()
        self.opened: list[sqlite3.Connection] = []
        conn = self._conn()
        conn.execute("CREATE TABLE IF NOT EXISTS raw_results (id TEXT PRIMARY KEY, data TEXT)")

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self.local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=60, isolation_level=None, check_same_thread=False
            )
            for name, value in SQLITE_PRAGMAS.items():
                conn.execute(f"PRAGMA {name} = {value}")
            self.local.conn = conn
            self.opened.append(conn)
        return conn

    def writer(self) -> Writer:
        def write(rid: str, model: Sample) -> None:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO raw_results VALUES (?, ?)", (rid, model.model_dump_json()))
            conn.execute("COMMIT")

        return write

    def close(self) -> None:
        for conn in self.opened:
            conn.close()


class RawPostgres:
    name = "raw psycopg"

    def __init__(self, url: str) -> None:
        import psycopg

        self.url = url
        self.local = threading.local()
        self.opened: list[psycopg.Connection] = []
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS raw_results (id text PRIMARY KEY, data jsonb)")

    def writer(self) -> Writer:
        import psycopg

        # A connection per thread of this run only: the last run's threads are gone, and
        # their connections (1 + 8 + 32 a round) would pile up past max_connections.
        self.close()
        self.local = threading.local()

        def write(rid: str, model: Sample) -> None:
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = psycopg.connect(self.url)
                self.opened.append(conn)
            with conn.transaction():
                conn.execute(
                    "INSERT INTO raw_results (id, data) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    (rid, model.model_dump_json()),
                )

        return write

    def close(self) -> None:
        for conn in self.opened:
            conn.close()
        self.opened.clear()


def rate(subject: Ours | RawSqlite | RawPostgres, threads: int, prefix: str, writes: int) -> float:
    """Durable writes per second of ``writes`` fresh IDs over ``threads`` threads."""
    models = samples(writes)
    ids = [f"{prefix}/t{threads}/{i:06d}" for i in range(writes)]
    write = subject.writer()
    per_thread = [list(range(t, writes, threads)) for t in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        warm = [f"{prefix}/warm{threads}/{i}" for i in range(threads * 2)]
        list(pool.map(lambda rid: write(rid, models[0]), warm))
        start = time.perf_counter()
        list(pool.map(lambda idx: [write(ids[i], models[i]) for i in idx], per_thread))
        elapsed = time.perf_counter() - start
    return writes / elapsed


def measure(
    make: list[Callable[[], Ours | RawSqlite | RawPostgres]], writes: int, repeat: int
) -> dict[str, dict[int, float]]:
    subjects = [m() for m in make]
    best: dict[str, dict[int, float]] = {s.name: dict.fromkeys(THREADS, 0.0) for s in subjects}
    try:
        for round_ in range(repeat):
            for threads in THREADS:
                for subject in subjects:
                    got = rate(subject, threads, f"r{round_}", writes)
                    best[subject.name][threads] = max(best[subject.name][threads], got)
    finally:
        for subject in subjects:
            subject.close()
    return best


@contextlib.contextmanager
def sqlite_synchronous(level: str) -> Iterator[None]:
    """Stores opened inside use ``PRAGMA synchronous = level`` (the profile's fsync-free
    rows; the store itself always uses FULL)."""
    kept = SQLITE_PRAGMAS["synchronous"]
    SQLITE_PRAGMAS["synchronous"] = level
    try:
        yield
    finally:
        SQLITE_PRAGMAS["synchronous"] = kept


def profile_row(root: Path, threads: int, synchronous: str, writes: int) -> dict[str, Any]:
    """Where a SQLite ``set`` goes at ``threads`` writers: its rate, its CPU time (the
    process's, both cores) per write, and the mean batch of the group commit."""
    # Each thread opens its connection when it first writes: the level holds throughout.
    with sqlite_synchronous(synchronous):
        ours = Ours(f"sqlite:///{root / f'profile-{threads}-{synchronous}.db'}")
        group = ours.rm.backend._rows._group  # type: ignore[attr-defined]
        commit, batches = group.commit, []

        def counted(writes_: Any) -> Any:
            batches.append(len(writes_))
            return commit(writes_)

        group.commit = counted
        try:
            rate(ours, threads, "warm", threads * 4)
            batches.clear()
            cpu = time.process_time()
            got = rate(ours, threads, "profile", writes)
            cpu_per_write = (time.process_time() - cpu) / writes
        finally:
            ours.close()
    return {
        "threads": threads,
        "synchronous": synchronous.upper(),
        "rate": got,
        "cpu_us": cpu_per_write * 1e6,
        "batch": writes / len(batches),
    }


def profile_cells(row: dict[str, Any]) -> list[object]:
    return [
        row["threads"],
        row["synchronous"],
        f"{row['rate']:,.0f}/s",
        f"{1e6 / row['rate']:.0f} us",
        f"{row['cpu_us']:.0f} us",
        f"{row['batch']:.1f}",
    ]


def why_missed(profile: list[dict[str, Any]]) -> str:
    """What the profile says of the 32-writer aim, in its own figures."""
    row = {(r["threads"], r["synchronous"]): r for r in profile}
    one, one_off = row[(1, "FULL")], row[(1, "OFF")]
    many, many_off = row[(32, "FULL")], row[(32, "OFF")]
    needed = 1e6 / one["rate"] / 5
    return (
        f"What bounds 32 writers: not the disk. With fsync they write {many['rate']:,.0f}/s, "
        f"without it {many_off['rate']:,.0f}/s: group commit already shares one fsync "
        f"among a batch of about {many['batch']:.0f}. The CPU does: a lone writer spends "
        f"{one_off['cpu_us']:.0f} us of CPU per write when it does not fsync, 32 writers "
        f"{many_off['cpu_us']:.0f} us, the GIL handed among 32 threads on 2 cores at every "
        "`sqlite3` call and every wake-up (wrapped and timed once, 2026-12-07: at a batch "
        "of 16 the leader's BEGIN IMMEDIATE and COMMIT each waited about 0.3 ms for it). "
        f"5x one writer ({1e6 / one['rate']:.0f} us a write) needs {needed:.0f} us a write "
        "at 32 threads: less than a lone writer's own CPU without fsync, so no batching "
        "reaches it while a write costs this much Python (the ID, dump and validate-back, "
        "the envelope and its metadata JSON, the plan). Where fsync is slow, the same code "
        "reaches it: 7.5x and 12.4x (fsync 5-30 ms, load 12-15, 2026-12-07 05:00)."
    )


def load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=1_600, help="writes per round and cell")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (best kept)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    load_before = load()
    results: dict[str, dict[str, dict[int, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        results["SQLite"] = measure(
            [lambda: Ours(f"sqlite:///{root / 'ours.db'}"), lambda: RawSqlite(root / "raw.db")],
            args.writes,
            args.repeat,
        )
        profile_raw = [
            profile_row(root, threads, synchronous, args.writes)
            for threads in (1, 32)
            for synchronous in ("full", "off")
        ]
    with postgres_database() as pg_url:
        if pg_url is not None:
            results["PostgreSQL"] = measure(
                [lambda: Ours(pg_url), lambda: RawPostgres(pg_url)], args.writes, args.repeat
            )
    rows = []
    for database, subjects in results.items():
        for name, by_threads in subjects.items():
            one = by_threads[1]
            cells = [f"{by_threads[t]:,.0f}/s ({by_threads[t] / one:.1f}x)" for t in THREADS]
            rows.append([database, name, *cells])
    sqlite_gain = results["SQLite"]["results_flow"][32] / results["SQLite"]["results_flow"][1]
    aims = [
        [
            "32 concurrent durable writers on SQLite vs one",
            f"{sqlite_gain:.1f}x the rate",
            ">= 5x",
            "met" if sqlite_gain >= 5 else "NOT met",
        ]
    ]
    for database, subjects in results.items():
        raw = next(name for name in subjects if name != "results_flow")
        ratios = [subjects["results_flow"][t] / subjects[raw][t] for t in THREADS]
        aims.append(
            [
                f"{database}: results_flow rate / {raw} rate at "
                + ", ".join(str(t) for t in THREADS)
                + " threads",
                " / ".join(f"{r:.2f}x" for r in ratios),
                "(no aim)",
                "",
            ]
        )
    body = "\n\n".join(
        [
            "## Concurrent durable writes: set throughput at 1, 8 and 32 threads",
            f"{machine()}, 2 CPUs, load average {load_before} at the start, {load()} at "
            f"the end. Command: `{COMMAND}`. PostgreSQL: {PG_SERVER} (loopback TCP).",
            f"Each cell: durable writes per second (best of {args.repeat} rounds of "
            f"{args.writes:,} fresh IDs split over the threads), and in brackets the rate "
            "against the same subject on one thread. results_flow: `ResultsManager.set` "
            "on one manager shared by the threads; raw: a connection per thread, one "
            "INSERT and one COMMIT per write, WAL and `synchronous=FULL` on SQLite as the "
            "store uses.",
            table(["database", "writer", *(f"{t} threads" for t in THREADS)], rows),
            table(["aim (issue 25)", "measured", "target", "verdict"], aims),
            "Where a SQLite `set` goes (the same run, results_flow only, one round each; "
            "CPU is the process's time over both cores per write; batch: writes per group "
            "commit; OFF: the same store without fsync, to show the CPU bound):",
            table(
                ["threads", "synchronous", "rate", "wall per write", "CPU per write", "batch"],
                [profile_cells(row) for row in profile_raw],
            ),
            why_missed(profile_raw),
            "How it works and what moves these figures: the writes of one process that commit at "
            "the same moment share one transaction (`backends/sql/group_commit.py`): one writer "
            "leads a batch of every write queued while the previous commit ran, and each write "
            "returns once the commit holding it is durable. So the gain of many writers over one "
            "is about (fsync time + CPU per write) / (CPU per write): on a slow, contended disk "
            "(fsync 5-30 ms, load 12-15, 2026-12-07 05:00) 32 writers ran at 7.5x and 12.4x one "
            "writer; with a fast fsync the CPU per write bounds it, as the profile above shows. "
            "Raw sqlite3 threads take turns in SQLite's busy handler and lose rate as they are "
            "added. One writer pays 2.6 us more CPU than before (a no-op commit through the "
            "group, measured with timeit); the one-thread column moves with the disk between "
            "rounds (an interleaved single-writer loop put `set` at 0.75x-0.89x the raw rate on "
            "both this branch and main, minutes apart). PostgreSQL commits up to "
            "`PG_GROUP_COMMIT_LANES` (8) batches at once, each on a pooled connection: the server"
            " already flushes concurrent commits together, and one batch at a time ran 32 writers"
            " at a third of raw psycopg's rate (its round trips then ran one after another); raw "
            "psycopg uses 32 connections, the store at most 8 for writes. Rerun on a quiet "
            "machine for steady figures (the one above: load in its first line).",
        ]
    )
    print(body)
    if not args.no_write:
        write_section("concurrent-writes", body)


if __name__ == "__main__":
    main()
