"""results_flow: validated, resumable Pydantic results for Prefect pipelines."""

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
    InvalidResultIdError,
    LockTimeoutError,
    ModelRegistryError,
    ResultConflictError,
    ResultExistsError,
    ResultNotFoundError,
    ResultsFlowError,
    ResultValidationError,
    StoreBusyError,
    StoreError,
    StoreUnavailableError,
    UnknownModelError,
    UnsupportedStoreUrlError,
)
from results_flow.manager import ResultsManager, SetBehavior
from results_flow.records import Record
from results_flow.registry import DEFAULT_NAMESPACE, clear_registry, get_model_class, register_model

__all__ = [
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
]
