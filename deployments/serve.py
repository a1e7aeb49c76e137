"""Serve the parallel-resume flow from this process, no work pool or worker needed.

``flow.serve`` registers a deployment with the Prefect server at ``PREFECT_API_URL``
and runs its flow runs right here until stopped (Ctrl-C)::

    python deployments/serve.py
    prefect deployment run parallel-resume/parallel-resume-served --param items=5000
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repository root: examples

from examples.parallel_resume import parallel_resume

if __name__ == "__main__":
    parallel_resume.serve(
        name="parallel-resume-served",
        description="Find proofs of work on a thread pool, resuming from the store.",
        tags=["results-flow", "example"],
        parameters={"items": 1000, "difficulty": 12, "progress": False},
    )
