"""Per-ID OS file locks: exclusive across threads and processes, released by the
kernel when the holder dies, so a killed worker never blocks a later run."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from results_flow.errors import LockTimeoutError


@contextlib.contextmanager
def id_file_lock(lock_dir: Path, result_id: str, timeout: float, location: str) -> Iterator[None]:
    """Hold the lock file of ``result_id`` in ``lock_dir`` for the ``with`` block.

    Raises:
        LockTimeoutError: not acquired within ``timeout`` seconds.
    """
    digest = hashlib.sha256(result_id.encode()).hexdigest()[:32]
    # One lock object per acquisition: flock() then excludes threads of this process too.
    file_lock = FileLock(lock_dir / f"{digest}.lock", is_singleton=False, thread_local=False)
    try:
        file_lock.acquire(timeout=timeout)
    except Timeout as exc:
        raise LockTimeoutError(
            f"lock on {result_id!r} in {location} not acquired within {timeout}s"
        ) from exc
    try:
        yield
    finally:
        file_lock.release()
