"""Compute-once locks on an object store: lease objects with a TTL and a heartbeat.

An object store has no sessions to die with their holder, so a lock is an object,
``<prefix>/.results_flow/leases/<hash of the ID>.lease``, and every step on it is a
conditional write the store settles:

- **acquire**: create the lease only if absent (``If-None-Match: *``);
- **heartbeat**: a thread rewrites it every ``ttl / LEASE_BEATS_PER_TTL`` only if its
  ETag is still the one this holder wrote (``If-Match``); each beat changes the
  content, so the ETag too;
- **takeover**: a waiter that sees the *same* ETag for ``ttl`` seconds of its own
  clock knows that no heartbeat came, and replaces the lease only if that ETag is
  still there (``If-Match``), so of many waiters one wins. No clocks are compared
  across machines;
- **fenced writes**: a write through the held lock (``LeaseLock``) first renews the
  lease (``If-Match``) and starts only if that renew came back within
  ``LEASE_WRITE_WINDOW`` of the TTL: a waiter restarts its TTL count when it sees the
  new ETag, so the write has the rest of the TTL to land before anyone can take over.
  A renew that finds another ETag refuses the write with ``LockLostError``;
- **release**: one last conditional beat proves the lease is still ours, then the
  object is deleted.

Every lease body names its holder (a random token) and its beat number, so a put
whose response was lost, and which the client sent again, is recognised as this
holder's own when the retry fails its condition: it reads the lease back and finds
its own token and beat.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from results_flow.backends.held import HeldLock
from results_flow.errors import LockLostError, LockTimeoutError, StoreError
from results_flow.records import Record
from results_flow.settings import (
    LEASE_BEATS_PER_TTL,
    LEASE_FIRST_POLL,
    LEASE_MAX_POLL,
    LEASE_WRITE_WINDOW,
)

if TYPE_CHECKING:
    from results_flow.backends.object_store.store import ObjectStoreBackend

LEASE_FOLDER = ".results_flow/leases"


def lease_key(result_id: str) -> str:
    """The object (below the store's prefix) that holds the lease on an ID."""
    return f"{LEASE_FOLDER}/{hashlib.sha256(result_id.encode()).hexdigest()[:40]}.lease"


class Lease:
    """One holder's lease on one ID; ``acquire`` then ``release`` (see the module)."""

    def __init__(self, backend: ObjectStoreBackend, result_id: str, ttl: float) -> None:
        self.backend = backend
        self.result_id = result_id
        self.ttl = ttl
        self.key = lease_key(result_id)
        self.token = uuid.uuid4().hex
        self.taken_over = False
        self.lost: str | None = None
        self._beat = 0
        self._etag: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()

    def _body(self) -> bytes:
        self._beat += 1
        return json.dumps(
            {
                "result_id": self.result_id,
                "holder": self.token,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "beat": self._beat,
                "ttl": self.ttl,
                "renewed_at": time.time(),
            }
        ).encode()

    def _put(self, mode: Any) -> bool:
        """Put the next beat under the condition ``mode``; True when it is stored.

        A failed condition may be this holder's own doing: a put whose answer was lost
        and which the client sent again, or a beat that landed though its request
        reported an error. The lease read back then still names this holder's token,
        which no other worker writes: the put is taken as done (same beat) or made
        again on the ETag found (an earlier beat).
        """
        for _ in range(2):
            written, etag = self.backend.put_object(self.key, self._body(), mode)
            if written:
                self._etag = etag
                return True
            current = self.backend.get_object(self.key)
            if current is None:
                return False
            holder, beat = _beat_of(current.content)
            if holder != self.token:
                return False
            if beat == self._beat:
                self._etag = current.etag
                return True
            mode = {"e_tag": current.etag} if current.etag else "overwrite"
        return False

    def acquire(self, timeout: float) -> None:
        """Wait for the lease, taking it over from a holder silent for a TTL.

        Raises:
            LockTimeoutError: not acquired within ``timeout`` seconds.
            StoreUnavailableError: the store cannot be reached, or its bucket is gone.
        """
        deadline = time.monotonic() + timeout
        seen: str | None = None
        seen_since = 0.0
        pause = LEASE_FIRST_POLL
        while True:
            if self._put("create"):
                return self._held()
            current = self.backend.get_object(self.key)
            now = time.monotonic()
            if current is not None:  # None: released meanwhile; create again after a pause
                if current.etag != seen or current.etag is None:
                    seen, seen_since = current.etag, now
                elif now - seen_since >= _ttl_of(current.content, self.ttl):
                    if self._put({"e_tag": seen}):
                        self.taken_over = True
                        return self._held()
                    seen = None  # someone else took it over, or the holder beat
            if now >= deadline:
                raise LockTimeoutError(
                    f"lock on {self.result_id!r} in {self.backend.location} not acquired "
                    f"within {timeout}s (a lease held by another worker)"
                )
            time.sleep(min(pause, max(deadline - now, 0.0), self.ttl / 4))
            pause = min(pause * 2, LEASE_MAX_POLL)

    def _held(self) -> None:
        self._thread = threading.Thread(
            target=self._heartbeat, name=f"results-flow-lease-{self.key[-12:]}", daemon=True
        )
        self._thread.start()

    def renew(self) -> bool:
        """One conditional beat; False when the lease is no longer ours.

        Raises:
            StoreUnavailableError: the store cannot be reached.
        """
        with self._mutex:
            if self.lost is not None:
                return False
            if self._put({"e_tag": self._etag} if self._etag else "overwrite"):
                return True
            self.lost = "another worker took it over after its TTL"
            return False

    def prove(self, refuse: Callable[[str], LockLostError]) -> None:
        """Renew now, so that a write started next lands while the lease is ours.

        Raises:
            LockLostError: (made by ``refuse``) the lease is lost, or the renew took so
                long that a write could land after a waiter's takeover.
        """
        sent = time.monotonic()
        if not self.renew():
            raise refuse(self.lost or "lost")
        took = time.monotonic() - sent
        if took > self.ttl * LEASE_WRITE_WINDOW:
            raise refuse(
                f"renewing it took {took:.1f}s of its {self.ttl}s TTL, too late for a write "
                "to land before another worker could take it over"
            )

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / LEASE_BEATS_PER_TTL):
            try:
                if not self.renew():
                    return
            except StoreError:
                continue  # a failed request: the next beat tries again; release decides

    def release(self) -> None:
        """Stop the heartbeat and give the lease back.

        Raises:
            LockLostError: the lease was taken over while held.
            StoreUnavailableError: the store cannot be reached.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if not self.renew():
            raise LockLostError(
                f"the lock on {self.result_id!r} in {self.backend.location} was lost while "
                f"held ({self.lost}); another worker may have computed the same result"
            )
        self.backend.delete_object(self.key)

    def abandon(self) -> None:
        """Stop the heartbeat and delete the lease if still ours, raising nothing: the
        ``with`` block already failed with its own error."""
        with contextlib.suppress(StoreError, LockLostError):
            self.release()


class LeaseLock(HeldLock):
    """The held lease of ``lock(id)``: each write through it renews the lease first."""

    fences_writes = True

    def __init__(self, backend: ObjectStoreBackend, held: Lease) -> None:
        super().__init__(backend, held.result_id)
        self.store = backend
        self.lease = held

    def lost_reason(self) -> str | None:
        return self.lease.lost

    def fence(self) -> None:
        """Before each put or delete of the record: prove the lease (``Lease.prove``)."""
        self.lease.prove(self.lost_error)

    def _insert(self, result_id: str, record: Record) -> Record | None:
        return self.store.insert(result_id, record, fence=self.fence)

    def _upsert(self, result_id: str, record: Record) -> None:
        self.store.upsert(result_id, record, fence=self.fence)

    def _delete(self, result_id: str) -> bool:
        return self.store.delete(result_id, fence=self.fence)


def _beat_of(content: bytes) -> tuple[object, object]:
    """The (holder token, beat number) a lease body names."""
    try:
        body = json.loads(content)
    except ValueError:
        return None, None
    return (body.get("holder"), body.get("beat")) if isinstance(body, dict) else (None, None)


def _ttl_of(content: bytes, default: float) -> float:
    """The TTL a lease's holder announced (a holder may use a longer one than ours)."""
    try:
        value = json.loads(content).get("ttl")
    except (ValueError, AttributeError):
        return default
    return float(value) if isinstance(value, int | float) and value > 0 else default


@contextlib.contextmanager
def lease(
    backend: ObjectStoreBackend, result_id: str, timeout: float, ttl: float
) -> Iterator[LeaseLock]:
    """Hold the lease on ``result_id`` for the ``with`` block; writes go through the
    ``LeaseLock`` it yields.

    Raises:
        LockTimeoutError: not acquired within ``timeout`` seconds.
        LockLostError: the lease was taken over before the block ended.
    """
    held = Lease(backend, result_id, ttl)
    held.acquire(timeout)
    try:
        yield LeaseLock(backend, held)
    except BaseException:
        held.abandon()
        raise
    held.release()
