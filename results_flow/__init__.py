"""results_flow: validated, resumable Pydantic results for Prefect pipelines.

The store's names are imported here directly. The Prefect layer's names
(``results_task``, ``results_map``, ...) are re-exported lazily, so that
``import results_flow`` does not import Prefect (about a second) for store-only users.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from results_flow.aio import AsyncResultsManager
from results_flow.backends import (
    AsyncResultsBackend,
    FileBackend,
    MemoryBackend,
    PostgresBackend,
    ResultsBackend,
    SqlBackend,
    SqliteBackend,
)
from results_flow.errors import (
    CorruptRecordError,
    DataError,
    ETLConstructionError,
    ETLFailedError,
    InvalidResultIdError,
    InvalidResultsError,
    LockLostError,
    LockTimeoutError,
    ModelRegistryError,
    ResultConflictError,
    ResultExistsError,
    ResultNotFoundError,
    ResultsFlowError,
    ResultsTaskError,
    ResultValidationError,
    StoreBusyError,
    StoreError,
    StoreUnavailableError,
    UnhashableParameterError,
    UnknownModelError,
    UnsupportedStoreUrlError,
    UntrustedRecordError,
    UpgradeFailedError,
    UpgradeRegistryError,
)
from results_flow.manager import ResultsManager, SetBehavior
from results_flow.records import Record
from results_flow.registry import DEFAULT_NAMESPACE, clear_registry, get_model_class, register_model
from results_flow.upgrades import upgrades
from results_flow.urls import mask_url

if TYPE_CHECKING:
    from results_flow.prefect import (
        PydanticSerializer,
        ResultsStorage,
        aresults_map,
        result_id_for,
        results_map,
        results_task,
    )

_PREFECT_NAMES = frozenset(
    {
        "PydanticSerializer",
        "ResultsStorage",
        "aresults_map",
        "result_id_for",
        "results_map",
        "results_task",
    }
)


def __getattr__(name: str) -> Any:
    if name in _PREFECT_NAMES:
        return getattr(importlib.import_module("results_flow.prefect"), name)
    raise AttributeError(f"module 'results_flow' has no attribute {name!r}")


__all__ = [
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
]
