"""examples/etl_pipeline.py loads the sample shop through the stored ETL flow."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from examples.etl_pipeline import main
from results_flow import ResultsManager

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_etl_example_loads_queryable_tables_and_reuses_stages(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'shop.db'}"
    store = f"sqlite:///{tmp_path / 'stages.db'}"
    assert main(db, store) == 6
    stages = ResultsManager(store).list_ids("etl/shop")
    assert [s.rsplit("/", 1)[1] for s in stages] == ["extract", "load", "transform", "validate"]
    with sa.create_engine(db).connect() as conn:
        names = sa.inspect(conn).get_table_names()
        assert any(n.endswith("order_details") for n in names)
    assert main(db, store) == 6  # a rerun reuses the stored stages
    assert ResultsManager(store).list_ids("etl/shop") == stages
