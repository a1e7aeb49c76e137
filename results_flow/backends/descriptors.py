"""Whether this process has run out of file descriptors, and what to tell the user.

Drivers say little when a process can open no more files: SQLite "unable to open
database file", libpq "could not create socket", obstore that a connection failed,
asyncio a bare OSError. Every store's error mapping asks here, so all of them name the
cause and the remedy alike.
"""

from __future__ import annotations

import errno
import os

#: What every store adds to its error when no file descriptor is left.
NO_DESCRIPTORS_HINT = (
    "this process has no file descriptor left (EMFILE): raise `ulimit -n` or run fewer "
    "threads, each of which keeps its own connections"
)


def out_of_descriptors() -> bool:
    """Whether this process can open no more files right now."""
    try:
        os.close(os.open(os.devnull, os.O_RDONLY))
    except OSError as exc:
        return exc.errno in (errno.EMFILE, errno.ENFILE)
    return False
