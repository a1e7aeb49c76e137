"""Upgrading stored records instead of recomputing them (issue 23 item 5), on every
store: ``get``/``get_many(on_invalid="migrate")`` on the sync and async managers bring
old records to the model through chained upgrades and write them back; a write made
since the read is never overwritten (``replace_if_unchanged``); ``upgrade_store``
converts a store in bulk and reports converted, failed and untouched."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from results_flow import (
    AsyncResultsBackend,
    AsyncResultsManager,
    InvalidResultsError,
    Record,
    ResultsManager,
    ResultValidationError,
    SetBehavior,
    UpgradeFailedError,
    register_model,
    upgrades,
)
from results_flow.backends.base import ThreadedAsyncBackend
from results_flow.upgrade_store import upgrade_store
from tests.backends.conftest import url_for

NS = "upgrades_test"


class PointV1(BaseModel):
    """How Point was first stored: one number."""

    model_config = ConfigDict(extra="forbid")
    value: float


class PointV2(BaseModel):
    """The second shape: renamed."""

    model_config = ConfigDict(extra="forbid")
    x: float


@register_model(namespace=NS)
class Point(BaseModel):
    x: float
    unit: str


@register_model(namespace=NS)
class Plain(BaseModel):
    """A model without upgrades."""

    n: int


@upgrades(Point)
def point_from_v1(old: PointV1) -> PointV2:
    return PointV2(x=old.value)


@upgrades(Point)
def point_from_v2(old: PointV2) -> Point:
    return Point(x=old.x, unit="m")


@pytest.fixture(params=["memory", "file", "sqlite", "postgres", "s3"])
def rm(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ResultsManager]:
    manager = ResultsManager.from_url(url_for(request.param, tmp_path, request))
    yield manager
    manager.close()


async def close_async_twin(backend: AsyncResultsBackend) -> None:
    """Close an async twin of ``rm.backend`` that owns connections of its own (SQL); a
    threaded twin would close the sync store the test goes on with."""
    if not isinstance(backend, ThreadedAsyncBackend):
        await backend.close()


def plant(rm: ResultsManager, rid: str, data: object, tag: str = "Point") -> Record:
    """Store ``data`` as it was stored before the model changed (no validation)."""
    record = Record(tag, NS, json.dumps(data), metadata={"flow_name": "f", "version": "1"})
    rm.backend.upsert(rid, record)
    stored = rm.backend.read(rid)
    assert stored is not None
    return stored


def test_get_many_migrate_upgrades_across_versions_and_writes_back(rm: ResultsManager) -> None:
    v1 = plant(rm, "p/v1", {"value": 1.5})
    plant(rm, "p/v2", {"x": 2.0})
    rm.set("p/now", Point(x=3.0, unit="km"), namespace=NS)
    plant(rm, "p/bad", {"y": 1})
    ids = ["p/v1", "p/v2", "p/now", "p/bad"]

    with pytest.raises(InvalidResultsError) as caught:
        rm.get_many(ids, Point)  # no migration asked: all three old ones are invalid
    assert sorted(caught.value.invalid) == ["p/bad", "p/v1", "p/v2"]

    with pytest.raises(InvalidResultsError, match="^1 of 4") as caught:
        rm.get_many(ids, Point, on_invalid="migrate")  # "migrate" alone: the rest raises
    assert isinstance(caught.value.invalid["p/bad"], UpgradeFailedError)
    assert 'pass on_invalid=("migrate", "skip")' in str(caught.value)
    assert "older shapes: PointV1, PointV2" in str(caught.value.invalid["p/bad"])
    assert caught.value.found == {
        "p/v1": Point(x=1.5, unit="m"),
        "p/v2": Point(x=2.0, unit="m"),
        "p/now": Point(x=3.0, unit="km"),
    }
    # Written back before the error was raised: valid now without any upgrade.
    assert rm.get_many(["p/v1", "p/v2"], Point) == {
        "p/v1": Point(x=1.5, unit="m"),
        "p/v2": Point(x=2.0, unit="m"),
    }
    record = rm.record("p/v1")
    assert record.created_at == v1.created_at and record.updated_at > v1.updated_at
    assert record.metadata["flow_name"] == "f" and record.metadata["version"] == "1"
    upgraded = record.metadata["upgraded"]
    assert upgraded["from"] == f"{NS}:Point"
    assert [step.rsplit(".", 1)[1] for step in upgraded["steps"]] == [
        "point_from_v1",
        "point_from_v2",
    ]
    assert (record.model_type, record.namespace) == ("Point", NS)

    skipped = rm.get_many(ids, Point, on_invalid=("migrate", "skip"))
    assert sorted(skipped) == ["p/now", "p/v1", "p/v2"]
    assert rm.record("p/bad").data == '{"y": 1}'  # nothing upgradable: left as stored


def test_get_migrate_without_a_class_and_on_the_async_manager(rm: ResultsManager) -> None:
    plant(rm, "g/one", {"value": 4.0})
    plant(rm, "g/two", {"x": 5.0})
    plant(rm, "g/plain", {"n": "not a number"}, tag="Plain")
    with pytest.raises(ResultValidationError):
        rm.get("g/one")  # no migration asked
    assert rm.get("g/one", on_invalid="migrate") == Point(x=4.0, unit="m")  # tag's model
    assert rm.get("g/one") == Point(x=4.0, unit="m")  # written back
    with pytest.raises(ValueError, match="on_invalid must be one of"):
        rm.get("g/one", on_invalid="skip")  # type: ignore[arg-type]

    async def read() -> tuple[Point, dict[str, Point]]:
        arm = AsyncResultsManager(backend=rm.backend)
        try:
            one = await arm.get("g/two", Point, on_invalid="migrate")
            plant(rm, "g/three", {"value": 6.0})
            many = await arm.get_many(["g/three", "g/plain"], Point, on_invalid=("migrate", "skip"))
            return one, many
        finally:
            await close_async_twin(arm.backend)

    one, many = asyncio.run(read())
    assert one == Point(x=5.0, unit="m") and many == {"g/three": Point(x=6.0, unit="m")}
    assert rm.get_many(["g/two", "g/three"], Point) == {
        "g/two": Point(x=5.0, unit="m"),
        "g/three": Point(x=6.0, unit="m"),
    }
    # A model without upgrades: "migrate" raises the plain validation error.
    with pytest.raises(InvalidResultsError, match="does not validate as Plain"):
        rm.get_many(["g/plain"], on_invalid="migrate")


def test_a_write_made_since_the_read_is_never_overwritten(rm: ResultsManager) -> None:
    seen = plant(rm, "w/one", {"value": 1.0})
    upgraded = Record("Point", NS, '{"x":1.0,"unit":"m"}')
    rm.set("w/one", Point(x=9.0, unit="newer"), SetBehavior.OVERWRITE, namespace=NS)
    assert rm.backend.replace_if_unchanged("w/one", upgraded, seen) is False
    assert rm.get("w/one", Point) == Point(x=9.0, unit="newer")
    rm.delete("w/one")
    assert rm.backend.replace_if_unchanged("w/one", upgraded, seen) is False
    assert not rm.exists("w/one")

    current = plant(rm, "w/two", {"value": 2.0})
    assert rm.backend.replace_if_unchanged("w/two", upgraded, current) is True
    assert rm.get("w/two", Point) == Point(x=1.0, unit="m")

    async def async_twin() -> tuple[bool, bool]:
        seen = plant(rm, "w/three", {"value": 3.0})
        backend = rm.backend.to_async()
        try:
            rm.set("w/three", Point(x=8.0, unit="newer"), SetBehavior.OVERWRITE, namespace=NS)
            stale = await backend.replace_if_unchanged("w/three", upgraded, seen)
            fresh = rm.backend.read("w/three")
            assert fresh is not None
            return stale, await backend.replace_if_unchanged("w/three", upgraded, fresh)
        finally:
            await close_async_twin(backend)

    assert asyncio.run(async_twin()) == (False, True)
    assert rm.get("w/three", Point) == Point(x=1.0, unit="m")


def test_upgrade_store_converts_in_bulk_and_reports(rm: ResultsManager) -> None:
    plant(rm, "s/a", {"value": 1.0})
    plant(rm, "s/b", {"x": 2.0})
    rm.set("s/c", Point(x=3.0, unit="m"), namespace=NS)
    plant(rm, "s/d", {"y": 0})
    plant(rm, "s/e", {"n": "x"}, tag="Plain")
    plant(rm, "s/f", {"n": 1}, tag="Gone")
    plant(rm, "other/a", {"value": 1.0})

    dry = upgrade_store(rm, "s", dry_run=True, batch_size=2)
    assert (dry.checked, dry.converted, dry.untouched) == (6, ["s/a", "s/b"], 1)
    assert rm.record("s/a").data == '{"value": 1.0}'  # a dry run writes nothing
    kinds = {failure.id: failure.kind for failure in dry.failed}
    assert kinds == {"s/d": "upgrade_failed", "s/e": "invalid", "s/f": "unknown_model"}

    report = upgrade_store(rm, "s", batch_size=2)
    assert report.converted == ["s/a", "s/b"] and report.changed == [] and not report.ok
    assert rm.get_many(["s/a", "s/b"], Point) == {
        "s/a": Point(x=1.0, unit="m"),
        "s/b": Point(x=2.0, unit="m"),
    }
    assert rm.record("other/a").data == '{"value": 1.0}'  # outside the prefix
    again = upgrade_store(rm, "s")
    assert (again.converted, again.untouched, len(again.failed)) == ([], 3, 3)


def test_get_under_a_held_lock_writes_back_through_it(rm: ResultsManager) -> None:
    """A compute-once task looks its result up again while holding the ID's lock: the
    write-back must go through that lock, not wait for the store's lock on the same ID."""
    plant(rm, "l/one", {"value": 1.0})
    with rm.lock("l/one", timeout=5) as held:
        assert rm.get("l/one", Point, on_invalid="migrate", lock=held) == Point(x=1.0, unit="m")
    assert rm.get("l/one", Point) == Point(x=1.0, unit="m")

    async def under_async_lock() -> Point:
        arm = AsyncResultsManager(backend=rm.backend)
        try:
            async with arm.lock("l/two", timeout=5) as held:
                return await arm.get("l/two", Point, on_invalid="migrate", lock=held)
        finally:
            await close_async_twin(arm.backend)

    plant(rm, "l/two", {"x": 2.0})
    assert asyncio.run(under_async_lock()) == Point(x=2.0, unit="m")
    assert rm.get("l/two", Point) == Point(x=2.0, unit="m")


