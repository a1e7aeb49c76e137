"""Where results go when nobody says: the ``RESULTS_FLOW_STORE`` variable, else the
embedded SQLite store in ``./results_store/results.db``."""

from __future__ import annotations

import os
from typing import Literal

STORE_ENV = "RESULTS_FLOW_STORE"
DEFAULT_STORE_URL = "sqlite:///results_store/results.db"


def default_store_url() -> str:
    """The store URL from ``RESULTS_FLOW_STORE``, or the embedded default."""
    return os.environ.get(STORE_ENV) or DEFAULT_STORE_URL


REFRESH_ENV = "RESULTS_FLOW_REFRESH"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def refresh_requested() -> bool:
    """Whether ``RESULTS_FLOW_REFRESH`` asks every results_task to recompute (``1``,
    ``true``, ``yes``, ``on``; ``0``, ``false``, ``no``, ``off`` or unset do not).

    Raises:
        ValueError: any other value (a typo must not silently keep old results).
    """
    value = os.environ.get(REFRESH_ENV, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{REFRESH_ENV}={value!r}: use 1 or 0 (also true/false, yes/no, on/off)")


ID_SCOPE_ENV = "RESULTS_FLOW_ID_SCOPE"
IdScope = Literal["flow", "task"]
"""What a results_task's default result ID starts with: ``"flow"`` gives
``<flow>/<task>/<key>`` (each flow keeps its own results), ``"task"`` gives
``<task>/<key>`` (the same call reuses one result from any flow)."""
ID_SCOPES: tuple[IdScope, ...] = ("flow", "task")
#: The flow scope keeps the IDs every store written before issue 22 holds.
DEFAULT_ID_SCOPE: IdScope = "flow"


def as_id_scope(value: str, where: str = "scope") -> IdScope:
    """``value`` as an ID scope.

    Raises:
        ValueError: not one of ``ID_SCOPES``; names ``where`` and the allowed values.
    """
    for scope in ID_SCOPES:
        if value == scope:
            return scope
    raise ValueError(f"{where}={value!r}: the ID scope must be one of {', '.join(ID_SCOPES)}")


def id_scope() -> IdScope:
    """The project-wide ID scope: ``RESULTS_FLOW_ID_SCOPE``, else ``DEFAULT_ID_SCOPE``.

    Raises:
        ValueError: any other value than ``flow`` or ``task`` (a typo must not silently
            change every ID).
    """
    value = os.environ.get(ID_SCOPE_ENV, "").strip().lower()
    return as_id_scope(value, ID_SCOPE_ENV) if value else DEFAULT_ID_SCOPE


# --- The table of defaults: each one name, one value, one line of why. ----------------

#: How long a SQLite write waits for other writers before ``StoreBusyError``: long
#: enough for a burst of parallel workers, short enough to surface a stuck writer.
SQLITE_BUSY_TIMEOUT = 30.0
#: How long a busy SQLite write sleeps before it tries again.
BUSY_RETRY_SECONDS = 0.01
#: How long a file store's ``lock(id)`` waits: its locks guard short writes.
FILE_LOCK_TIMEOUT = 60.0
#: How long ``lock(id)`` waits on SQL, memory and object stores: a results_task may
#: compute for minutes while others wait to read its result.
STORE_LOCK_TIMEOUT = 600.0
#: How long a results_task waits for another worker computing the same ID: tasks may
#: run for long, and a waiter reads the result instead of computing it again.
COMPUTE_LOCK_TIMEOUT = 3600.0
#: Seconds to open a PostgreSQL connection (TCP, TLS and the server's answer to the startup).
PG_CONNECT_TIMEOUT = 10.0
#: Seconds one store statement may run on a PostgreSQL server.
PG_STATEMENT_TIMEOUT = 60.0
#: How often a PostgreSQL advisory lock is tried again while another session holds it.
LOCK_POLL_SECONDS = 0.05
#: Lock files per lock folder: unrelated IDs rarely share one, and the folder stays small.
LOCK_STRIPES = 1024
#: How long an object-store lease lives unless renewed: a dead holder frees it soon.
LEASE_TTL_SECONDS = 30.0
#: Task runs ``results_map`` keeps submitted and unfinished at once: Prefect's default
#: thread pool is unbounded, and 2,000 threads writing SQLite at once outwait its busy
#: timeout; 32 still keeps a 2-process Dask cluster or a 16-thread pool busy.
MAP_MAX_IN_FLIGHT = 32
#: Longest type tag a record keeps: the SQL stores' ``model_type`` column width (a longer
#: annotation's text is cut; such a result is read with its type).
TYPE_TAG_MAX_LENGTH = 255
#: IDs bound in one SQL batch read: below SQLite's and PostgreSQL's parameter limits.
SQL_IDS_PER_STATEMENT = 30_000
#: Records one maintenance or transfer step reads and writes at a time: bounds memory.
RECORDS_PER_STEP = 1000
#: SQLite's work (virtual machine steps) allowed between two rows of an original
#: ResultsManager table read by the legacy import: a plain table yields a row every few
#: hundred steps; a hostile schema that computes without end is stopped, not waited on.
LEGACY_SQLITE_STEPS_PER_ROW = 20_000_000
