"""A ``results-storage/<name>`` slug is loaded once per flow run, not once per task run.

Prefect resolves a task's ``result_storage`` string with ``Block.load`` each time the
task runs, twice per run: one request to the API server, a new block and a "block
loaded" event each time. A cached rerun of 2,000 tasks took 148.6 s, most of it there.
``install_slug_resolver`` wraps ``prefect.results.resolve_result_storage`` (and its
async twin) so that a slug of *this* block type is loaded by the first task run of a
flow run that needs it (the task runs racing it wait for that one load) and the same
block is reused for the rest of that run, as the object form
(``result_storage=ResultsStorage.load(name)``) would be. Every other value (another
block type's slug, a block, a path, a UUID) goes to Prefect's own resolver unchanged,
as does any call outside a flow run.

What this means: a block edited or re-saved while a flow runs is seen by the next flow
run (each run loads it again), never half-way through one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio.to_thread
import prefect.results
from prefect.context import FlowRunContext, TaskRunContext

from results_flow.settings import SLUG_FLOW_RUNS


@dataclass
class _Slot:
    """One slug in one flow run: its block once loaded, and the lock its load holds."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    block: Any = None


_lock = threading.Lock()
#: Flow run ID -> slug -> its slot (recent runs only).
_runs: dict[str, dict[str, _Slot]] = {}
#: The resolvers this module put in place (so a second install keeps the first).
_installed: set[Any] = set()


def _flow_run_id() -> str | None:
    flow_context = FlowRunContext.get()
    if flow_context is not None and flow_context.flow_run is not None:
        return str(flow_context.flow_run.id)
    task_context = TaskRunContext.get()
    if task_context is not None and task_context.task_run.flow_run_id is not None:
        return str(task_context.task_run.flow_run_id)
    return None


def _key(result_storage: object, block_type_slug: str) -> tuple[str, str] | None:
    """(flow run, slug) when ``result_storage`` is a slug of this block type resolved in
    a flow run, else None (Prefect resolves it as usual)."""
    if not (isinstance(result_storage, str) and result_storage.startswith(f"{block_type_slug}/")):
        return None
    run = _flow_run_id()
    return None if run is None else (run, result_storage)


def _resolve_once(key: tuple[str, str], load: Callable[[], Any]) -> Any:
    """The block of ``key``, loaded by the first caller in the flow run; callers racing
    it wait for its block rather than each asking the server (a fan-out's first task
    runs start together). A load that fails is tried again by the next caller."""
    with _lock:
        slots = _runs.get(key[0])
        if slots is None:
            slots = _runs[key[0]] = {}
            while len(_runs) > SLUG_FLOW_RUNS:
                del _runs[next(iter(_runs))]
        slot = slots.setdefault(key[1], _Slot())
    with slot.lock:
        if slot.block is None:
            slot.block = load()
        return slot.block


def install_slug_resolver(block_type_slug: str) -> None:
    """Resolve ``<block_type_slug>/<name>`` once per flow run (idempotent)."""
    # async_dispatch adds the _sync keyword, which its annotations do not show.
    sync_resolve: Callable[..., Any] = prefect.results.resolve_result_storage
    async_resolve = prefect.results.aresolve_result_storage
    if sync_resolve in _installed:
        return

    def resolve_result_storage(result_storage: Any, *args: Any, **kwargs: Any) -> Any:
        # Prefect's sync path passes _sync=True; without it the dispatcher may return a
        # coroutine, which only Prefect's own resolver knows how to make.
        key = _key(result_storage, block_type_slug) if kwargs.get("_sync") is True else None
        if key is None:
            return sync_resolve(result_storage, *args, **kwargs)
        return _resolve_once(key, lambda: sync_resolve(result_storage, *args, **kwargs))

    async def aresolve_result_storage(result_storage: Any) -> Any:
        key = _key(result_storage, block_type_slug)
        if key is None:
            return await async_resolve(result_storage)
        # The same once-per-run load, in a worker thread: waiting on it must not block
        # the event loop.
        load = partial(sync_resolve, result_storage, _sync=True)
        return await anyio.to_thread.run_sync(_resolve_once, key, load)

    _installed.add(resolve_result_storage)
    prefect.results.resolve_result_storage = resolve_result_storage
    prefect.results.aresolve_result_storage = aresolve_result_storage
