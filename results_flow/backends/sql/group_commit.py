"""Group commit: the writes of one process that commit at the same moment share one
durable transaction.

A writer hands its write (a function of a ``RowTransaction``) to its store's
``GroupCommit`` and waits. One writer at a time leads: it takes every write queued so
far, runs them in one transaction through the runner's ``commit`` and hands each writer
its own outcome; writes queued while it committed form the next batch. So N writers
that arrive during a commit pay one commit (one fsync) together, a lone writer leads a
batch of one at once (no wait, no extra statement: its latency is that of a plain
transaction), and a write returns only after the commit that holds it: acknowledged
means durable. A killed process loses only writes that were never acknowledged, and
never half a batch (one transaction).

Each write keeps its own outcome. An insert that meets a stored ID is no error (the
plan reads the stored record, and the caller's ``SetBehavior`` decides); a write that
raises inside a batch rolls the batch back (``run_each`` says so with ``WriteFailed``),
and each write of it then runs alone in a transaction of its own, with the full retry
rule of ``sql.engine.Retry``: the failing one gets its own error, the others commit.
Errors are rare, so the common path pays no SAVEPOINT per write. A failure of the
batch's own transaction (BEGIN, COMMIT, a store that stays busy) is every write's
failure, as it would be each one's alone.

Written once for the driver runners: ``SqliteRowRunner`` and ``PsycopgRowRunner`` give
their writes one group each (``AsyncSqlBackend`` writes through them too). A write made
for a PostgreSQL held lock does not join a group: it commits alone in the session that
holds the lock (``sql.pg_lock.PgHeldLock``), which is its fence. SQLite's held locks die
only with the process, so their writes join the group as any other.
"""

from __future__ import annotations

import copy
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar, cast

from results_flow.backends.sql.runner import RowTransaction
from results_flow.errors import StoreBusyError, StoreError

T = TypeVar("T")

#: One write: its statements inside a transaction; its return value is the write's outcome.
Write = Callable[[RowTransaction], Any]


class WriteFailed(Exception):
    """A write of a batch raised: the batch was rolled back and its writes run alone."""


def run_each(writes: Sequence[Write], rows: RowTransaction) -> list[Any]:
    """Run ``writes`` in the open transaction ``rows``; their outcomes, in order.

    Raises:
        WriteFailed: a write of a batch of several raised (the caller rolls back).
        Exception: a lone write's own error, as it raised it.
    """
    if len(writes) == 1:
        return [writes[0](rows)]
    outcomes = []
    for write in writes:
        try:
            outcomes.append(write(rows))
        except Exception as exc:
            raise WriteFailed from exc
    return outcomes


class _Pending(Generic[T]):
    """One write waiting for the commit that holds it."""

    __slots__ = ("batch", "done", "error", "shared", "taken", "value", "wake", "write")

    def __init__(self, write: Write) -> None:
        self.write = write
        self.taken = False  # in a batch being committed: it may land, so it cannot give up
        self.done = False
        #: Released once the write is done, or when its thread is to lead ``batch``: each
        #: writer waits on its own lock (one Condition woke every writer at each commit).
        self.wake = threading.Lock()
        self.wake.acquire()
        self.batch: list[_Pending[Any]] | None = None
        self.value: Any = None
        self.error: BaseException | None = None
        self.shared = False  # the error is the whole batch's, raised in several threads

    def outcome(self) -> Any:
        if self.error is None:
            return self.value
        if not self.shared:
            raise self.error
        # Each writer's thread raises its own copy (a traceback is per raise).
        try:
            error = copy.copy(self.error)
        except Exception:  # noqa: BLE001 - one that cannot be rebuilt from its args
            raise self.error  # noqa: B904 (the error itself, not one raised while copying)
        raise error.with_traceback(None) from self.error


