"""Resume benchmark: rerun a fan-out of N items that are all stored already.

Run with ``.venv/bin/python bench/resume.py`` (N = 2,000 and 10,000; ``--sizes`` to
change). Writes the "resume" section of BENCHMARKS.md.

Three ways of rerunning the same flow over ``range(N)``, each in a fresh worker process
against one Prefect test server, on the same machine in the same run:

* (a) ``results_map(score, range(N))``: one ``get_many`` on the store, nothing submitted.
* (b) ``score.map(range(N))`` with the plain ``results_task`` decorator: N task runs,
  each reading its result from the store and completing as "Cached".
* (c) Prefect's native cache: ``@task(cache_policy=INPUTS, persist_result=True)``,
  results persisted (pickled) in local files, N task runs that each hit the cache.

All three stores are filled before the timed reruns: results_flow's SQLite store with
``ResultsManager.set`` under the IDs ``result_id_for`` gives in the flow, Prefect's
local result storage through ``prefect.results.ResultStore`` under the keys the
INPUTS policy computes. Every rerun checks that no task body ran. "Flow" is the time
of the flow call in the worker; "process" adds the worker's interpreter start, imports
and exit (where Prefect flushes its events). The baseline is one ``get_many`` of the N
results with the plain ``ResultsManager``.

``--chunked`` runs the other benchmark of this file (the "chunked" section): a fill of
2,000 fresh items of about 5 ms of work each (``time.sleep(0.005)``: waiting, so the
shared machine's two cores are not what is measured), with ``results_map`` sending one
task run per item and with ``chunk_size=100``, on a pool of 8 threads, on Prefect's
default thread pool (no bound of its own; ``results_map`` keeps ``MAP_MAX_IN_FLIGHT``
runs in flight) and on a 2-process local Dask cluster (prefect-dask, one thread per
worker). Each variant runs in
a fresh worker process, against a fresh Prefect test server and a fresh SQLite store,
and checks that it computed every item. ``--runners threads pool`` reruns only those;
the other rows keep their last timings from ``bench/chunked_timings.json`` (the Dask
one-run-per-item fill takes half an hour on a loaded machine), and the section says so.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from prefect import flow, task  # noqa: E402
from prefect.cache_policies import INPUTS  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from results_flow import ResultsManager, register_model  # noqa: E402
from results_flow.prefect import result_id_for, results_map, results_task  # noqa: E402

FLOW_NAME = "bench-resume"
SIZES = (2_000, 10_000)
FRESH_ITEMS = 2_000
CHUNK_SIZE = 100
THREADS = 8
WORK_SECONDS = 0.005
RUNNERS = ("threads", "pool", "dask")
FILL_VARIANTS = tuple(f"{runner}{kind}" for runner in RUNNERS for kind in ("", "-chunked"))
#: The last timings of every fill variant, so that ``--runners`` reruns only some of them.
CHUNKED_TIMINGS = ROOT / "bench" / "chunked_timings.json"


@register_model(namespace="bench")
class Score(BaseModel):
    item: int
    value: float
    label: str


def compute(item: int) -> Score:
    bodies_file = os.environ.get("RF_BENCH_BODIES")
    if bodies_file:
        with open(bodies_file, "a") as handle:
            handle.write(f"{item}\n")
    return Score(item=item, value=item * 0.5, label=f"item-{item}")


@results_task
def score(item: int) -> Score:
    return compute(item)


#: When each item's work ran in this process (item, start, end), and when the flow body
#: ran: where a fill's time goes (threads only; on Dask the items run elsewhere).
ITEM_TIMES: list[tuple[int, float, float]] = []
BODY_TIMES: list[float] = []


@results_task
def work(item: int) -> Score:
    start = time.perf_counter()
    time.sleep(WORK_SECONDS)
    ITEM_TIMES.append((item, start, time.perf_counter()))
    return Score(item=item, value=item * 0.5, label=f"item-{item}")


def fill(n: int, chunk_size: int | None) -> int:
    """Compute N fresh items with results_map; how many it computed."""
    BODY_TIMES.append(time.perf_counter())
    computed = results_map(work, range(n), chunk_size=chunk_size).computed
    BODY_TIMES.append(time.perf_counter())
    return computed


def fill_phases(started: float, chunk_size: int | None) -> dict[str, float]:
    """Seconds from the flow call's start: the flow body's start and end, the first item's
    start and the last item's end, and the mean span of a chunk (first item's start to
    last item's end), from this process's records (none on Dask)."""
    if len(BODY_TIMES) != 2 or not ITEM_TIMES:
        return {}
    phases = {
        "body_start": BODY_TIMES[0] - started,
        "body_end": BODY_TIMES[1] - started,
        "first_item": min(start for _, start, _ in ITEM_TIMES) - started,
        "last_item": max(end for _, _, end in ITEM_TIMES) - started,
    }
    if chunk_size:
        spans: dict[int, list[float]] = {}
        for item, start, end in ITEM_TIMES:
            span = spans.setdefault(item // chunk_size, [start, end])
            span[0], span[1] = min(span[0], start), max(span[1], end)
        phases["chunk_mean"] = sum(end - start for start, end in spans.values()) / len(spans)
    return phases


def fill_flow(variant: str) -> Any:
    """The flow of one fill variant: on 8 threads, Prefect's default thread pool, or a
    2-process Dask cluster."""
    options: dict[str, Any] = {"name": f"{FLOW_NAME}-fill"}
    if variant.startswith("threads"):
        options["task_runner"] = ThreadPoolTaskRunner(max_workers=THREADS)
    elif variant.startswith("dask"):
        from prefect_dask import DaskTaskRunner

        options["task_runner"] = DaskTaskRunner(
            cluster_kwargs={
                "n_workers": 2,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,
            }
        )
    return flow(**options)(fill)


@task(cache_policy=INPUTS, persist_result=True)
def native_score(item: int) -> Score:
    return compute(item)


@flow(name=FLOW_NAME)
def resume_batch(n: int) -> float:
    report = results_map(score, range(n))
    return report.seconds


@flow(name=FLOW_NAME)
def resume_plain(n: int) -> int:
    return len(score.map(range(n)).result())


@flow(name=FLOW_NAME)
def resume_native(n: int) -> int:
    return len(native_score.map(range(n)).result())


@flow(name=FLOW_NAME)
def empty_run(n: int) -> int:
    return n


@flow(name=FLOW_NAME)
def result_ids(n: int) -> list[str]:
    return [result_id_for(score, i) for i in range(n)]


def fill_stores(n: int, store_url: str, native_dir: Path) -> list[str]:
    """Store N results for (a)/(b) and N Prefect cache records for (c)."""
    from prefect.filesystems import LocalFileSystem
    from prefect.results import ResultStore

    ids = result_ids(n)
    rm = ResultsManager.from_url(store_url)
    for i, rid in enumerate(ids):
        rm.set(rid, Score(item=i, value=i * 0.5, label=f"item-{i}"))
    native = ResultStore(result_storage=LocalFileSystem(basepath=str(native_dir)))
    for i in range(n):
        key = INPUTS.compute_key(task_ctx=None, inputs={"item": i}, flow_parameters={})  # type: ignore[arg-type]
        native.persist_result_record(
            native.create_result_record(Score(item=i, value=i * 0.5, label=f"item-{i}"), key=key)
        )
    return ids


def batch_read_seconds(store_url: str, ids: list[str]) -> float:
    """The best of three plain ``get_many`` reads of every stored result."""
    rm = ResultsManager.from_url(store_url)
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        found = rm.get_many(ids, Score)
        best = min(best, time.perf_counter() - started)
    if len(found) != len(ids):
        raise SystemExit(f"baseline read {len(found)} of {len(ids)} results")
    return best


def run_variant(variant: str, n: int, env: dict[str, str], bodies: Path) -> dict[str, float]:
    """Run one rerun in a fresh worker process; its flow time, helper time and process time."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--variant", variant, "--n", str(n)],
        env={**env, "RF_BENCH_BODIES": str(bodies)},
        capture_output=True,
        text=True,
        check=False,
    )
    process = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"variant {variant} failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    ran = len(bodies.read_text().splitlines()) if bodies.exists() else 0
    if ran:
        raise SystemExit(f"variant {variant} ran {ran} task bodies; the stores were not hit")
    return {**out, "process": process}


