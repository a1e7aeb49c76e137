"""Storage backends: the ``ResultsBackend`` interface and its implementations."""

from results_flow.backends.base import AsyncResultsBackend, ResultsBackend, ThreadedAsyncBackend
from results_flow.backends.file import FileBackend
from results_flow.backends.memory import MemoryBackend
from results_flow.backends.sql import PostgresBackend, SqlBackend, SqliteBackend
from results_flow.backends.sql_async import AsyncSqlBackend
from results_flow.backends.urls import (
    ENTRY_POINT_GROUP,
    backend_from_url,
    mask_url,
    register_backend,
)

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
