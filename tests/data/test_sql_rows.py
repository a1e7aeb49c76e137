"""SQLite inserts of a dataset table go in multi-row INSERT statements (issue 12 item 4):
every row arrives, in order, whether a table fills whole statements, part of one, or
whole ones and a remainder."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from pydantic import BaseModel

from results_flow.data import DatabaseDataManager, DataSource, DataTable
from results_flow.data.sql_rows import SQLITE_VARIABLES


class Sale(BaseModel):
    id: int
    customer: str
    amount: float
    day: date
    paid: bool
    note: str | None = None


PER_STATEMENT = SQLITE_VARIABLES // len(Sale.model_fields)


def sales(count: int) -> list[Sale]:
    return [
        Sale(
            id=i,
            customer=f"c{i}",
            amount=i / 4,
            day=date(2024, 1, 1 + i % 28),
            paid=i % 2 == 0,
            note=None if i % 3 else f"n{i}",
        )
        for i in range(count)
    ]


@pytest.mark.parametrize(
    "count", [1, PER_STATEMENT - 1, PER_STATEMENT, PER_STATEMENT + 1, 3 * PER_STATEMENT + 5]
)
def test_every_row_arrives_across_statement_borders(tmp_path: Path, count: int) -> None:
    manager = DatabaseDataManager(f"sqlite:///{tmp_path / 'rows.db'}")
    rows = sales(count)
    manager.add_data_source(DataSource("sales", [DataTable("sales", Sale, rows)]))
    manager.clear_cache()
    back = manager.get_data("sales").rows("sales")
    assert [r.model_dump() for r in back] == [r.model_dump() for r in rows]
    manager.close()
