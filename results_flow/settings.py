"""Where results go when nobody says: the ``RESULTS_FLOW_STORE`` variable, else the
embedded SQLite store in ``./results_store/results.db``."""

from __future__ import annotations

import os

STORE_ENV = "RESULTS_FLOW_STORE"
DEFAULT_STORE_URL = "sqlite:///results_store/results.db"


def default_store_url() -> str:
    """The store URL from ``RESULTS_FLOW_STORE``, or the embedded default."""
    return os.environ.get(STORE_ENV) or DEFAULT_STORE_URL
