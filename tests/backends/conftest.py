"""A ``store_url`` per backend kind, so one conformance suite runs on all of them, a
store defined outside the package (``custom``) included."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from results_flow import ResultsManager
from results_flow.backends.registry import ENTRY_POINT_GROUP

KINDS = ["memory", "file", "sqlite", "postgres", "s3", "custom"]
#: The custom kind: tests/custom_backend, a store outside the package registered by entry
#: point (installed by `make test`'s bootstrap: pip install -e tests/custom_backend).
CUSTOM_SCHEME = "tinystore"


def custom_store_installed() -> None:
    """Fail, saying how to install it, when the custom test store is not installed."""
    if not entry_points(group=ENTRY_POINT_GROUP, name=CUSTOM_SCHEME):
        pytest.fail(
            f"no {CUSTOM_SCHEME!r} entry point in {ENTRY_POINT_GROUP!r}: install the test "
            "store with `pip install -e tests/custom_backend` (make test does)"
        )


def url_for(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh store URL of the given kind (PostgreSQL through the session database)."""
    if kind == "memory":
        return "memory://"
    if kind == "file":
        return f"file://{tmp_path / 'files'}"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'results.db'}"
    if kind == "s3":
        return str(request.getfixturevalue("s3_url"))
    if kind == "custom":
        custom_store_installed()
        return f"{CUSTOM_SCHEME}://{tmp_path / 'tiny'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(params=KINDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return url_for(request.param, tmp_path, request)


@pytest.fixture(params=["file", "sqlite", "postgres", "s3"])
def shared_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store that several processes can open at once."""
    return url_for(request.param, tmp_path, request)


@pytest.fixture
def manager(store_url: str) -> Iterator[ResultsManager]:
    rm = ResultsManager.from_url(store_url)
    yield rm
    rm.close()
