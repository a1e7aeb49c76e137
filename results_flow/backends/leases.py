"""Compute-once locks on an object store: lease objects with a TTL and a heartbeat.

An object store has no sessions to die with their holder, so a lock is an object,
``<prefix>/.results_flow/leases/<hash of the ID>.lease``, and every step on it is a
conditional write the store settles:

- **acquire**: create the lease only if absent (``If-None-Match: *``);
- **heartbeat**: a thread rewrites it every ``ttl / 3`` only if its ETag is still the
  one this holder wrote (``If-Match``); each beat changes the content, so the ETag too;
- **takeover**: a waiter that sees the *same* ETag for ``ttl`` seconds of its own
  clock knows that no heartbeat came, and replaces the lease only if that ETag is
  still there (``If-Match``), so of many waiters one wins. No clocks are compared
  across machines;
- **release**: one last conditional beat proves the lease is still ours, then the
  object is deleted.

A holder whose heartbeat or release finds another ETag has lost the lease: another
worker may be computing the same ID. Its release raises ``LockLostError``; since
results_task stores with ``SKIP_IF_EXISTS`` (a create-only put), what it computed
never replaces the result the other worker stored first.
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
from collections.abc import Iterator
from typing import TYPE_CHECKING

from results_flow.errors import LockLostError, LockTimeoutError, StoreError

if TYPE_CHECKING:
    from results_flow.backends.object_store import ObjectStoreBackend

LEASE_FOLDER = ".results_flow/leases"
#: The longest pause between two looks at a lease held by someone else.
MAX_POLL = 1.0


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
        self._beat = 0
        self._etag: str | None = None
        self._lost: str | None = None
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

    def acquire(self, timeout: float) -> None:
        """Wait for the lease, taking it over from a holder silent for a TTL.

        Raises:
            LockTimeoutError: not acquired within ``timeout`` seconds.
            StoreUnavailableError: the store cannot be reached.
        """
        deadline = time.monotonic() + timeout
        seen: str | None = None
        seen_since = 0.0
        pause = 0.05
        while True:
            written, etag = self.backend.put_object(self.key, self._body(), "create")
            if written:
                self._held(etag)
                return
            current = self.backend.get_object(self.key)
            now = time.monotonic()
            if current is not None:
                content, etag = current
                if etag != seen or etag is None:
                    seen, seen_since = etag, now
                elif now - seen_since >= _ttl_of(content, self.ttl):
                    written, etag = self.backend.put_object(self.key, self._body(), {"e_tag": seen})
                    if written:
                        self.taken_over = True
                        self._held(etag)
                        return
                    seen = None  # someone else took it over, or the holder beat
            else:
                continue  # released between our create and our read: create again
            if now >= deadline:
                raise LockTimeoutError(
                    f"lock on {self.result_id!r} in {self.backend.location} not acquired "
                    f"within {timeout}s (a lease held by another worker)"
                )
            time.sleep(min(pause, max(deadline - now, 0.0), self.ttl / 4))
            pause = min(pause * 2, MAX_POLL)

    def _held(self, etag: str | None) -> None:
        self._etag = etag
        self._thread = threading.Thread(
            target=self._heartbeat, name=f"results-flow-lease-{self.key[-12:]}", daemon=True
        )
        self._thread.start()

    def _renew(self) -> bool:
        """One conditional beat; False when the lease is no longer ours."""
        with self._mutex:
            if self._lost is not None:
                return False
            mode = {"e_tag": self._etag} if self._etag else "overwrite"
            written, etag = self.backend.put_object(self.key, self._body(), mode)
            if written:
                self._etag = etag
                return True
            self._lost = "another worker took it over after its TTL"
            return False

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                if not self._renew():
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
        if not self._renew():
            raise LockLostError(
                f"the lock on {self.result_id!r} in {self.backend.location} was lost while "
                f"held ({self._lost}); another worker may have computed the same result"
            )
        self.backend.delete_object(self.key)

    def abandon(self) -> None:
        """Stop the heartbeat and delete the lease if still ours, raising nothing: the
        ``with`` block already failed with its own error."""
        with contextlib.suppress(StoreError, LockLostError):
            self.release()


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
) -> Iterator[None]:
    """Hold the lease on ``result_id`` for the ``with`` block.

    Raises:
        LockTimeoutError: not acquired within ``timeout`` seconds.
        LockLostError: the lease was taken over before the block ended.
    """
    held = Lease(backend, result_id, ttl)
    held.acquire(timeout)
    try:
        yield
    except BaseException:
        held.abandon()
        raise
    held.release()
