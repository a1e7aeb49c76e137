"""File store reads against raw files: ``get``, ``exists`` and ``list_ids`` of
``bench/store.py``'s 2,000 records, results_flow's file store beside raw open + read +
validate, best of ``ROUNDS`` rounds (more than the store benchmark's, as this machine
is shared and noisy). A quicker check of issue 12 item 3 than the full store
benchmark; prints the times, the ratios and the load average.

Run with ``.venv/bin/python bench/file_reads.py``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import store  # the store benchmark's subjects and timing

#: Rounds of reads over both stores; the best round counts.
ROUNDS = 15


def main() -> None:
    store.REPEATS = ROUNDS
    models, ids = store.samples(store.N_WRITES), store.result_ids(store.N_WRITES)
    with tempfile.TemporaryDirectory(prefix="rf-bench-") as tmp:
        root = Path(tmp)
        subjects: list[store.Subject] = [
            store.ManagerSubject("results_flow file", f"file://{root / 'rf-files'}"),
            store.RawFiles(root / "raw-files"),
        ]
        for subject in subjects:
            for result_id, model in zip(ids, models, strict=True):
                subject.set(result_id, model)
            store.check(subject, models, ids)
        start_load = os.getloadavg()[0]
        ours, raw = store.timed_reads(subjects, ids)
    for op in ("get", "exists", "list_ids"):
        print(
            f"{op}: results_flow file {ours[op] * 1e6:,.1f} µs, raw {raw[op] * 1e6:,.1f} µs, "
            f"{ours[op] / raw[op]:.2f}x"
        )
    print(f"load average {start_load:.1f} before the reads, {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()