def worker(variant: str, n: int) -> None:
    """The child side: run the flow once (or the cold read) and print its timings."""
    if variant.startswith("fill-"):
        name = variant.removeprefix("fill-")
        chunk_size = CHUNK_SIZE if name.endswith("chunked") else None
        started = time.perf_counter()
        computed = fill_flow(name)(n, chunk_size)
        seconds = time.perf_counter() - started
        if computed != n:
            raise SystemExit(f"fill {name} computed {computed} of {n} items")
        phases = fill_phases(started, chunk_size)
        print(json.dumps({"flow": seconds, "helper": seconds, **phases}))
        return
    if variant == "read":
        ids = json.loads(Path(os.environ["RF_BENCH_IDS"]).read_text())
        started = time.perf_counter()
        found = ResultsManager.from_url(os.environ["RESULTS_FLOW_STORE"]).get_many(ids, Score)
        seconds = time.perf_counter() - started
        if len(found) != n:
            raise SystemExit(f"cold read found {len(found)} of {n} results")
        print(json.dumps({"flow": seconds, "helper": seconds}))
        return
    flows = {
        "empty": empty_run,
        "batch": resume_batch,
        "plain": resume_plain,
        "native": resume_native,
    }
    started = time.perf_counter()
    value = flows[variant](n)
    seconds = time.perf_counter() - started
    helper = float(value) if variant == "batch" else seconds
    print(json.dumps({"flow": seconds, "helper": helper}))


