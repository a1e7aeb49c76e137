"""The parallel_resume pipeline on a Dask cluster, over a shared PostgreSQL store.

The flow and its task are those of ``parallel_resume.py``; only the task runner
changes: prefect-dask's ``DaskTaskRunner`` with a local cluster of ``--workers``
worker processes, or an existing cluster given by ``--address``. Every worker
writes its results straight into the PostgreSQL store, so a run that dies resumes
from whatever any worker stored::

    python examples/distributed.py postgresql://postgres@127.0.0.1:5432/results
    python examples/distributed.py postgresql://db.internal/results --address tcp://scheduler:8786
    python examples/distributed.py --store s3://my-bucket/results   # or gs://, az://

The workers of an existing cluster need results_flow (with its ``postgres`` or ``s3``
extra) and this folder's ``parallel_resume.py`` importable, and must reach the store;
an object store's credentials come from each worker's own environment.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# This file is named like the ``distributed`` package that Dask is made of. Whenever
# this folder is on sys.path (run as a script, or after Prefect loaded a sibling
# example by its path) the file would shadow that package: take the folder off, and
# put the repository root on for ``examples.parallel_resume`` (Dask's local worker
# processes inherit sys.path). Prefect deployments name this flow by module:
# ``examples.distributed.distributed_resume``.
EXAMPLES = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != EXAMPLES]
if str(EXAMPLES.parent) not in sys.path:
    sys.path.insert(0, str(EXAMPLES.parent))
if __name__ == "__main__":
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # not 80 lines of news

from prefect import flow, get_client  # noqa: E402
from prefect_dask import DaskTaskRunner  # noqa: E402

from examples.parallel_resume import (  # noqa: E402
    RunSummary,
    run_interruptibly,
    run_pipeline,
)


def dask_runner(address: str | None = None, workers: int = 2) -> DaskTaskRunner:
    """A runner on the cluster at ``address``, else on a local cluster of processes."""
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": workers,
            "threads_per_worker": 1,  # the work holds the GIL: one thread per process
            "processes": True,
            "dashboard_address": ":0",
        }
    )


@flow(name="distributed-resume", task_runner=dask_runner())
def distributed_resume(
    store: str, items: int = 1000, difficulty: int = 12, progress: bool = True
) -> RunSummary:
    """Find a proof for each of ``items`` inputs on Dask workers, resuming from ``store``."""
    # The workers report their task runs to this flow run's Prefect API; without
    # PREFECT_API_URL each worker process would start a temporary server of its own.
    with get_client(sync_client=True) as client:
        os.environ.setdefault("PREFECT_API_URL", str(client.api_url))
    return run_pipeline(items, difficulty, store, progress)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "store_arg",
        nargs="?",
        metavar="store",
        help="store URL shared by every worker, e.g. postgresql://... or s3://bucket/prefix",
    )
    parser.add_argument("--store", help="the same, as an option")
    parser.add_argument("--items", type=int, default=1000, help="how many inputs (1000)")
    parser.add_argument("--difficulty", type=int, default=12, help="zero bits per proof (12)")
    parser.add_argument("--workers", type=int, default=2, help="local worker processes (2)")
    parser.add_argument("--address", help="scheduler of an existing Dask cluster")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if (args.store is None) == (args.store_arg is None):
        parser.error("give the store URL once: as the argument or as --store")
    args.store = args.store or args.store_arg
    run = distributed_resume.with_options(task_runner=dask_runner(args.address, args.workers))
    return run_interruptibly(
        lambda: run(args.store, args.items, args.difficulty, not args.no_progress),
        args.store,
        args.items,
        args.difficulty,
    )


if __name__ == "__main__":
    sys.exit(main())
