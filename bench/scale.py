"""Scale benchmark: how each operation's cost and memory grow with the store's size.

Stores holding 10k, 100k and 1M records on SQLite and PostgreSQL, and 10k and 100k on
the file store, each measured through ``ResultsManager``: ``set``, ``get``,
``get_many(1,000)``, ``exists_many(10,000)``, ``list_ids(prefix)`` for a prefix holding
1,000 IDs, a full listing, and the peak Python memory of each (tracemalloc). Then
``results_map`` planning over 100k stored items (building 100k IDs and one batch read,
inside a real flow run, flow start excluded) on SQLite and PostgreSQL.

Stores are filled in bulk (one multi-row INSERT per 10,000 rows, or files written
without fsync): filling is not what is measured. Each size grows the same store.

Run with ``make bench`` or ``.venv/bin/python bench/scale.py [--sizes 10000,100000]``.
Writes the "scale" section of BENCHMARKS.md and ``bench/scale.png``.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import random
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from report import machine, table, write_section

from results_flow import ResultsManager
from results_flow.backends.file.store import FileBackend
from results_flow.backends.sql.store import SqlBackend
from results_flow.records import Record

PG_SERVER = os.environ.get("RESULTS_FLOW_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
COMMAND = ".venv/bin/python bench/scale.py  (part of make bench)"
SQL_SIZES = (10_000, 100_000, 1_000_000)
FILE_SIZES = (10_000, 100_000)
#: IDs per folder segment: ``list_ids("scale/g0001")`` finds this many.
GROUP = 1_000
PLAN_ITEMS = 100_000
FILL_BATCH = 10_000
OPS = ("set", "get", "get_many(1k)", "exists_many(10k)", "list_ids(prefix 1k)", "list_ids(all)")
HERE = Path(__file__).resolve().parent


class Point(BaseModel):
    """A small result, as in bench/store.py."""

    name: str
    value: float
    count: int
    tags: list[str]


def result_id(i: int) -> str:
    return f"scale/g{i // GROUP:04d}/item-{i:07d}"


def record(i: int) -> Record:
    now = datetime.now(UTC)
    data = Point(name=f"p{i}", value=i / 3, count=i, tags=["a", "b"]).model_dump_json()
    return Record(
        model_type="Point",
        namespace="default",
        data=data,
        metadata={},
        created_at=now,
        updated_at=now,
    )


def fill(
    manager: ResultsManager, start: int, stop: int, id_of: Callable[[int], str] = result_id
) -> None:
    """Put records ``start..stop`` into the store the fastest way its backend allows."""
    backend = manager.backend
    if isinstance(backend, SqlBackend):
        from results_flow.backends.sql.statements import row_values

        insert = sa.insert(backend.table)
        for low in range(start, stop, FILL_BATCH):
            rows = [
                row_values(id_of(i), record(i)) for i in range(low, min(stop, low + FILL_BATCH))
            ]
            with backend.engine.begin() as conn:
                conn.execute(insert, rows)
    elif isinstance(backend, FileBackend):
        for i in range(start, stop):
            path = backend.path_for(id_of(i))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(record(i).to_document())
    else:
        raise TypeError(f"no bulk fill for {type(backend).__name__}")


def per_call(work: Callable[[], Any], calls: int) -> float:
    """Seconds per call, the best of three rounds of ``calls`` calls."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(calls):
            work()
        best = min(best, (time.perf_counter() - started) / calls)
    return best


