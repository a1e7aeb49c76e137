"""Atomic file replacement: what the file store and the folder data manager share.

Write to a hidden temporary file in the target's folder, flush, fsync, ``os.replace``
it over the target, then fsync the folder so the rename survives a crash. A reader
sees the old file or the new one, never half of one; a writer killed midway leaves at
most a hidden ``.tmp`` file. Folders made on the way are fsynced into their parents,
so an acknowledged file never vanishes with the folder that held it.

Files are created with mode ``0o666`` less the umask, as a plain ``open()`` creates
them, so a store shared by users of one group stays readable by all of them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path

#: The characters of a temporary file's random part (those of ``tempfile``), which
#: ``results_flow.stray`` recognizes: ``.<name>.<8 of these>.tmp``.
TEMP_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789_"
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL
_TEMP_FLAGS |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def write_atomic(path: Path, content: bytes) -> None:
    """Replace ``path`` with ``content`` atomically and durably.

    Raises:
        OSError: the write failed; the temporary file is gone, ``path`` is untouched.
    """
    _publish(path, content, link=False)


def create_atomic(path: Path, content: bytes) -> bool:
    """Create ``path`` holding ``content``, durably, unless it exists; False when it does.

    The content is written in full to a temporary file that is then hard-linked to
    ``path``; the link fails when ``path`` exists, so of racing creators exactly one
    wins, and no reader ever sees half a file.

    Raises:
        OSError: the write failed (or the filesystem has no hard links).
    """
    try:
        _publish(path, content, link=True)
    except FileExistsError:
        return False
    return True


def _publish(path: Path, content: bytes, *, link: bool) -> None:
    """Write ``content`` to a temporary file beside ``path``, then put it in place."""
    fd, temp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        if link:
            os.link(temp, path)
        else:
            os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    if link:
        os.unlink(temp)
    fsync_folder(path.parent)


def _create_temp(path: Path) -> tuple[int, str]:
    """A new hidden temporary file beside ``path``: its descriptor and name."""
    for _ in range(100):
        suffix = "".join(secrets.choice(TEMP_ALPHABET) for _ in range(8))
        temp = os.path.join(path.parent, f".{path.name}.{suffix}.tmp")
        try:
            # 0o666: the kernel takes the umask off, as for open(path, "w").
            return os.open(temp, _TEMP_FLAGS, 0o666), temp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary file name", str(path.parent))


def make_folders(folder: Path) -> None:
    """Create ``folder`` and its missing parents, each fsynced into its parent.

    Raises:
        OSError: a folder cannot be created (a file in the way, no permission).
    """
    if os.path.isdir(folder):
        return
    missing = []
    current = folder
    while not os.path.isdir(current):
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for new in reversed(missing):
        # Another writer may make it at the same moment; fsync its entry all the same,
        # since that writer may not have done so yet when our file is acknowledged.
        with contextlib.suppress(FileExistsError):
            os.mkdir(new)
        fsync_folder(new.parent)


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable where the OS allows opening a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        # Some filesystems refuse fsync on a folder; the rename is atomic all the same.
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
