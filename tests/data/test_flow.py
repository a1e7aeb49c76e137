"""etl_flow: each ETL stage is a stored Prefect step, so a rerun resumes after a failure."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from uuid import UUID

import pytest
import sqlalchemy as sa

from results_flow import ResultsManager
from results_flow.data import (
    DatabaseDataManager,
    Extractor,
    JoinTransformer,
    SimpleETLFactory,
    Transformer,
    ValidationContext,
    ValidationResult,
    Validator,
)
from results_flow.data.flow import LoadReport, StagedTables, etl_flow
from results_flow.data.transform import Tables
from results_flow.errors import DataSourceExistsError, ETLFailedError
from tests.data.models import copy_shop, shop_files, shop_schemas

pytestmark = pytest.mark.usefixtures("prefect_harness")


class CountingExtractor(Extractor):
    """Wraps an extractor and counts its runs in the test's counter."""

    def __init__(self, inner: Extractor, calls: Counter[str]) -> None:
        super().__init__(inner.file, inner.schema)
        self.inner = inner
        self.calls = calls

    def extract(self, result: ValidationResult):  # type: ignore[no-untyped-def]
        self.calls["extract"] += 1
        return self.inner.extract(result)


class CountingValidator(Validator):
    def __init__(self, calls: Counter[str]) -> None:
        self.calls = calls

    def validate(self, context: ValidationContext) -> None:
        self.calls["validate"] += 1


class FailingOnce(Transformer):
    """Raises on its first run: the injected failure in the transform stage."""

    def __init__(self, calls: Counter[str]) -> None:
        self.calls = calls

    def transform(self, tables: Tables, result: ValidationResult) -> Tables:
        self.calls["transform"] += 1
        if self.calls["transform"] == 1:
            raise RuntimeError("injected transform failure")
        return tables


class CountingFactory(SimpleETLFactory):
    def __init__(self, calls: Counter[str]) -> None:
        from results_flow.data import default_validators

        super().__init__(
            shop_schemas(),
            validators=[*default_validators(), CountingValidator(calls)],
            transformers=[
                FailingOnce(calls),
                JoinTransformer("orders", "customers", [("customer_id", "id")], "order_details"),
            ],
        )
        self.calls = calls

    def create_extractors(self, files):  # type: ignore[no-untyped-def]
        return [CountingExtractor(e, self.calls) for e in super().create_extractors(files)]


def test_rerun_after_transform_failure_skips_extract_and_validate(tmp_path: Path) -> None:
    calls: Counter[str] = Counter()
    manager = DatabaseDataManager(
        f"sqlite:///{tmp_path / 'data.db'}", etl_factory=CountingFactory(calls)
    )
    store = ResultsManager(f"sqlite:///{tmp_path / 'stages.db'}")

    with pytest.raises(RuntimeError, match="injected transform failure"):
        etl_flow(manager, shop_files(), "shop", store=store)
    assert calls == Counter(extract=3, validate=1, transform=1)  # three files
    assert not manager.has_data("shop")
    stages = store.list_ids("etl/shop")
    assert [s.rsplit("/", 1)[1] for s in stages] == ["extract", "validate"]

    result = etl_flow(manager, shop_files(), "shop", store=store)

    assert result.status == "success", result.validation_result.summary()
    assert calls == Counter(extract=3, validate=1, transform=2)  # only transform ran again
    assert result.data_source is not None
    assert len(result.data_source.rows("order_details")) == 6
    with manager.engine.connect() as conn:
        table = manager.table_name("shop", "order_details")
        count = conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
    assert count == 6
    key = stages[0].split("/")[2]
    report = store.get(f"etl/shop/{key}/load", LoadReport)
    assert report.tables["orders"] == 6
    staged = store.get(f"etl/shop/{key}/transform", StagedTables)
    assert {t.name for t in staged.tables} >= {"orders", "order_details"}

    # A third run of the same input finds the load done: nothing runs at all.
    again = etl_flow(manager, shop_files(), "shop", store=store)
    assert again.succeeded
    assert calls == Counter(extract=3, validate=1, transform=2)

    # The dataset deleted since: only load runs, from the stored transform output.
    manager.delete_data("shop")
    restored = etl_flow(manager, shop_files(), "shop", store=store)
    assert restored.succeeded and manager.has_data("shop")
    assert calls == Counter(extract=3, validate=1, transform=2)


