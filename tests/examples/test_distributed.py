"""examples/distributed.py: the pipeline on a local Dask cluster of two worker
processes, over the real PostgreSQL store, run as a user runs it (a script)."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.parallel_resume import Proof
from results_flow import ResultsManager
from tests.examples.test_parallel_resume import ROOT, run_to_end
from tests.s3_server import S3Server

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


@pytest.mark.usefixtures("prefect_harness")
def test_two_dask_workers_compute_into_s3_and_a_rerun_reuses(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """The same pipeline over an object store (the local S3 server): the spawned Dask
    workers open their own obstore clients and share the bucket."""
    url = s3_server.url()
    args = ("--store", url, "--items", "20", "--difficulty", "8", "--workers", "2")
    assert run_to_end(SCRIPT, *args, "--no-progress", cwd=tmp_path) == (20, 20, 0)
    assert run_to_end(SCRIPT, *args, "--no-progress", cwd=tmp_path) == (20, 0, 20)
    with ResultsManager.from_url(url) as rm:
        assert rm.list_ids("proofs/d8") == [f"proofs/d8/item-{i:05d}" for i in range(20)]
        assert rm.get("proofs/d8/item-00007", Proof).sha256.startswith("00")
