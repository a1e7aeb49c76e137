"""Per-item fill against Prefect's own cached task (issue 25).

Run with ``make bench`` (``.venv/bin/python bench/fill.py``); writes the "fill" section
of BENCHMARKS.md. N fresh tiny items, one task run per item (``task.map(range(N))``),
on ``ThreadPoolTaskRunner(max_workers=8)`` and on Prefect's default thread pool:

* results_flow: a ``@results_task`` storing each result in the SQLite store (the
  embedded default): lookup, per-ID lock, lookup, compute, durable write;
* Prefect: ``@task(cache_policy=INPUTS + TASK_SOURCE, persist_result=True)``, results
  persisted (pickled) in local files.

Each variant runs in a fresh worker process against a fresh Prefect test server and an
empty store; the variants alternate round by round (``--repeat``), and the best flow
time of each is kept. ``--profile`` instead profiles one process filling with
results_flow on one thread and prints where the time per item goes (cProfile).
"""

from __future__ import annotations

import argparse
import json
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
from prefect.cache_policies import INPUTS, TASK_SOURCE  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from results_flow.prefect import results_task  # noqa: E402

ITEMS = 2_000
THREADS = 8
RUNNERS = ("threads", "pool")
SUBJECTS = ("results_flow", "prefect")


class Tiny(BaseModel):
    item: int
    label: str


@results_task
def tiny(item: int) -> Tiny:
    return Tiny(item=item, label=f"item-{item}")


@task(cache_policy=INPUTS + TASK_SOURCE, persist_result=True)
def tiny_prefect(item: int) -> Tiny:
    return Tiny(item=item, label=f"item-{item}")


def fill(subject: str, runner: str, n: int) -> int:
    options: dict[str, Any] = {"name": "bench-fill"}
    if runner == "threads":
        options["task_runner"] = ThreadPoolTaskRunner(max_workers=THREADS)
    body = tiny if subject == "results_flow" else tiny_prefect

    def run(n: int) -> int:
        return len(body.map(range(n)).result())

    return int(flow(**options)(run)(n))


def worker(subject: str, runner: str, n: int) -> None:
    started = time.perf_counter()
    done = fill(subject, runner, n)
    seconds = time.perf_counter() - started
    if done != n:
        raise SystemExit(f"{subject} on {runner} filled {done} of {n}")
    print(json.dumps({"flow": seconds}))


