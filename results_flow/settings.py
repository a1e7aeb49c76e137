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
#: The longest pause between two tries of a busy PostgreSQL advisory lock (the pause
#: doubles from LOCK_POLL_SECONDS): long waiters cost few statements.
PG_LOCK_POLL_MAX_SECONDS = 0.5
#: Lock sessions a process keeps per PostgreSQL database: each holds any number of
#: advisory locks, so 64 holding threads cost 4 connections, not 64.
PG_LOCK_SESSIONS = 4
#: Write transactions a PostgreSQL store commits at once per process, each holding the
#: writes that queued for it (group commit): the server flushes concurrent commits
#: together, so several lanes beat one (one ran 32 writers at a third of raw psycopg's
#: rate); 8 stays within the pool's 5 + 10 overflow connections and leaves reads room.
PG_GROUP_COMMIT_LANES = 8
#: Seconds a client waits beyond statement_timeout for the server's answer before it cuts
#: the connection (a stalled proxy or pooler): the server's own timeout error comes first.
PG_CLIENT_MARGIN = 5.0
#: How long an object-store lease lives unless renewed: a dead holder frees it soon.
LEASE_TTL_SECONDS = 30.0
#: Task runs ``results_map`` keeps submitted and unfinished at once: Prefect's default
#: thread pool is unbounded, and 2,000 threads writing SQLite at once outwait its busy
#: timeout; 32 still keeps a 2-process Dask cluster or a 16-thread pool busy.
MAP_MAX_IN_FLIGHT = 32
#: Least seconds between two updates of a results_map's progress artifact: the UI stays
#: current while 10,000 items cost a few hundred API calls, not 10,000.
MAP_ARTIFACT_UPDATE_SECONDS = 0.5
#: Failed items a results_map's table artifact lists one by one (the rest are counted).
MAP_ARTIFACT_FAILURES = 20
#: Longest type tag a record keeps: the SQL stores' ``model_type`` column width (a longer
#: annotation's text is cut; such a result is read with its type).
TYPE_TAG_MAX_LENGTH = 255
#: IDs bound in one SQL batch read: below SQLite's and PostgreSQL's parameter limits.
SQL_IDS_PER_STATEMENT = 30_000
#: Characters of a metadata value a SQL store's indexed column keeps (flow, task, flow run,
#: version): names and UUIDs fit whole; a longer value is found through its first ones.
INDEX_KEY_MAX_LENGTH = 255
#: Records one maintenance or transfer step reads and writes at a time: bounds memory.
RECORDS_PER_STEP = 1000
#: SQLite's work (virtual machine steps) allowed between two rows of an original
#: ResultsManager table read by the legacy import: a plain table yields a row every few
#: hundred steps; a hostile schema that computes without end is stopped, not waited on.
LEGACY_SQLITE_STEPS_PER_ROW = 20_000_000

# Object stores (S3, GCS, Azure through obstore) and their compute-once leases.

#: Requests ``get_many`` / ``exists_many`` keep in flight at once: overlaps round trips
#: without opening more connections than a small worker's descriptor limit allows.
OBJECT_STORE_CONCURRENCY = 32
#: Seconds to open a connection to an object store: a wrong endpoint fails fast.
OBJECT_STORE_CONNECT_TIMEOUT = 10.0
#: Seconds one object-store request may take: records are small, so a slow answer is a fault.
OBJECT_STORE_REQUEST_TIMEOUT = 60.0
#: Times obstore sends a failed request again (5xx, dropped connections): rides out blips.
OBJECT_STORE_MAX_RETRIES = 3
#: Seconds obstore keeps retrying one request in all: bounds a call on a failing store.
OBJECT_STORE_RETRY_TIMEOUT = 30.0
#: Tries of one write while other writers keep changing the object: then a named error.
OBJECT_STORE_WRITE_ATTEMPTS = 50
#: Heartbeats per lease TTL: two may fail before a waiter could take the lease over.
LEASE_BEATS_PER_TTL = 3
#: First pause of a waiter between two looks at a held lease: a short task frees it soon.
LEASE_FIRST_POLL = 0.05
#: Longest pause between two looks at a held lease (the pause doubles up to it).
LEASE_MAX_POLL = 1.0
#: Share of the TTL a write through a lease may start after the renew that proved it:
#: the rest is the time the write has to land before anyone could take the lease over.
LEASE_WRITE_WINDOW = 0.5

#: Folders a file store remembers as checked for symlinks: a read then costs one lstat,
#: and the memory stays bounded however many folders the store has.
FILE_CHECKED_FOLDERS_MAX = 65_536
#: Attempts of a file-store write whose folder a concurrent ``clear()`` removed as it emptied.
FILE_WRITE_ATTEMPTS = 20
#: File and folder names a process remembers as valid ID segments (or not) while it walks
#: file stores: a listing then parses each name once, in bounded memory.
FILE_NAMES_CACHED = 65_536
#: How many IDs an error message names before "and N more" (bad records, failed map items).
IDS_NAMED_IN_ERRORS = 5
#: Problems ``results-flow verify`` prints one by one (after its summary); ``--limit``
#: changes it and ``--json`` lists all: 2,000 bad records printed ~9,800 lines.
VERIFY_LINES = 20
#: IDs ``rm`` and ``gc`` show before asking to delete them (``--dry-run`` lists all).
PLAN_IDS_SHOWN = 10
#: Most upgrades chained to bring one stored record to its current model: far beyond any
#: model's history; each registered upgrade runs at most once per record anyway.
MAX_UPGRADE_STEPS = 64
#: Failures ``results-flow upgrade`` lists before counting the rest (``--json`` lists all).
UPGRADE_FAILURES_SHOWN = 20
#: How deep canonical JSON of a task's arguments may nest: deeper is almost surely a cycle.
HASH_MAX_DEPTH = 64
#: Datasets a ``DatabaseDataManager`` keeps in memory after reading them.
DATASET_CACHE_SIZE = 8
#: Rows read, validated and inserted at a time when ETL streams; a chunk's row models live
#: until it is inserted. Chosen when full garbage collections scanned them (a fifth of a
#: load's CPU at 20,000 rows, a twentieth at 5,000); the load now freezes older objects
#: (``gc_pause``), and larger chunks have not been measured since.
ETL_CHUNK_ROWS = 5_000
#: Rows per ETL stage chunk record: a stage of a million rows is 50 records of this size.
STAGE_CHUNK_ROWS = 20_000
#: Failing validation messages an ETL flow logs one by one before counting the rest.
LOGGED_MESSAGES = 20
#: Validation messages kept per table and code; beyond it they are counted in one message.
VALIDATION_MESSAGE_LIMIT = 1000
#: Deepest type a Prefect result blob may record: far beyond any annotation, and well
#: below the ~200 levels at which pydantic's schema builder overflows the stack.
MAX_TYPE_DEPTH = 64
#: Flow runs whose "no longer validates" warnings a process remembers (to log each ID
#: once per run): a few recent runs, so the memory stays bounded in a long-lived worker.
WARNED_FLOW_RUNS = 16
#: Flow runs whose ``results-storage/<name>`` slugs a process keeps resolved (one block
#: load per slug per flow run): a few recent runs, bounded in a long-lived worker.
SLUG_FLOW_RUNS = 16
