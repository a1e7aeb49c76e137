"""The file store: one JSON document per result ID in a folder tree (``store``), written
atomically (``atomic``) under per-ID byte locks (``backends.locks``)."""

from results_flow.backends.file.store import FileBackend

__all__ = ["FileBackend"]
