"""examples/distributed.py: the pipeline on a local Dask cluster of two worker
processes, over the real PostgreSQL store, run as a user runs it (a script)."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.parallel_resume import Proof
from results_flow import ResultsManager
from tests.examples.test_parallel_resume import ROOT, run_to_end

pytest.importorskip("prefect_dask")

SCRIPT = ROOT / "examples" / "distributed.py"


@pytest.mark.postgres
@pytest.mark.usefixtures("prefect_harness")
def test_two_dask_workers_compute_into_postgres_and_a_rerun_reuses(
    postgres_url: str, tmp_path: Path
) -> None:
    args = (postgres_url, "--items", "40", "--difficulty", "8", "--workers", "2", "--no-progress")
    assert run_to_end(SCRIPT, *args, cwd=tmp_path) == (40, 40, 0)
    assert run_to_end(SCRIPT, *args, cwd=tmp_path) == (40, 0, 40)
    with ResultsManager.from_url(postgres_url) as rm:
        assert rm.list_ids("proofs/d8") == [f"proofs/d8/item-{i:05d}" for i in range(40)]
        proof = rm.get("proofs/d8/item-00007", Proof)
        metadata = rm.record("proofs/d8/item-00007").metadata
    assert proof.item == 7
    assert proof.sha256.startswith("00")
    assert metadata["flow_name"] == "distributed-resume"
