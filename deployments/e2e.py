"""End to end on a real Prefect server: deploy the example, run it through a worker,
find its results in the store.

Steps: start ``prefect server start`` on a free loopback port (SQLite, in a throwaway
PREFECT_HOME; ``--server-database`` points it at PostgreSQL instead), create a
``process`` work pool, ``prefect deploy --all`` of ``deployments/prefect.yaml``, run
the ``parallel-resume`` deployment with parameters (``run_deployment``), start
``prefect worker start --run-once``, wait for the flow run, then check that every
result is in the store given as a parameter. The server and the worker are stopped
(their whole process groups) however it ends::

    python deployments/e2e.py                       # make deploy-e2e
    python deployments/e2e.py --items 200 --store sqlite:////tmp/e2e.db
    python deployments/e2e.py --server-database postgresql+asyncpg://postgres@127.0.0.1/prefect

Exit status 0 when the results landed; 1 (with the server and worker logs) otherwise.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx

ROOT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).with_name("prefect"))
POOL = "results-flow"
DEPLOYMENT = "parallel-resume/parallel-resume"


class E2EError(RuntimeError):
    """A step of the end-to-end run failed; the message says which and why."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def service(
    args: list[str], env: Mapping[str, str], log: IO[str]
) -> Iterator[subprocess.Popen[str]]:
    """A long-running process in its own session, its whole group stopped on exit."""
    process = subprocess.Popen(
        args,
        cwd=ROOT,
        env=dict(env),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue


def wait_healthy(api_url: str, server: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise E2EError(f"prefect server exited with status {server.returncode}")
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise E2EError(f"prefect server did not answer {api_url}/health within {timeout:.0f} s")


def prefect_cli(*args: str, env: Mapping[str, str]) -> str:
    done = subprocess.run(
        [PREFECT, *args], cwd=ROOT, env=dict(env), capture_output=True, text=True, timeout=180
    )
    if done.returncode != 0:
        raise E2EError(f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def run_e2e(store: str, items: int, difficulty: int, server_database: str | None) -> int:
    """Run every step; the number of results the deployment's run stored.

    Raises:
        E2EError: a step failed or timed out.
    """
    started = time.monotonic()

    def step(what: str, detail: str) -> None:
        print(f"{time.monotonic() - started:6.1f}s  {what:<8} {detail}", flush=True)

    with tempfile.TemporaryDirectory(prefix="results-flow-e2e-") as tmp:
        port = free_port()
        api_url = f"http://127.0.0.1:{port}/api"
        env = {
            **os.environ,
            "PREFECT_HOME": str(Path(tmp) / "prefect-home"),
            "PREFECT_API_URL": api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
        }
        server_env = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
        if server_database:
            server_env["PREFECT_API_DATABASE_CONNECTION_URL"] = server_database
        server_log = Path(tmp) / "server.log"
        worker_log = Path(tmp) / "worker.log"
        try:
            with (
                server_log.open("w") as slog,
                service(
                    [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                    server_env,
                    slog,
                ) as server,
            ):
                wait_healthy(api_url, server, timeout=90)
                step("server", f"{api_url} ({server_database or 'SQLite in PREFECT_HOME'})")

                prefect_cli("work-pool", "create", POOL, "--type", "process", env=env)
                step("pool", f"{POOL} (process)")

                prefect_cli(
                    "--no-prompt", "deploy", "--prefect-file", "deployments/prefect.yaml", "--all",
                    env=env,
                )  # fmt: skip
                step("deploy", "every deployment of deployments/prefect.yaml")

                parameters = {
                    "items": items, "difficulty": difficulty, "store": store, "progress": False
                }  # fmt: skip
                flow_run_id = trigger(api_url, parameters)
                step("run", f"flow run {flow_run_id} with {parameters}")

                with (
                    worker_log.open("w") as wlog,
                    service([PREFECT, "worker", "start", "--pool", POOL, "--run-once"], env, wlog),
                ):
                    state = wait_for_run(api_url, flow_run_id, timeout=180)
                step("worker", f"ran it: {state}")
                if state != "Completed":
                    raise E2EError(f"the flow run ended {state}")
        except E2EError:
            for log in (server_log, worker_log):
                if log.exists():
                    print(f"--- {log.name} (last 60 lines)", file=sys.stderr)
                    print("\n".join(log.read_text().splitlines()[-60:]), file=sys.stderr)
            raise
        step("stopped", "server and worker process groups")

    stored = count_results(store, f"proofs/d{difficulty}")
    step("store", f"{stored} of {items} results under proofs/d{difficulty} in {store}")
    if stored != items:
        raise E2EError(f"{stored} of {items} results landed in {store}")
    return stored


def trigger(api_url: str, parameters: dict[str, object]) -> str:
    """Schedule a run of the deployment now; its flow run ID."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        flow_run = run_deployment(DEPLOYMENT, parameters=parameters, timeout=0)
    if not isinstance(flow_run, FlowRun):  # the async twin, called from a coroutine
        raise E2EError(f"run_deployment gave {flow_run!r}, not a flow run")
    return str(flow_run.id)


def wait_for_run(api_url: str, flow_run_id: str, timeout: float) -> str:
    """Poll the flow run until it is final; the name of its final state."""
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    deadline = time.monotonic() + timeout
    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as c:
        while time.monotonic() < deadline:
            state = c.read_flow_run(flow_run_id).state  # type: ignore[arg-type]
            if state is not None and state.is_final():
                return state.name or state.type.value
            time.sleep(0.5)
    raise E2EError(f"flow run {flow_run_id} did not finish within {timeout:.0f} s")


def count_results(store: str, prefix: str) -> int:
    from results_flow import ResultsManager

    with ResultsManager.from_url(store) as manager:
        return len(manager.list_ids(prefix))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="store URL for the run (default: a temporary SQLite)")
    parser.add_argument("--items", type=int, default=100, help="items for the run (100)")
    parser.add_argument("--difficulty", type=int, default=8, help="zero bits per proof (8)")
    parser.add_argument("--server-database", help="the Prefect server's database URL")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="results-flow-e2e-store-") as tmp:
        store = args.store or f"sqlite:///{Path(tmp) / 'results.db'}"
        try:
            run_e2e(store, args.items, args.difficulty, args.server_database)
        except E2EError as exc:
            print(f"deploy-e2e failed: {exc}", file=sys.stderr)
            return 1
    print("deploy-e2e passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
