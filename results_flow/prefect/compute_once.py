"""Compute once: the sequence around every results_task call, written once.

look up → lock → look up again → compute → store through the lock

``compute_once`` is that sequence as a generator: it decides, and yields each step it
needs done (``Lookup``, ``Acquire``, ``Compute``, ``Save``); a driver performs the step
and sends back its outcome (httpx writes its auth flows this way). ``run_sync`` drives it
for synchronous functions, ``run_async`` for coroutine functions without blocking the
event loop; single task runs and chunked maps use the same drivers, so a change to the
sequence reaches every path at once. A driver holds the lock from ``Acquire`` until the
sequence ends (returned or raised), and every write goes through the held lock
(``results_flow.backends.held``): a lock lost meanwhile refuses the write.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio.to_thread

from results_flow.backends.held import HeldLock
from results_flow.backends.locks import held_in_thread
from results_flow.prefect.naming import Call
from results_flow.prefect.runtime import ResultKeeper, Reuse, Settled, Stored


@dataclass(frozen=True)
class Lookup:
    """Read the stored result (with ``refresh``, only one stored at or after ``since``)."""

    since: datetime | None


@dataclass(frozen=True)
class Acquire:
    """Take the ID's lock; the driver holds it until the sequence ends."""


@dataclass(frozen=True)
class Compute:
    """Run the task's function; the outcome is its return value."""


@dataclass(frozen=True)
class Save:
    """Validate ``value`` and store it through the held lock; the outcome is
    ``(result, fresh)`` as ``ResultKeeper.save`` returns it."""

    value: Any
    replace: bool


Step = Lookup | Acquire | Compute | Save
Sequence = Generator[Step, Any, tuple[Any, Settled]]


def compute_once(keeper: ResultKeeper, *, started: datetime, look_first: bool = True) -> Sequence:
    """The compute-once sequence of one call.

    ``look_first=False`` skips the unlocked lookup (results_map sends chunks only inputs
    it found missing); with locking on, the lookup under the lock still finds a result
    another worker stored meanwhile. Returns the result and how it was settled.
    """
    if look_first and keeper.lock:  # most reruns find their result: no lock for those
        stored: Stored = yield Lookup(since=None)
        if stored.found:
            return stored.result, "stored"
    if keeper.lock:
        yield Acquire()
    # The lock holder before us may have stored (or refreshed) it.
    stored = yield Lookup(since=started if keeper.lock else None)
    if stored.found:
        return stored.result, "stored"
    value = yield Compute()
    result, fresh = yield Save(value, replace=stored.replace)
    return result, "computed" if fresh else "raced"


def run_sync(
    keeper: ResultKeeper,
    call: Call,
    compute: Callable[[], Any],
    *,
    reuse: Reuse,
    started: datetime,
    look_first: bool = True,
) -> tuple[Any, Settled]:
    """Drive ``compute_once`` for a synchronous function; ``reuse`` says which stored
    result the lookups may reuse (``ResultKeeper.reuse``).

    Raises:
        LockTimeoutError: another worker held the ID past ``lock_timeout``.
        LockLostError: the lock was lost before the result was stored; nothing stored.
        ResultValidationError: the computed value does not validate.
        InvalidResultsError: the stored result no longer validates and
            ``on_invalid="raise"``.
    """
    steps = compute_once(keeper, started=started, look_first=look_first)
    held: HeldLock | None = None
    with contextlib.ExitStack() as stack:
        outcome: Any = None
        while True:
            try:
                step = steps.send(outcome)
            except StopIteration as done:
                settled: tuple[Any, Settled] = done.value
                return settled
            if isinstance(step, Lookup):
                outcome = keeper.lookup(call, reuse=reuse, since=step.since, lock=held)
            elif isinstance(step, Acquire):
                lock = keeper.manager().lock(call.result_id, keeper.lock_timeout)
                held = outcome = stack.enter_context(lock)
            elif isinstance(step, Compute):
                outcome = compute()
            else:
                outcome = keeper.save(call, step.value, replace=step.replace, lock=held)


async def run_async(
    keeper: ResultKeeper,
    call: Call,
    compute: Callable[[], Awaitable[Any]],
    *,
    reuse: Reuse,
    started: datetime,
    look_first: bool = True,
) -> tuple[Any, Settled]:
    """``run_sync`` for a coroutine function: the store's calls run in worker threads
    and the lock is held by a thread of its own, so the event loop never blocks.

    Raises:
        The errors of ``run_sync``.
    """
    steps = compute_once(keeper, started=started, look_first=look_first)
    to_thread = anyio.to_thread.run_sync
    held: HeldLock | None = None
    async with contextlib.AsyncExitStack() as stack:
        outcome: Any = None
        while True:
            try:
                step = steps.send(outcome)
            except StopIteration as done:
                settled: tuple[Any, Settled] = done.value
                return settled
            if isinstance(step, Lookup):
                lookup = functools.partial(keeper.lookup, reuse=reuse, since=step.since, lock=held)
                outcome = await to_thread(lookup, call)
            elif isinstance(step, Acquire):
                lock = functools.partial(keeper.manager().lock, call.result_id, keeper.lock_timeout)
                held = outcome = await stack.enter_async_context(held_in_thread(lock))
            elif isinstance(step, Compute):
                outcome = await compute()
            else:
                save = functools.partial(keeper.save, replace=step.replace, lock=held)
                outcome = await to_thread(save, call, step.value)
