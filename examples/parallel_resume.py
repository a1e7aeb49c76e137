"""The main job: a parallel Prefect pipeline that resumes where it stopped.

Each of ``--items`` inputs (default 1,000) does a few milliseconds of real work: it
searches for a nonce whose SHA-256 starts with ``--difficulty`` zero bits, and returns
a Pydantic model. ``results_task`` stores each result under a readable ID
(``proofs/d12/item-00042``); ``results_map`` asks the store in one round trip which
inputs are done and submits only the others to the flow's task runner (a thread pool).

Stop it with Ctrl-C (or kill it) and run it again: only the missing items run::

    python examples/parallel_resume.py                   # the default store
    python examples/parallel_resume.py --items 5000 --store sqlite:///elsewhere.db

The store is ``--store URL``, else ``RESULTS_FLOW_STORE``, else the embedded SQLite
store ``./results_store/results.db``. Without ``PREFECT_API_URL`` Prefect starts a
temporary server for the run (about ten seconds).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shlex
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from prefect import flow
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogHandler
from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import unmapped
from pydantic import BaseModel

from results_flow import ResultsManager, register_model
from results_flow.prefect import ResultsTask, results_map, results_task
from results_flow.settings import default_store_url

# A thousand "Finished in state Completed" lines help nobody: task runs log warnings
# only (the Prefect UI still shows every task run and its state).
logging.getLogger("prefect.task_runs").setLevel(logging.WARNING)


@register_model
class Proof(BaseModel):
    """A nonce whose SHA-256 with the item starts with ``difficulty`` zero bits."""

    item: int
    difficulty: int
    nonce: int
    sha256: str


class RunSummary(BaseModel):
    """What one run of the pipeline did, and where its results are."""

    items: int
    computed: int
    reused: int
    store: str
    prefix: str
    seconds: float


def find_proof(item: int, difficulty: int) -> Proof:
    """Try nonces until ``sha256(f"{item}:{nonce}")`` starts with ``difficulty`` zero bits."""
    nonce = 0
    while True:
        digest = hashlib.sha256(f"{item}:{nonce}".encode()).digest()
        if int.from_bytes(digest, "big") >> (256 - difficulty) == 0:
            return Proof(item=item, difficulty=difficulty, nonce=nonce, sha256=digest.hex())
        nonce += 1


def proof_task(store: str) -> ResultsTask[[int, int], Proof]:
    """``find_proof`` as a Prefect task whose results live in ``store``, one ID per input."""
    return results_task(
        manager=store,
        id="proofs/d{difficulty}/item-{item:05d}",
        name="find-proof",
        retries=1,
    )(find_proof)


def run_pipeline(items: int, difficulty: int, store: str, progress: bool = True) -> RunSummary:
    """Compute the proofs of ``range(items)`` that ``store`` lacks and reuse the others.

    Call it inside a flow: the proofs run on that flow's task runner.
    """
    task = proof_task(store)
    inputs = list(range(items))
    done = results_map(task, inputs, difficulty=unmapped(difficulty), progress=progress)
    return RunSummary(
        items=items,
        computed=done.computed,
        reused=done.reused,
        store=store,
        prefix=f"proofs/d{difficulty}",
        seconds=round(done.seconds, 2),
    )


@flow(name="parallel-resume", task_runner=ThreadPoolTaskRunner(max_workers=8))
def parallel_resume(
    items: int = 1000, difficulty: int = 12, store: str | None = None, progress: bool = True
) -> RunSummary:
    """Find a proof for each of ``items`` inputs on a pool of threads, resuming."""
    return run_pipeline(items, difficulty, store or default_store_url(), progress)


def report(summary: RunSummary) -> str:
    """A few readable lines about a finished run."""
    return (
        f"{summary.items} results: {summary.computed} computed, {summary.reused} reused "
        f"from the store ({summary.seconds:.2f} s)\n"
        f"store: {where(summary.store)}\n"
        f"look:  {shlex.quote(cli_command())} ls {summary.prefix} "
        f"--store {shlex.quote(summary.store)}"
    )


def cli_command() -> str:
    """How to run ``results-flow`` as printed, from the working directory: its name when
    PATH finds the copy beside this Python (an activated venv), else that copy's path,
    relative when it lies below the working directory (``.venv/bin/results-flow`` under
    ``make demo``)."""
    beside = Path(sys.executable).absolute().parent / "results-flow"
    if not beside.exists():
        return "results-flow"
    on_path = shutil.which("results-flow")
    if on_path and Path(on_path).resolve() == beside.resolve():
        return "results-flow"
    try:
        return str(beside.relative_to(Path.cwd()))
    except ValueError:
        return str(beside)


def where(store: str) -> str:
    """The store URL, with the file it resolves to for a relative SQLite URL."""
    with ResultsManager.from_url(store) as manager:
        location = manager.backend.location
    path = location.removeprefix("sqlite:///")
    return f"{store} = {path}" if path != location and store != location else store


def stored_count(store: str, items: int, difficulty: int) -> int:
    """How many of the proofs of ``range(items)`` are in ``store``."""
    task = proof_task(store)
    with ResultsManager.from_url(store) as manager:
        return len(manager.exists_many([task.result_id(i, difficulty) for i in range(items)]))


# Prefect gives its temporary server 20 s to start; on a busy 2-core machine it takes
# 20-30 s and the run fails before it begins. Five minutes' patience costs nothing when
# the machine is idle. PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS overrides it.
STARTUP_TIMEOUT_SECONDS = 300


@contextmanager
def temporary_server() -> Iterator[None]:
    """Without PREFECT_API_URL, run the block against a temporary Prefect server that
    starts patiently and stops quietly, before the run's summary is printed.

    This is the server Prefect would start by itself, with two differences. Its startup
    timeout is STARTUP_TIMEOUT_SECONDS. Its output goes to ``temporary-server.log`` in
    PREFECT_HOME: when it stops while still recording the run's events, its services
    and SQLAlchemy's pool log tracebacks that are noise, not a failure of this run.
    """
    if PREFECT_API_URL.value():
        yield
        return
    timeout = int(
        os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", STARTUP_TIMEOUT_SECONDS)
    )
    server = SubprocessASGIServer()
    log = Path(PREFECT_HOME.value()) / "temporary-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as sink:
        # The server process inherits file descriptor 2 when it starts; ours comes back.
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            server.start(timeout=timeout)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield
        # Send the run's last logs and events while the server still listens. Not after
        # Ctrl-C: the terminal stopped the server too, and sending would retry for minutes.
        APILogHandler().flush()
        EventsWorker.drain_all()
    finally:
        server.stop()


class CtrlC:
    """What Ctrl-C does: stop the run, say how much is stored, exit 130, within seconds.

    A terminal's Ctrl-C also reaches the temporary server that Prefect starts when
    PREFECT_API_URL is unset (it shares our process group) and stops it; Prefect would
    then spend minutes retrying to send it the run's events. So ``grace`` seconds after
    Ctrl-C the process ends whatever Prefect is doing. The store needs no cleanup: as
    after a kill, every result it acknowledged is kept.
    """

    def __init__(self, store: str, items: int, difficulty: int, grace: float = 5.0) -> None:
        self.store, self.items, self.difficulty, self.grace = store, items, difficulty, grace
        self._lock = threading.Lock()
        self._reported = False

    def on_sigint(self, signum: int, frame: FrameType | None) -> None:
        timer = threading.Timer(self.grace, self._give_up)
        timer.daemon = True
        timer.start()
        raise KeyboardInterrupt

    def report(self) -> None:
        with self._lock:
            if self._reported:
                return
            self._reported = True
            done = stored_count(self.store, self.items, self.difficulty)
            print(
                f"\ninterrupted: {done} of {self.items} results are stored in {where(self.store)}"
            )
            print("run the same command again to compute only the missing ones", flush=True)

    def _give_up(self) -> None:
        self.report()
        os._exit(130)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1000, help="how many inputs (1000)")
    parser.add_argument("--difficulty", type=int, default=12, help="zero bits per proof (12)")
    parser.add_argument("--store", help=f"store URL (default: {default_store_url()})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    store = args.store or default_store_url()
    return run_interruptibly(
        lambda: parallel_resume(
            items=args.items, difficulty=args.difficulty, store=store, progress=not args.no_progress
        ),
        store,
        args.items,
        args.difficulty,
    )


def run_interruptibly(
    run: Callable[[], RunSummary], store: str, items: int, difficulty: int
) -> int:
    """Run a pipeline; on Ctrl-C say what is stored and exit 130, else print the summary."""
    ctrl_c = CtrlC(store, items, difficulty)
    signal.signal(signal.SIGINT, ctrl_c.on_sigint)
    try:
        with temporary_server():
            summary = run()
    except KeyboardInterrupt:
        ctrl_c.report()
        return 130
    print(report(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