def peak_memory(work: Callable[[], Any]) -> int:
    """Peak bytes Python allocated while ``work`` ran once."""
    gc.collect()
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def measure(
    manager: ResultsManager, size: int, fresh: Iterator[int]
) -> dict[str, tuple[float, int]]:
    """Each operation's time per call and peak memory on a store of ``size`` records."""
    rng = random.Random(size)
    picks = [result_id(rng.randrange(size)) for _ in range(1_000)]
    many = [result_id(rng.randrange(size)) for _ in range(1_000)]
    # Distinct IDs, about half of them stored, whatever the store's size.
    probe = [result_id(i) for i in rng.sample(range(2 * size), min(10_000, 2 * size))]
    prefix = f"scale/g{rng.randrange(size // GROUP):04d}"
    point = Point(name="new", value=1.0, count=1, tags=[])
    cycle = itertools.cycle(picks)

    ops: dict[str, tuple[Callable[[], Any], int]] = {
        "set": (lambda: manager.set(f"fresh/{size}/{next(fresh)}", point), 100),
        "get": (lambda: manager.get(next(cycle), Point), 500),
        "get_many(1k)": (lambda: manager.get_many(many, Point), 5),
        "exists_many(10k)": (lambda: manager.exists_many(probe), 3),
        "list_ids(prefix 1k)": (lambda: manager.list_ids(prefix), 10),
        "list_ids(all)": (lambda: manager.list_ids(), 1),
    }
    return {name: (per_call(work, calls), peak_memory(work)) for name, (work, calls) in ops.items()}


@contextmanager
def postgres_url() -> Iterator[str | None]:
    name = f"rf_scale_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(
        PG_SERVER.replace("postgresql://", "postgresql+psycopg://") + "/postgres",
        isolation_level="AUTOCOMMIT",
    )
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        print(f"PostgreSQL skipped: {exc}".splitlines()[0], file=sys.stderr)
        yield None
        return
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def plan_seconds(url: str, items: int = PLAN_ITEMS) -> float:
    """``results_map`` over ``items`` inputs whose results are all stored: the call's own
    time (IDs, one batch read, nothing submitted), flow start excluded. Also prints,
    from the same flow run, the ID building and the batch read on their own."""
    from prefect import flow

    from results_flow.prefect import result_id_for, results_map, results_task

    manager = ResultsManager.from_url(url)

    def point(i: int) -> Point:
        return Point(name=f"p{i}", value=i / 3, count=i, tags=["a", "b"])

    task = results_task(manager=manager, id="plan/g{i}", name="point")(point)
    fill(manager, 0, items, id_of=lambda i: f"plan/g{i}")

    @flow(name="scale-plan")
    def plan() -> tuple[float, float, float, float]:
        cpu = time.process_time()
        done = results_map(task, range(items))
        cpu = time.process_time() - cpu
        if done.computed:
            raise RuntimeError(f"planning bench computed {done.computed} items")
        started = time.perf_counter()
        ids = [result_id_for(task, i) for i in range(items)]
        built = time.perf_counter() - started
        started = time.perf_counter()
        manager.get_many(ids, Point)
        return done.seconds, cpu, built, time.perf_counter() - started

    seconds, cpu, built, read = plan()
    print(
        f"planning {items:,} on {manager.backend.location}: results_map {seconds:.2f} s "
        f"(process CPU {cpu:.2f} s, which a loaded machine inflates less); "
        f"in the same flow run, {items:,} result_id_for {built:.2f} s, one get_many "
        f"{read:.2f} s; load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    manager.close()
    return seconds


def plan_only(items: int) -> None:
    """Only the planning runs, printed, BENCHMARKS.md left alone (for development)."""
    with tempfile.TemporaryDirectory(prefix="rf-plan-") as tmp, postgres_url() as pg:
        plan_seconds(f"sqlite:///{tmp}/plan.db", items)
        if pg is not None:
            plan_seconds(pg, items)


def run(sizes_sql: tuple[int, ...], sizes_file: tuple[int, ...], plan: bool) -> None:
    results: dict[str, dict[int, dict[str, tuple[float, int]]]] = {}
    fresh = iter(range(10**9))
    with tempfile.TemporaryDirectory(prefix="rf-scale-") as tmp, postgres_url() as pg:
        stores = {"SQLite": (f"sqlite:///{tmp}/scale.db", sizes_sql)}
        if pg is not None:
            stores["PostgreSQL"] = (pg, sizes_sql)
        stores["file"] = (f"{tmp}/files", sizes_file)
        for store, (url, sizes) in stores.items():
            manager = ResultsManager.from_url(url)
            filled = 0
            for size in sizes:
                started = time.perf_counter()
                fill(manager, filled, size)
                filled = size
                print(
                    f"{store}: filled to {size:,} in {time.perf_counter() - started:.0f}s",
                    flush=True,
                )
                results.setdefault(store, {})[size] = measure(manager, size, fresh)
                print(f"  {results[store][size]}", flush=True)
            manager.close()
        plans = {}
        if plan:
            plans["SQLite"] = plan_seconds(f"sqlite:///{tmp}/plan.db")
            if pg is not None:
                plans["PostgreSQL"] = plan_seconds(pg)
    report(results, plans)


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} µs" if seconds < 0.01 else f"{seconds * 1e3:,.1f} ms"


def mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n / 2**10:,.0f} KiB"


def report(
    results: dict[str, dict[int, dict[str, tuple[float, int]]]], plans: dict[str, float]
) -> None:
    rows = []
    for store, by_size in results.items():
        for size, ops in by_size.items():
            rows.append(
                [store, f"{size:,}", *(f"{us(t)} / {mib(m)}" for t, m in (ops[o] for o in OPS))]
            )
    aims = []
    for store, by_size in results.items():
        small, large = min(by_size), max(by_size)
        for op in ("get", "list_ids(prefix 1k)"):
            ratio = by_size[large][op][0] / by_size[small][op][0]
            aims.append(
                [
                    f"{store} `{op}` at {large:,} vs {small:,}",
                    f"{ratio:.2f}x",
                    "<= 2x",
                    "met" if ratio <= 2 else "NOT met",
                ]
            )
        for op in OPS[:-1]:
            grow = by_size[large][op][1] / max(by_size[small][op][1], 1)
            aims.append(
                [
                    f"{store} `{op}` peak memory at {large:,} vs {small:,}",
                    f"{grow:.2f}x",
                    "no growth (<= 1.5x)",
                    "met" if grow <= 1.5 else "NOT met",
                ]
            )
    for store, seconds in plans.items():
        aims.append(
            [
                f"{store} `results_map` planning, {PLAN_ITEMS:,} stored items",
                f"{seconds:.2f} s",
                "< 5 s",
                "met" if seconds < 5 else "NOT met",
            ]
        )
    plot(results)
    body = "\n\n".join(
        [
            "## Scale: cost against store size",
            f"{machine()}, {os.cpu_count()} CPUs, load average "
            f"{os.getloadavg()[0]:.1f} at the end. Command: `{COMMAND}`.",
            "Each cell: time per call (best of 3 rounds) / peak Python memory of one call "
            "(tracemalloc). IDs are `scale/gNNNN/item-NNNNNNN`, 1,000 per folder segment; "
            "`set` is a durable RAISE_IF_EXISTS insert of a new ID; `get` reads random stored IDs; "
            "`exists_many` asks for 10,000 IDs of which about half exist.",
            table(["store", "records", *OPS], rows),
            table(["aim", "measured", "target", "verdict"], aims),
            "![cost against store size](bench/scale.png)",
        ]
    )
    print(body)
    write_section("scale", body)


def plot(results: dict[str, dict[int, dict[str, tuple[float, int]]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 7), constrained_layout=True)
    for ax, op in zip(axes.flat, OPS, strict=True):
        for store, by_size in results.items():
            sizes = sorted(by_size)
            ax.plot(sizes, [by_size[s][op][0] * 1e3 for s in sizes], marker="o", label=store)
        ax.set(
            title=op,
            xscale="log",
            yscale="log",
            xlabel="records in the store",
            ylabel="ms per call",
        )
        ax.grid(True, which="both", alpha=0.3)
    axes.flat[0].legend()
    fig.savefig(HERE / "scale.png", dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", help="SQL store sizes, comma-separated (default 10k,100k,1M)")
    parser.add_argument("--file-sizes", help="file store sizes (default 10k,100k)")
    parser.add_argument("--no-plan", action="store_true", help="skip the results_map planning run")
    parser.add_argument(
        "--plan-only",
        type=int,
        metavar="ITEMS",
        help="only time results_map planning over ITEMS stored items; print, write nothing",
    )
    args = parser.parse_args()
    sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else SQL_SIZES
    files = tuple(int(s) for s in args.file_sizes.split(",")) if args.file_sizes else FILE_SIZES
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    if args.plan_only:
        plan_only(args.plan_only)
        return
    run(sizes, files, not args.no_plan)


if __name__ == "__main__":
    main()
