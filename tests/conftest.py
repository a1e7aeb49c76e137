"""Fixtures shared by the whole suite: a real PostgreSQL database per test session and
one session-wide Prefect test harness.

PostgreSQL tests skip with a reason when no server answers, except under ``CI`` where
a missing server fails them.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator

import pytest

# The session's local S3 server (fixtures ``s3_server`` and ``s3_url``).
pytest_plugins = ["tests.s3_server"]

# Prefect reads these when first imported; keep every run's state in a throwaway home.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="results-flow-prefect-"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
# Prefect's 20 s for a temporary server to start is too short on a busy machine; the
# harness gets the same patience (HARNESS_STARTUP_SECONDS) for its own server.
HARNESS_STARTUP_SECONDS = 600
os.environ.setdefault(
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", str(HARNESS_STARTUP_SECONDS)
)
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.pop("RESULTS_FLOW_STORE", None)

PG_ADMIN_URL = os.environ.get(
    "RESULTS_FLOW_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _pg_reachable_or_skip() -> None:
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI requires PostgreSQL at {PG_ADMIN_URL}: {exc}")
        pytest.skip(f"no PostgreSQL server answers at {PG_ADMIN_URL}: {exc}")


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A database of its own on the real server for this test session, dropped after."""
    import sqlalchemy as sa

    _pg_reachable_or_skip()
    name = f"rf_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(PG_ADMIN_URL).set(database=name)
    try:
        yield url.render_as_string(hide_password=False).replace("+psycopg", "")
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url(postgres_server_url: str) -> str:
    """The session database, emptied of results_flow tables before each test."""
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_server_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    _forget_cached_managers(postgres_server_url)
    return postgres_server_url


def _forget_cached_managers(url: str) -> None:
    """results_task keeps one manager per store URL per process; a manager a previous
    test opened on this URL knows a table the schema reset just dropped."""
    from results_flow.prefect import stores

    for key in [key for key in stores._managers if key[1] == url]:
        stores._managers.pop(key).close()


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server for the whole session (about 10 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=HARNESS_STARTUP_SECONDS):
        yield