def test_changed_file_is_a_new_run_and_name_clash_is_refused(tmp_path: Path) -> None:
    calls: Counter[str] = Counter(transform=1)  # FailingOnce already "failed"
    manager = DatabaseDataManager(
        f"sqlite:///{tmp_path / 'data.db'}", etl_factory=CountingFactory(calls)
    )
    store = ResultsManager(f"sqlite:///{tmp_path / 'stages.db'}")
    folder = copy_shop(tmp_path / "in")
    assert etl_flow(manager, shop_files(folder), "shop", store=store).succeeded

    orders = folder / "orders.csv"
    orders.write_text(orders.read_text() + "1007,2,KB-01,1,49.90,2024-03-06T10:00:00+00:00\n")
    with pytest.raises(DataSourceExistsError, match="'shop'"):
        etl_flow(manager, shop_files(folder), "shop", store=store)
    result = etl_flow(manager, shop_files(folder), "shop", store=store, overwrite=True)
    assert result.succeeded
    assert len(manager.get_data("shop").rows("orders")) == 7
    assert calls["extract"] == 6  # the changed input was extracted afresh


def test_bad_data_fails_the_flow_result_without_raising(tmp_path: Path) -> None:
    calls: Counter[str] = Counter(transform=1)
    manager = DatabaseDataManager(
        f"sqlite:///{tmp_path / 'data.db'}", etl_factory=CountingFactory(calls)
    )
    folder = copy_shop(tmp_path / "in")
    (folder / "customers.csv").write_text("id,name,country,signed_up\nx,Ann,GB,2023-01-01\n")
    result = etl_flow(
        manager,
        shop_files(folder),
        "shop",
        store=ResultsManager(tmp_path / "stages"),
        raise_on_failure=False,
    )
    assert result.status == "failed"
    assert "invalid_value" in result.validation_result.codes()
    assert calls["transform"] == 1  # the failed validation stopped the flow before transform
    assert not manager.has_data("shop")


def failing_run_logs(flow_run_id: UUID, expected: str) -> list[str]:
    """The flow run's ERROR logs, once one holding ``expected`` reached the server (logs
    are shipped in the background: wait for them, patiently, never on a short deadline)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        LogFilter,
        LogFilterFlowRunId,
        LogFilterLevel,
    )
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    only_errors = LogFilter(
        flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]), level=LogFilterLevel(ge_=40)
    )
    deadline = time.monotonic() + 300
    with get_client(sync_client=True) as client:
        while True:
            logs = [log.message for log in client.read_logs(log_filter=only_errors)]
            if any(expected in line for line in logs) or time.monotonic() > deadline:
                return logs
            time.sleep(0.5)


def test_a_failed_etl_ends_the_flow_run_failed_with_its_messages_at_error(
    tmp_path: Path,
) -> None:
    """Regression (issue 9 item 13): a failed ETL showed as Completed, nothing above INFO."""
    from prefect.client.orchestration import get_client

    manager = DatabaseDataManager(f"sqlite:///{tmp_path / 'data.db'}", shop_schemas())
    folder = copy_shop(tmp_path / "in")
    (folder / "customers.csv").write_text("id,name,country,signed_up\nx,Ann,GB,2023-01-01\n")
    stages = ResultsManager(tmp_path / "stages")
    state = etl_flow(manager, shop_files(folder), "shop", store=stages, return_state=True)
    assert state.is_failed()
    with pytest.raises(ETLFailedError, match="ETL 'shop' failed") as caught:
        state.result()
    assert caught.value.result.status == "failed"
    assert "invalid_value" in caught.value.result.validation_result.codes()
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(flow_run_id).state_type.value == "FAILED"
    logs = failing_run_logs(flow_run_id, "[invalid_value]")
    assert any("[invalid_value]" in line and "customers.csv" in line for line in logs), logs

    with pytest.raises(ETLFailedError):  # called plainly, the flow raises it
        etl_flow(manager, shop_files(folder), "shop", store=stages)
    kept = etl_flow(
        manager, shop_files(folder), "shop", store=stages, raise_on_failure=False, return_state=True
    )
    assert kept.is_completed()
    assert kept.result().status == "failed"
    assert not manager.has_data("shop")
