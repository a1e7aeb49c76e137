"""ETL throughput: a generated 100,000-row CSV loaded with full row validation into a
DatabaseDataManager on SQLite, side by side with pandas ``read_csv`` + ``to_sql``
(which validates nothing). Writes the "etl" section of BENCHMARKS.md.

Run: ``.venv/bin/python bench/etl.py [--rows N] [--repeat R]``
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sqlalchemy as sa
from pydantic import BaseModel
from report import machine, table, write_section

from results_flow.data import DatabaseDataManager, File, schema


class Sale(BaseModel):
    """One generated row."""

    id: int
    customer: str
    email: str
    amount: float
    quantity: int
    day: date
    paid: bool
    note: str | None = None


def generate(path: Path, rows: int, seed: int = 7) -> None:
    """Write a CSV of ``rows`` sales."""
    rng = random.Random(seed)
    start = date(2024, 1, 1)
    with path.open("w", encoding="utf-8") as handle:
        handle.write("id,customer,email,amount,quantity,day,paid,note\n")
        for i in range(1, rows + 1):
            name = f"customer{rng.randrange(10_000)}"
            day = start + timedelta(days=rng.randrange(365))
            note = "" if rng.random() < 0.7 else f"note {i}"
            handle.write(
                f"{i},{name},{name}@example.com,{rng.uniform(1, 500):.2f},"
                f"{rng.randrange(1, 20)},{day.isoformat()},{rng.random() < 0.5},{note}\n"
            )


def best_of_turns(repeat: int, runs: list[Callable[[int], int]]) -> list[float]:
    """The shortest wall time of each run over ``repeat`` rounds; the runs take turns in
    every round, so a change in machine load hits them alike."""
    best = [float("inf")] * len(runs)
    for attempt in range(repeat):
        for i, run in enumerate(runs):
            started = time.perf_counter()
            run(attempt)
            best[i] = min(best[i], time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    import pandas as pd

    with tempfile.TemporaryDirectory(prefix="rf-bench-etl-") as folder:
        csv_path = Path(folder) / "sales.csv"
        generate(csv_path, args.rows)
        manager = DatabaseDataManager(
            f"sqlite:///{folder}/results_flow.db", [schema("sales", Sale, primary_key="id")]
        )
        manager.startup()
        engine = sa.create_engine(f"sqlite:///{folder}/pandas.db")

        def ours(attempt: int) -> int:
            result = manager.etl_data([File.from_path(csv_path)], f"sales{attempt}")
            if not result.succeeded:
                raise SystemExit(f"ETL failed: {result.validation_result.summary()}")
            return len(result.data_source.tables["sales"]) if result.data_source else 0

        def pandas_load(attempt: int) -> int:
            frame = pd.read_csv(csv_path)
            frame.to_sql(f"sales{attempt}", engine, index=False)
            return len(frame)

        ours_seconds, pandas_seconds = best_of_turns(args.repeat, [ours, pandas_load])
        with manager.engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT count(*) FROM ds__sales0__sales")).scalar_one()
        if stored != args.rows:
            raise SystemExit(f"expected {args.rows} rows in SQLite, found {stored}")
        manager.close()
        engine.dispose()

    ours_rate = args.rows / ours_seconds
    pandas_rate = args.rows / pandas_seconds
    ratio = ours_rate / pandas_rate
    body = "\n\n".join(
        [
            "## ETL: CSV -> validated rows -> SQLite",
            f"{args.rows:,} generated rows (8 columns: int, str, str, float, int, date, bool, "
            f"optional str), best of {args.repeat} rounds taking turns; {machine()}, "
            f"load average {os.getloadavg()[0]:.1f} at the end.",
            table(
                ["pipeline", "seconds", "rows/s"],
                [
                    [
                        "results_flow `DatabaseDataManager.etl_data` (every row validated, "
                        "primary key checked)",
                        f"{ours_seconds:.3f}",
                        f"{ours_rate:,.0f}",
                    ],
                    [
                        "pandas `read_csv` + `to_sql` (no validation)",
                        f"{pandas_seconds:.3f}",
                        f"{pandas_rate:,.0f}",
                    ],
                ],
            ),
            f"Ratio results_flow / pandas throughput: **{ratio:.2f}** (aim: at least 0.5).",
            "Command: `.venv/bin/python bench/etl.py`",
        ]
    )
    print(body)
    if not args.no_write:
        write_section("etl", body)


if __name__ == "__main__":
    main()
