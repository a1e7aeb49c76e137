"""File store reads against raw files: ``get``, ``exists`` and ``list_ids`` of
``bench/store.py``'s 2,000 records, results_flow's file store beside raw open + read +
validate, best of its rounds. A quicker check of issue 12 item 3 than the full store
benchmark; prints the times and the ratios.

Run with ``.venv/bin/python bench/file_reads.py``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import store  # the store benchmark's subjects and timing


def main() -> None:
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
        ours, raw = store.timed_reads(subjects, ids)
    for op in ("get", "exists", "list_ids"):
        print(
            f"{op}: results_flow file {ours[op] * 1e6:,.1f} µs, raw {raw[op] * 1e6:,.1f} µs, "
            f"{ours[op] / raw[op]:.2f}x"
        )


if __name__ == "__main__":
    main()