class GroupCommit:
    """The writes of one store (or one lock session) in this process, batched per commit.

    ``commit(writes)`` runs the writes in one transaction, committed (retried as the
    runner's rule says), and returns their outcomes in order; ``wait`` bounds how long a
    write waits for other batches before it is taken (None: no bound of its own);
    ``lanes`` batches may commit at once (SQLite: 1, its one writer; PostgreSQL: a few
    connections, as the server flushes concurrent commits together).
    """

    def __init__(
        self,
        commit: Callable[[Sequence[Write]], list[Any]],
        *,
        wait: float | None,
        location: str,
        lanes: int = 1,
    ) -> None:
        self.commit = commit
        self.wait = wait
        self.location = location
        self.lanes = lanes
        self._reset()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forget_after_fork(ref()))

    def _reset(self) -> None:
        self._mutex = threading.Lock()
        self._queue: list[_Pending[Any]] = []
        self._leaders = 0  # batches being committed

    def write(self, write: Callable[[RowTransaction], T]) -> T:
        """``write``'s outcome once the transaction that holds it has committed.

        Raises:
            StoreBusyError: other batches held the store past ``wait``; nothing written.
            StoreError: the write's own error, or its batch's, as the runner raised it.
        """
        pending: _Pending[T] = _Pending(write)
        with self._mutex:
            self._queue.append(pending)
            batch = self._take() if self._leaders < self.lanes else None
        if batch is None:
            self._wait(pending)
            if pending.done:
                return pending.outcome()  # type: ignore[no-any-return]
            # Not done, so woken to lead: the leader before handed this batch over.
            batch = cast("list[_Pending[Any]]", pending.batch)
        successor = None
        try:
            self._lead(batch)
        finally:
            with self._mutex:
                self._leaders -= 1
                if self._queue and self._leaders < self.lanes:
                    successor = self._queue[0]
                    successor.batch = self._take()
            for done in batch:
                if done is not pending:
                    done.wake.release()
            if successor is not None:
                successor.wake.release()
        return pending.outcome()  # type: ignore[no-any-return]

    def _take(self) -> list[_Pending[Any]]:
        """Under the mutex: every queued write, as the next batch (one more leader)."""
        self._leaders += 1
        batch, self._queue = self._queue, []
        for queued in batch:
            queued.taken = True
        return batch

    def _wait(self, pending: _Pending[Any]) -> None:
        """Until ``pending`` is done or its thread is to lead; a write not yet taken into
        a batch gives up after ``wait`` seconds.

        Raises:
            StoreBusyError: not taken in time; nothing written.
        """
        timeout = -1 if self.wait is None else self.wait
        while not pending.wake.acquire(timeout=timeout):
            with self._mutex:
                if not pending.taken and pending.batch is None:
                    self._queue.remove(pending)
                    raise StoreBusyError(
                        f"{self.location} stayed locked by other writers of this process "
                        f"for {self.wait}s"
                    )
            timeout = -1  # taken: it may land, so it waits for its outcome

    def _lead(self, batch: list[_Pending[Any]]) -> None:
        """Commit ``batch`` and give each write its outcome (this thread's included)."""
        try:
            outcomes = self.commit([p.write for p in batch])
        except WriteFailed:
            for pending in batch:  # each alone: the failing write gets its own error
                self._settle_alone(pending)
            return
        except Exception as exc:  # noqa: BLE001 - raised in each writer's thread
            for pending in batch:
                pending.error, pending.shared, pending.done = exc, len(batch) > 1, True
            return
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: in the leader only
            for pending in batch:
                pending.error = StoreError(
                    f"a write to {self.location} was interrupted ({type(exc).__name__}) "
                    "while it committed with this one: this write may not have landed"
                )
                pending.done = True
            raise
        for pending, value in zip(batch, outcomes, strict=True):
            pending.value, pending.done = value, True

    def _settle_alone(self, pending: _Pending[Any]) -> None:
        """Commit ``pending`` in a transaction of its own; its outcome, or its error."""
        try:
            pending.value = self.commit([pending.write])[0]
        except Exception as exc:  # noqa: BLE001 - raised in the writer's thread
            pending.error = exc
        pending.done = True


def _forget_after_fork(group: GroupCommit | None) -> None:
    """In a forked child: no batch of the parent's is this process's to wait for."""
    if group is not None:
        group._reset()
