"""Pins the public API: a change here is a change for every user."""

from __future__ import annotations

import results_flow

EXPECTED = {
    "DEFAULT_NAMESPACE",
    "AsyncResultsBackend",
    "AsyncResultsManager",
    "CorruptRecordError",
    "FileBackend",
    "InvalidResultIdError",
    "LockTimeoutError",
    "MemoryBackend",
    "ModelRegistryError",
    "PostgresBackend",
    "Record",
    "ResultConflictError",
    "ResultExistsError",
    "ResultNotFoundError",
    "ResultValidationError",
    "ResultsBackend",
    "ResultsFlowError",
    "ResultsManager",
    "SetBehavior",
    "SqlBackend",
    "SqliteBackend",
    "StoreBusyError",
    "StoreError",
    "StoreUnavailableError",
    "UnknownModelError",
    "UnsupportedStoreUrlError",
    "clear_registry",
    "get_model_class",
    "register_model",
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
