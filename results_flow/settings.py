"""Where results go when nobody says: the ``RESULTS_FLOW_STORE`` variable, else the
embedded SQLite store in ``./results_store/results.db``."""

from __future__ import annotations

import os

STORE_ENV = "RESULTS_FLOW_STORE"
DEFAULT_STORE_URL = "sqlite:///results_store/results.db"


def default_store_url() -> str:
    """The store URL from ``RESULTS_FLOW_STORE``, or the embedded default."""
    return os.environ.get(STORE_ENV) or DEFAULT_STORE_URL


REFRESH_ENV = "RESULTS_FLOW_REFRESH"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def refresh_requested() -> bool:
    """Whether ``RESULTS_FLOW_REFRESH`` asks every results_task to recompute (``1``,
    ``true``, ``yes``, ``on``; ``0``, ``false``, ``no``, ``off`` or unset do not).

    Raises:
        ValueError: any other value (a typo must not silently keep old results).
    """
    value = os.environ.get(REFRESH_ENV, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{REFRESH_ENV}={value!r}: use 1 or 0 (also true/false, yes/no, on/off)")