def measure(n: int, base: Path) -> list[str]:
    """Fill the stores for N items, time every rerun, and return the table row.

    Each flow variant gets a fresh Prefect test server: a server still digesting the
    events of 10,000 task runs slows (or refuses) whatever runs next.
    """
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    native_dir = base / "prefect-results"
    store_url = f"sqlite:///{base / 'store' / 'results.db'}"
    env = {
        **os.environ,
        "RESULTS_FLOW_STORE": store_url,
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(native_dir),
        "PYTHONPATH": str(ROOT),
        "RF_BENCH_IDS": str(base / "ids.json"),
    }
    os.environ["RESULTS_FLOW_STORE"] = store_url
    with prefect_test_harness(server_startup_timeout=120):
        ids = fill_stores(n, store_url, native_dir)
    (base / "ids.json").write_text(json.dumps(ids))
    warm = batch_read_seconds(store_url, ids)
    timings = {"read": run_variant("read", n, env, base / "read.bodies")}
    for variant in ("empty", "batch", "plain", "native"):
        with prefect_test_harness(server_startup_timeout=120):
            env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
            timings[variant] = run_variant(variant, n, env, base / f"{variant}.bodies")
    cold, empty, a, b, c = (timings[v] for v in ("read", "empty", "batch", "plain", "native"))
    print(f"N={n}: warm read {warm:.3f}s, {json.dumps(timings)}", flush=True)
    fixed = empty["flow"]
    beyond_fixed = (
        f"{(c['flow'] - fixed) / (a['flow'] - fixed):.0f}x" if a["flow"] > fixed else "n/a"
    )
    return [
        f"{n:,}",
        f"{warm * 1000:.0f} / {cold['helper'] * 1000:.0f} ms",
        f"{a['helper'] * 1000:.0f} ms",
        f"{fixed:.2f} s",
        f"{a['flow']:.2f} s / {a['process']:.1f} s",
        f"{b['flow']:.2f} s / {b['process']:.1f} s",
        f"{c['flow']:.2f} s / {c['process']:.1f} s",
        f"**{c['flow'] / a['flow']:.0f}x** / {beyond_fixed}",
        f"**{a['helper'] / cold['helper']:.1f}x** / {a['helper'] / warm:.1f}x",
        f"**{c['flow'] / b['flow']:.2f}x**",
    ]


