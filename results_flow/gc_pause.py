"""Keep Python's garbage collector off bulk work that makes many objects at once.

Two bounds, for two lengths of work. A long streamed load (minutes, a million rows)
freezes the objects older than it (``older_objects_frozen``); a bounded bulk decode
(``get_many`` of 100k records, one call) pauses collection (``collection_paused``).

A streamed load allocates a few tracked objects per row (the raw row dict, the row
model and its ``__dict__``), so the collector runs full collections every few chunks,
and each one scans every object in the process: the imported modules of SQLAlchemy,
Pydantic and Prefect as much as the chunk at hand. Measured on the 100,000-row load of
``bench/etl.py`` (SQLite): about 0.3 s of 2.3 s CPU went to five full collections,
0.02 s with the objects that existed before the load frozen (``gc.freeze``).

Frozen objects are only left out of collections until the load ends; nothing is kept
alive that would otherwise be freed, and cycles made during the load are collected as
usual. The freeze is process-wide: it is skipped when something else already froze
objects (a pre-fork server, another load running in a thread), and only the load that
froze unfreezes.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def older_objects_frozen() -> Iterator[None]:
    """Run the block with the objects alive at its start left out of collections."""
    if not gc.isenabled() or gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextmanager
def collection_paused() -> Iterator[None]:
    """Run the block with automatic collection off (when it was on), then back on.

    For bounded bulk work whose objects all stay alive: ``get_many`` of 100k stored
    results spent 0.5-0.7 s of about 2 s in full collections that scanned the models it
    had just made (0.3 s was saved by freezing older objects only). Cycles made in the
    block are collected at the next collection after it. Collection is process-wide:
    another thread's work runs uncollected meanwhile, and a block that found collection
    already off (the caller's choice, or a block in another thread) leaves it so.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
