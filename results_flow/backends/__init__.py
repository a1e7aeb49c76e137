"""Storage backends: the ``ResultsBackend`` interface and its implementations."""

from results_flow.backends.base import AsyncResultsBackend, ResultsBackend, ThreadedAsyncBackend
from results_flow.backends.file.store import FileBackend
from results_flow.backends.memory import MemoryBackend
from results_flow.backends.registry import ENTRY_POINT_GROUP, backend_from_url, register_backend
from results_flow.backends.sql.async_store import AsyncSqlBackend
from results_flow.backends.sql.store import PostgresBackend, SqlBackend, SqliteBackend
from results_flow.urls import mask_url

__all__ = [
    "ENTRY_POINT_GROUP",
    "AsyncResultsBackend",
    "AsyncSqlBackend",
    "FileBackend",
    "MemoryBackend",
    "PostgresBackend",
    "ResultsBackend",
    "SqlBackend",
    "SqliteBackend",
    "ThreadedAsyncBackend",
    "backend_from_url",
    "mask_url",
    "register_backend",
]
