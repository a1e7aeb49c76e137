"""Tasks and a worker process for the PostgreSQL production tests.

``python -m tests.backends.pg_workers GO_FILE SEED [THREADS]`` waits for ``GO_FILE``,
then in each of THREADS threads (1 by default) asks ``square`` for every ID of ``IDS`` in
a seeded order; the store is ``RESULTS_FLOW_STORE`` and each body run appends one line
to ``RF_PG_CALLS``.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydantic import BaseModel

from results_flow import SetBehavior
from results_flow.prefect import results_task

IDS = list(range(200))


class Square(BaseModel):
    n: int
    square: int
    pid: int


def record_call(line: str) -> None:
    """One line per body run, appended atomically by any thread or process."""
    fd = os.open(os.environ["RF_PG_CALLS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


@results_task
def square(n: int) -> Square:
    """results_task defaults: default store, lock on, SKIP_IF_EXISTS."""
    record_call(str(n))
    time.sleep(float(os.environ.get("RF_PG_SLEEP", "0")))
    return Square(n=n, square=n * n, pid=os.getpid())


#: For the lock-loss tests: the body signals ``started`` and waits for ``proceed``.
started = threading.Event()
proceed = threading.Event()


def _held_body(n: int, writer: str) -> Square:
    if writer == "first":
        started.set()
        proceed.wait(120)
    return Square(n=n, square=n * n, pid=0 if writer == "first" else 1)


# The same body with the default behavior (SKIP_IF_EXISTS) and with OVERWRITE; the
# writer is left out of the ID, so both writers compute the same ID.
@results_task(ignore=["writer"])
def held_square(n: int, writer: str) -> Square:
    return _held_body(n, writer)


@results_task(ignore=["writer"], behavior=SetBehavior.OVERWRITE)
def held_overwrite(n: int, writer: str) -> Square:
    return _held_body(n, writer)


def ask_all(seed: int) -> list[Square]:
    """Ask for every ID, in a seeded order; the results in ID order."""
    order = list(IDS)
    random.Random(seed).shuffle(order)
    found = {n: square.fn(n) for n in order}
    return [found[n] for n in IDS]


if __name__ == "__main__":
    go, seed = Path(sys.argv[1]), int(sys.argv[2])
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    while not go.exists():
        time.sleep(0.01)
    with ThreadPoolExecutor(threads) as pool:
        answers = pool.map(ask_all, range(seed * 1000, seed * 1000 + threads))
        results = [r for answer in answers for r in answer]
    bad = [r.n for r in results if r.square != r.n * r.n]
    print(f"{len(results)} results, {len(bad)} wrong")
    sys.exit(1 if bad else 0)