@pytest.mark.postgres
def test_postgres_write_back_waits_for_a_concurrent_write_and_keeps_it(postgres_url: str) -> None:
    """The row is read FOR UPDATE in the write-back's transaction: a write-back that meets
    an uncommitted write waits for it, then sees it and writes nothing. (A plain read
    would have compared the old committed row and then overwritten the newer write.)"""
    import psycopg

    rm = ResultsManager.from_url(postgres_url)
    try:
        seen = plant(rm, "c/one", {"value": 1.0})
        upgraded = Record("Point", NS, '{"x":1.0,"unit":"m"}')
        with psycopg.connect(postgres_url) as other:
            other.execute(
                "UPDATE results_flow_records SET data = %s, updated_at = now() WHERE id = %s",
                ('{"x": 7.0, "unit": "concurrent"}', "c/one"),
            )  # left uncommitted: the row stays locked
            outcome: list[bool] = []
            writer = threading.Thread(
                target=lambda: outcome.append(
                    rm.backend.replace_if_unchanged("c/one", upgraded, seen)
                )
            )
            writer.start()
            with psycopg.connect(postgres_url, autocommit=True) as watch:
                while (
                    writer.is_alive()
                    and not watch.execute(
                        "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND query LIKE %s AND pid <> %s",
                        ("%results_flow_records%", other.info.backend_pid),
                    ).fetchone()
                ):
                    time.sleep(0.01)
            assert writer.is_alive()  # blocked on the row, not done
            other.commit()
        writer.join()
        assert outcome == [False]
        assert rm.get("c/one", Point) == Point(x=7.0, unit="concurrent")
    finally:
        rm.close()