def run_variant(subject: str, runner: str, n: int, base: Path) -> dict[str, float]:
    """One fill in a fresh worker, server, store and Prefect result folder."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    folder = Path(tempfile.mkdtemp(dir=base))
    env = {
        **os.environ,
        "RESULTS_FLOW_STORE": f"sqlite:///{folder / 'results.db'}",
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(folder / "prefect-results"),
        "PYTHONPATH": str(ROOT),
    }
    with prefect_test_harness(server_startup_timeout=300):
        env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, __file__, "--worker", subject, runner, "--n", str(n)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        process = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{subject} on {runner} failed:\n{done.stderr[-3000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "process": process}


def profile(n: int) -> None:
    """cProfile of ``n`` items filled by results_flow on one thread (in this process)."""
    import cProfile
    import pstats

    from prefect.testing.utilities import prefect_test_harness

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["RESULTS_FLOW_STORE"] = f"sqlite:///{Path(tmp) / 'results.db'}"
        with prefect_test_harness(server_startup_timeout=300):
            options = {"name": "bench-fill-profile", "task_runner": ThreadPoolTaskRunner(1)}

            def run(items: range) -> None:
                for item in items:
                    tiny(item)

            flow(**options)(run)(range(20))  # warm up: server, store, imports
            profiler = cProfile.Profile()
            profiler.enable()
            flow(**options)(run)(range(1000, 1000 + n))
            profiler.disable()
    stats = pstats.Stats(profiler)
    print(f"per item, cumulative ms (cProfile, {n} items, load {os.getloadavg()[0]:.1f}):")
    for label, seconds in where_the_time_goes(stats).items():
        print(f"  {label:60s} {seconds / n * 1000:8.2f}")
    if os.environ.get("RF_BENCH_PROFILE_TOP"):
        stats.sort_stats("cumulative").print_stats(60)


#: (label, end of the file name, function name): the steps of one item, measured as the
#: cumulative time of the function that runs each.
STEPS = (
    ("the whole call (ResultsTask.__call__)", "prefect/decorator.py", "__call__"),
    ("Prefect's task engine (run_task_sync)", "prefect/task_engine.py", "run_task_sync"),
    ("  results_flow's task body (compute-once)", "prefect/decorator.py", "run"),
    ("    result ID (ResultKeeper.call)", "prefect/runtime.py", "call"),
    ("    lookups (ResultKeeper.lookup)", "prefect/runtime.py", "lookup"),
    ("    per-ID lock, take and release (sqlite_id_lock)", "backends/locks.py", "sqlite_id_lock"),
    ("    save (ResultKeeper.save)", "prefect/runtime.py", "save"),
    ("      encode (codec.encode)", "results_flow/codec.py", "encode"),
    ("      durable write (write_record)", "results_flow/write_policy.py", "write_record"),
    ("    Prefect state (settled_state)", "prefect/runtime.py", "settled_state"),
    ("  Prefect state changes (set_state)", "prefect/task_engine.py", "set_state"),
    (
        "  Prefect events (emit_task_run_state_change_event)",
        "engine/__init__.py",
        "emit_task_run_state_change_event",
    ),
    ("the result out of the state (unwrap_state)", "prefect/decorator.py", "unwrap_state"),
)


def where_the_time_goes(stats: Any) -> dict[str, float]:
    """Cumulative seconds of each of ``STEPS`` in ``stats`` (pstats)."""
    found = dict.fromkeys((label for label, _, _ in STEPS), 0.0)
    for (path, _, function), (_, _, _, cumulative, _) in stats.stats.items():
        for label, suffix, name in STEPS:
            if function == name and path.endswith(suffix):
                found[label] += cumulative
    return found


def main(n: int, repeat: int, runners: list[str], write: bool) -> None:
    from report import machine, table, write_section

    loads = [os.getloadavg()]
    best: dict[tuple[str, str], dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="rf-bench-fill-") as tmp:
        for _ in range(repeat):
            for runner in runners:
                for subject in SUBJECTS:
                    got = run_variant(subject, runner, n, Path(tmp))
                    print(f"{subject} on {runner}: {json.dumps(got)}", flush=True)
                    key = (subject, runner)
                    if key not in best or got["flow"] < best[key]["flow"]:
                        best[key] = got
                    loads.append(os.getloadavg())
    names = {"threads": f"{THREADS} threads", "pool": "Prefect's default thread pool"}
    rows = []
    for runner in runners:
        ours, theirs = best[("results_flow", runner)], best[("prefect", runner)]
        ratio = ours["flow"] / theirs["flow"]
        rows.append(
            [
                names[runner],
                f"{ours['flow']:.1f} s / {ours['process']:.1f} s",
                f"{theirs['flow']:.1f} s / {theirs['process']:.1f} s",
                f"**{ratio:.2f}x**",
                "met" if ratio <= 0.9 else "NOT met",
            ]
        )
    load = ", ".join(f"{x[0]:.1f}" for x in loads)
    body = "\n\n".join(
        [
            "## Per-item fill against Prefect's own cached task",
            f"{machine()}, 2 CPUs, 1-minute load average before and after each run: "
            f"{load}. Command: `.venv/bin/python bench/fill.py --n {n} --repeat {repeat}`. "
            f"{n:,} fresh tiny items, one task run per item (`task.map(range({n}))`); "
            "results_flow: `@results_task` into the SQLite store (the embedded default); "
            "Prefect: `@task(cache_policy=INPUTS + TASK_SOURCE, persist_result=True)` with "
            "results pickled into local files. Each run in a fresh worker process against "
            f"a fresh Prefect test server and an empty store; best of {repeat} alternating "
            "runs.",
            table(
                [
                    "task runner",
                    "results_flow: flow / process",
                    "Prefect cached task: flow / process",
                    "results_flow / Prefect (flow)",
                    "aim <= 0.9x (issue 25)",
                ],
                rows,
            ),
            "Why the aim is missed (or met by a hair): both sides are Prefect task runs, and "
            "Prefect's engine is most of each. Sampled with py-spy 0.4 (`py-spy record -r "
            "400`, 1,000 items on Prefect's default pool, one run each, 2026-12-07 14:05 "
            "UTC; the sampler slowed both runs about 3x, so read shares, not times): of "
            "the task-run threads' samples, results_flow's whole task body "
            "(lookup, lock, lookup under it, the work, encode, the durable write, the "
            "state) was 18%, of which waiting for the group commit that holds the item 8% "
            "and the two lookups 4%; Prefect's engine the rest: sending the run's state "
            "events (a lock in its events queue) 74%, creating the run and setting its "
            "states. Prefect's cached task spent its samples in its own cache key instead "
            "(hashing the inputs and the task's source: 83%, waiting on Python's import "
            "lock). So even a task body of zero cost would leave results_flow at about "
            "0.8x; the one durable commit per item, which Prefect's local result files do "
            "not pay (no fsync), is most of what remains. Runs minutes apart move the "
            "ratio by 0.1 either way (2026-12-07 on a quiet machine: 1,000 items 0.88x on 8 "
            "threads and 0.97x on the default pool; 2,000 items 1.00x and 0.91x, then 0.91x "
            "and 1.03x).",
        ]
    )
    print(body)
    if write:
        write_section("fill", body)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=2, metavar=("SUBJECT", "RUNNER"))
    parser.add_argument("--n", type=int, default=ITEMS)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--runners", nargs="+", choices=RUNNERS, default=list(RUNNERS))
    parser.add_argument("--profile", action="store_true", help="profile results_flow's path")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], args.n)
    elif args.profile:
        profile(args.n)
    else:
        main(args.n, args.repeat, args.runners, not args.no_write)
