"""The public names of results_flow.data and results_flow.data.flow."""

from __future__ import annotations

import results_flow.data as data


def test_public_names_exist_and_are_listed_once() -> None:
    assert len(set(data.__all__)) == len(data.__all__)
    for name in data.__all__:
        assert getattr(data, name) is not None, name
    assert {
        "DataManager",
        "StatelessDataManager",
        "StatefulDataManager",
        "DatabaseDataManager",
        "DataSource",
        "File",
        "FileSchema",
        "TableSchema",
        "ForeignKey",
        "schema",
        "ETLFactory",
        "SimpleETLFactory",
        "ETLPipeline",
        "ETLResult",
        "Severity",
        "ValidationResult",
        "CleanTransformer",
        "JoinTransformer",
    } <= set(data.__all__)


def test_flow_module_names() -> None:
    from results_flow.data import flow

    assert callable(flow.etl_flow)
    assert flow.etl_flow.name == "results-flow-etl"
    assert {"StagedTables", "LoadReport", "run_key"} <= set(dir(flow))