def measure_fills(n: int, base: Path, variants: list[str]) -> dict[str, dict[str, float]]:
    """Time each fill variant in a fresh worker, server and store."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    timings = {}
    for variant in variants:
        store_url = f"sqlite:///{base / variant / 'results.db'}"
        env = {**os.environ, "RESULTS_FLOW_STORE": store_url, "PYTHONPATH": str(ROOT)}
        with prefect_test_harness(server_startup_timeout=120):
            env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
            timings[variant] = run_variant(f"fill-{variant}", n, env, base / "none.bodies")
        print(f"fill {variant}: {json.dumps(timings[variant])}", flush=True)
    return timings


def main_chunked(n: int, runners: list[str]) -> None:
    """Time the fills of ``runners`` and write the section; the other runners' rows come
    from ``CHUNKED_TIMINGS`` (the Dask one-run-per-item fill takes half an hour)."""
    from report import machine

    variants = [f"{runner}{kind}" for runner in runners for kind in ("", "-chunked")]
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="rf-bench-chunked-") as tmp:
        timings = measure_fills(n, Path(tmp), variants)
    loads.append(os.getloadavg()[0])
    load = f"{min(loads):.1f} at the start or end, {max(loads):.1f} at most"
    kept = json.loads(CHUNKED_TIMINGS.read_text()) if CHUNKED_TIMINGS.exists() else {}
    measured = f"{machine()}, load average {load}"
    kept.update({v: {**timings[v], "n": n, "measured": measured} for v in variants})
    CHUNKED_TIMINGS.write_text(json.dumps(kept, indent=1) + "\n")
    missing = [v for v in FILL_VARIANTS if kept.get(v, {}).get("n") != n]
    if missing:
        raise SystemExit(f"no timings of {missing} for {n} items: run them (--runners)")
    write_chunked(n, kept, measured, earlier=sorted(set(RUNNERS) - set(runners)))


def write_chunked(
    n: int, timings: dict[str, dict[str, Any]], measured: str, earlier: list[str]
) -> None:
    """Write the "chunked" section from the fills' timings (``earlier``: runners whose rows
    were not rerun this time)."""
    from report import table, write_section

    from results_flow.settings import MAP_MAX_IN_FLIGHT

    names = {
        "threads": f"{THREADS} threads",
        "pool": f"Prefect's default thread pool ({MAP_MAX_IN_FLIGHT} runs in flight)",
        "dask": "Dask, 2 worker processes",
    }
    rows = []
    for runner in RUNNERS:
        one, chunked = timings[runner], timings[f"{runner}-chunked"]
        speedup = one["flow"] / chunked["flow"]
        aim = 20 if runner == "dask" else 8
        rows.append(
            [
                names[runner],
                f"{one['flow']:.1f} s / {one['process']:.1f} s",
                f"{chunked['flow']:.1f} s / {chunked['process']:.1f} s",
                f"**{speedup:.1f}x**",
                "met" if speedup >= 5 else "NOT met",
                f">= {aim}x: " + ("met" if speedup >= aim else "NOT met"),
            ]
        )
    fastest_one = min(timings[r]["flow"] for r in ("threads", "pool"))
    fastest_chunked = min(timings[f"{r}-chunked"]["flow"] for r in ("threads", "pool"))
    fair = fastest_one / fastest_chunked
    body = "\n\n".join(
        [
            "## Fill a fan-out of fresh items: one task run per item or per chunk",
            f"{measured}. Command: `.venv/bin/python bench/resume.py --chunked"
            f"{' --runners ' + ' '.join(r for r in RUNNERS if r not in earlier) if earlier else ''}"
            f"`. {n:,} fresh items, each "
            f"`time.sleep({WORK_SECONDS})` then stored in the "
            f"SQLite store (the embedded default); `results_map(work, range({n}))` against "
            f"`results_map(work, range({n}), chunk_size={CHUNK_SIZE})`; each variant in a "
            "fresh worker process against a fresh Prefect test server and an empty store; "
            "every item computed in every variant.",
            table(
                [
                    "task runner",
                    "one task run per item: flow / process",
                    f"chunks of {CHUNK_SIZE}: flow / process",
                    "speed-up (flow)",
                    "aim >= 5x (issue 9)",
                    "aim (issue 25)",
                ],
                rows,
            ),
            *(
                f"Not rerun: the {names[runner]} row, measured {timings[runner]['measured']} "
                f"(kept in `bench/{CHUNKED_TIMINGS.name}`)."
                for runner in earlier
            ),
            f"On threads, the fastest one-run-per-item fill against the fastest chunked "
            f"fill, whichever pool each used: **{fair:.1f}x** "
            f"({'met' if fair >= 5 else 'NOT met'} for issue 9's 5x; "
            f"{'met' if fair >= 8 else 'NOT met'} for issue 25's 8x). Since issue 25 the "
            "writers of a process that commit at the same moment share one commit (group "
            "commit), so the chunks' items no longer take turns on one fsync each.",
            f"Threads: `ThreadPoolTaskRunner(max_workers={THREADS})`. Prefect's default "
            "pool (`ThreadPoolTaskRunner()`) has no bound of its own; `results_map` keeps "
            f"at most `max_in_flight` runs unfinished (default {MAP_MAX_IN_FLIGHT}). Before "
            "that bound, one run per item started 2,000 threads at once and a third or more "
            "of their SQLite writes gave up with `StoreBusyError`. Dask: `DaskTaskRunner` "
            "on a local cluster of 2 worker processes, 1 thread each.",
            "Flow: the flow call inside the worker (for Dask, starting the local cluster "
            "included). Process: the worker's whole life, with interpreter start, imports "
            "and the flush of Prefect's events at exit.",
            *chunked_phases(n, timings),
            "Where the chunked time went on threads before group commit (issue 25; cProfile "
            "of a chunk on one thread, "
            "about 2.9 ms per item without the 5 ms of work, load about 6): the durable "
            "SQLite commit of each item, about 70% (`synchronous=full`, one fsync per "
            "item, and this process's writers take turns on it), then the encoding, the "
            "ID, one lookup under the lock and the lock itself (0.05 ms: one byte of one "
            "kept-open lock file; a lock file opened, flocked and closed per ID cost about "
            "1 ms at that load). Each item keeps its commit, lock and lookup: it is stored "
            "under its own ID the moment it is computed, and racing workers compute it "
            "once. A chunk no longer looks an item up before locking it (results_map sent "
            "it because it was missing) nor builds a Prefect state per item. Chunking "
            "removes the Prefect task-run overhead (here, per item, "
            f"{(timings['pool']['flow'] - timings['pool-chunked']['flow']) / n * 1000:.0f} ms "
            "of flow time on the default pool and "
            f"{(timings['dask']['flow'] - timings['dask-chunked']['flow']) / n * 1000:.0f} ms "
            "on Dask), not the store's serial commits, which bound the speed-up on threads; "
            "and the load moves the two sides differently (one run per item is CPU-bound, "
            "a chunked fill commit-bound), so the ratio on threads moves with it. The "
            "machine's load moves these figures by 2x or more between runs; the ratios "
            "compare runs made minutes apart.",
        ]
    )
    write_section("chunked", body)
    print(body)


def chunked_phases(n: int, timings: dict[str, dict[str, Any]]) -> list[str]:
    """Where the chunked fill on 8 threads spent its time, and the least time any chunked
    fill of this shape could take (a paragraph; none without the phases recorded)."""
    chunked, per_item = timings.get("threads-chunked", {}), timings.get("threads", {})
    if "chunk_mean" not in chunked or "flow" not in per_item:
        return []
    chunks = math.ceil(n / CHUNK_SIZE)
    rounds = math.ceil(chunks / THREADS)
    before, after = chunked["body_start"], chunked["flow"] - chunked["body_end"]
    floor = before + after + rounds * CHUNK_SIZE * WORK_SECONDS
    return [
        f"Where the chunked fill's time went on 8 threads (this run; `ITEM_TIMES` in "
        f"bench/resume.py records each item's work): of its {chunked['flow']:.2f} s, "
        f"Prefect took {before:.2f} s before the flow body (the flow run) and "
        f"{after:.2f} s after it (the flow run's end); the first item started at "
        f"{chunked['first_item']:.2f} s (results_map's planning: one batch read of "
        f"{n:,} IDs); a chunk of {CHUNK_SIZE} items took {chunked['chunk_mean']:.2f} s "
        f"({CHUNK_SIZE} x {WORK_SECONDS * 1000:.0f} ms of work = "
        f"{CHUNK_SIZE * WORK_SECONDS:.2f} s; the rest: per item, the lock, the lookup "
        f"under it and the durable write, each waiting for the GIL among 8 threads and "
        f"Prefect's own), and {chunks} chunks on {THREADS} threads run in {rounds} "
        f"rounds. So no chunked fill of this shape can take less than {floor:.2f} s "
        f"(Prefect's part + {rounds} rounds of work with no overhead at all): "
        f"{per_item['flow'] / floor:.1f}x the one-run-per-item fill at best, under the "
        "8x aim whatever a chunk's own cost. Tried and reverted (2026-12-07): saving each "
        "item in a thread of its own while the chunk computes the next one: a chunk took "
        "0.68 s against 0.66 s without (the write's wall time is mostly the GIL, which "
        "the saving thread waits for as well).",
    ]


def main(sizes: list[int]) -> None:
    from report import machine, table, write_section

    with tempfile.TemporaryDirectory(prefix="rf-bench-resume-") as tmp:
        rows = [measure(n, Path(tmp) / str(n)) for n in sizes]
    body = "\n\n".join(
        [
            "## Resume a fan-out whose results are all stored",
            machine() + ". Command: `.venv/bin/python bench/resume.py`. SQLite store "
            "(the embedded default), default thread-pool task runner; each rerun in a "
            "fresh worker process against a fresh Prefect test server; no task body ran "
            "in any rerun.",
            table(
                [
                    "N",
                    "batch read: warm / cold",
                    "(a) results_map call",
                    "empty flow run",
                    "(a) batch helper: flow / process",
                    "(b) plain decorator: flow / process",
                    "(c) Prefect cache INPUTS: flow / process",
                    "c / a: flow / beyond an empty flow run",
                    "(a) call / batch read: cold / warm",
                    "c / b (flow)",
                ],
                rows,
            ),
            "Flow: the flow call inside the worker. Process: the worker's whole life "
            "(interpreter, imports, the flow, and the flush of Prefect's events at exit). "
            "Batch read: one `ResultsManager.get_many` of the N results, warm (store "
            "open, best of 3) / cold (a fresh process, opening the store included, like "
            "the helper). The results_map call is timed inside (a), cold. Empty flow "
            "run: the same flow doing nothing, the fixed cost every variant pays.",
            "Aims (issue 3): (a) at least 50x faster than (c) (c / a); (a) within 3x of "
            "one batch read ((a) call / read, cold / warm); (b) no slower than (c) "
            "(c / b at least 1).",
        ]
    )
    write_section("resume", body)
    print(body)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--variant",
        choices=[
            "read",
            "empty",
            "batch",
            "plain",
            "native",
            *(f"fill-{v}" for v in FILL_VARIANTS),
        ],
    )
    parser.add_argument("--chunked", action="store_true", help="the chunked-fill benchmark")
    parser.add_argument("--n", type=int, help=f"items (--chunked: default {FRESH_ITEMS:,})")
    parser.add_argument(
        "--runners",
        nargs="+",
        choices=RUNNERS,
        default=list(RUNNERS),
        help="--chunked: rerun only these runners; the others' rows keep their last timings",
    )
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    args = parser.parse_args()
    if args.variant:
        worker(args.variant, args.n)
        sys.stdout.flush()
    elif args.chunked:
        main_chunked(args.n or FRESH_ITEMS, args.runners)
    else:
        main(args.sizes)
