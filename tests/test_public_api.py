"""Pins the public API: a change here is a change for every user."""

from __future__ import annotations

import results_flow

EXPECTED = {
    "DEFAULT_NAMESPACE",
    "AsyncResultsBackend",
    "AsyncResultsManager",
    "CorruptRecordError",
    "DataError",
    "ETLConstructionError",
    "ETLFailedError",
    "FileBackend",
    "InvalidResultIdError",
    "InvalidResultsError",
    "LockLostError",
    "LockTimeoutError",
    "MemoryBackend",
    "ModelRegistryError",
    "PostgresBackend",
    "PydanticSerializer",
    "Record",
    "ResultConflictError",
    "ResultExistsError",
    "ResultNotFoundError",
    "ResultValidationError",
    "ResultsBackend",
    "ResultsFlowError",
    "ResultsManager",
    "ResultsStorage",
    "ResultsTaskError",
    "SetBehavior",
    "SqlBackend",
    "SqliteBackend",
    "StoreBusyError",
    "StoreError",
    "StoreUnavailableError",
    "UnhashableParameterError",
    "UnknownModelError",
    "UnsupportedStoreUrlError",
    "UntrustedRecordError",
    "UpgradeFailedError",
    "UpgradeRegistryError",
    "aresults_map",
    "clear_registry",
    "get_model_class",
    "mask_url",
    "register_model",
    "result_id_for",
    "results_map",
    "results_task",
    "upgrades",
}


def test_all_is_pinned() -> None:
    assert set(results_flow.__all__) == EXPECTED
    assert all(hasattr(results_flow, name) for name in results_flow.__all__)


def test_set_behavior_members_are_pinned() -> None:
    assert [b.name for b in results_flow.SetBehavior] == [
        "RAISE_IF_EXISTS",
        "SKIP_IF_EXISTS",
        "RAISE_IF_DIFFERENT",
        "OVERWRITE",
    ]


def test_every_error_is_a_results_flow_error() -> None:
    errors = [getattr(results_flow, n) for n in results_flow.__all__ if n.endswith("Error")]
    assert all(issubclass(e, results_flow.ResultsFlowError) for e in errors)


def test_importing_the_store_does_not_import_prefect() -> None:
    import subprocess
    import sys

    code = "import sys, results_flow; print('prefect' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_prefect_names_are_re_exported_lazily() -> None:
    from results_flow.prefect import aresults_map, results_map, results_task

    assert results_flow.results_task is results_task
    assert results_flow.results_map is results_map
    assert results_flow.aresults_map is aresults_map
