"""The deployment end to end, as ``make deploy-e2e`` runs it: a real Prefect server on
loopback, a process work pool, ``prefect deploy`` of deployments/prefect.yaml, a run
with parameters picked up by ``prefect worker start --run-once``, its results in a
temporary SQLite store, and every process stopped afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil

from examples.parallel_resume import Proof
from results_flow import ResultsManager

ROOT = Path(__file__).resolve().parents[2]


def prefect_processes_under(home: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["environ"]):
        try:
            if (process.info["environ"] or {}).get("PREFECT_HOME", "").startswith(home):
                found.append(process)
        except (psutil.Error, AttributeError):
            continue
    return found


def test_deployment_runs_on_a_real_server_and_its_results_land_in_the_store(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'e2e.db'}"
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_HOME")}
    env["TMPDIR"] = str(tmp_path)  # the script's throwaway PREFECT_HOME lands here
    done = subprocess.run(
        [sys.executable, str(ROOT / "deployments" / "e2e.py"), "--items", "40", "--store", url],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr[-6000:]}"
    assert "deploy-e2e passed" in done.stdout
    assert "worker   ran it: Completed" in done.stdout

    with ResultsManager.from_url(url) as rm:
        assert rm.list_ids("proofs/d8") == [f"proofs/d8/item-{i:05d}" for i in range(40)]
        assert rm.get("proofs/d8/item-00039", Proof).item == 39
        assert rm.record("proofs/d8/item-00039").metadata["flow_name"] == "parallel-resume"
    assert prefect_processes_under(str(tmp_path)) == [], "server or worker left running"
