"""The SQL store, written once for SQLite and PostgreSQL and for both APIs: the store
(``store``, ``async_store``), its statements and write plans (``statements``,
``plans``), the engines and row runners (``engine``, ``runner``, ``sql.sqlite_runner``,
``sql.pg_runner``), group commit (``sql.group_commit``), and PostgreSQL's locks and bounds
(``sql.pg_lock``, ``sql.pg_bounds``)."""

from results_flow.backends.sql.async_store import AsyncSqlBackend
from results_flow.backends.sql.store import PostgresBackend, SqlBackend, SqliteBackend

__all__ = ["AsyncSqlBackend", "PostgresBackend", "SqlBackend", "SqliteBackend"]
