"""A ``store_url`` per backend kind, so one conformance suite runs on all of them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from results_flow import ResultsManager

KINDS = ["memory", "file", "sqlite", "postgres", "s3"]


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
