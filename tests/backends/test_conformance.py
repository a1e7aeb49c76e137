"""The same behaviour on every backend: memory, file, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa

from results_flow import (
    AsyncResultsManager,
    CorruptRecordError,
    InvalidResultsError,
    ResultConflictError,
    ResultExistsError,
    ResultNotFoundError,
    ResultsManager,
    ResultValidationError,
    SetBehavior,
    UnknownModelError,
)
from results_flow.backends.object_store.store import ObjectStoreBackend
from results_flow.backends.sql.store import SqlBackend
from tests.backends.models import Color, Everything, Item, Person, Team

JOHN = Person(name="John Doe", age=30, email="john@example.com")


def test_basic_usage_round_trip(manager: ResultsManager) -> None:
    team = Team(
        name="Engineering", members=[Person(name="John", age=30), Person(name="Jane", age=28)]
    )
    assert manager.set("people/john", JOHN) is True
    assert manager.set("teams/engineering", team) is True
    assert manager.get("people/john") == JOHN
    assert manager.get("teams/engineering", Team) == team
    assert manager.list_ids() == ["people/john", "teams/engineering"]
    assert manager.list_ids("teams") == ["teams/engineering"]
    assert manager.exists("people/john") and not manager.exists("people/jane")
    assert manager.delete("people/john") is True
    assert manager.delete("people/john") is False
    assert not manager.exists("people/john")


def test_round_trips_every_common_type(manager: ResultsManager) -> None:
    value = Everything(
        when=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2))),
        day=date(2026, 2, 28),
        uid=uuid.UUID("12345678-1234-5678-1234-567812345678"),
        amount=Decimal("12345.678901234567890"),
        color=Color.BLUE,
        team=Team(name="t", members=[JOHN]),
        maybe=None,
        tags=["a", "ü", "日本"],
        scores={"x": 1.5, "y": -0.0},
    )
    manager.set("types/everything", value)
    back = manager.get("types/everything", Everything)
    assert back == value
    assert back.when.utcoffset() == timedelta(hours=2)
    assert isinstance(back.amount, Decimal) and back.color is Color.BLUE


def test_id_as_list_of_segments(manager: ResultsManager) -> None:
    manager.set(["a", "b", "c"], JOHN)
    assert manager.get("a/b/c") == JOHN
    assert manager.list_ids(["a", "b"]) == ["a/b/c"]


def test_list_ids_matches_whole_segments_sorted_and_case_sensitive(manager: ResultsManager) -> None:
    for rid in ["a", "a/x", "a/x/y", "ab", "ab/z", "A/q", "a0", "a.b", "b/a"]:
        manager.set(rid, JOHN)
    assert manager.list_ids("a") == ["a", "a/x", "a/x/y"]
    assert manager.list_ids("a/x") == ["a/x", "a/x/y"]
    assert manager.list_ids("A") == ["A/q"]
    assert manager.list_ids("zz") == []
    assert manager.list_ids() == sorted(manager.list_ids())
    assert len(manager.list_ids()) == 9


class TestSetBehavior:
    """Every row of the SetBehavior table in DESIGN.md."""

    def test_raise_if_exists_is_default_and_raises(self, manager: ResultsManager) -> None:
        assert manager.set("k", JOHN) is True
        with pytest.raises(ResultExistsError, match="'k'"):
            manager.set("k", Person(name="Other", age=1))
        assert manager.get("k") == JOHN
        with pytest.raises(FileExistsError):
            manager.set("k", JOHN, SetBehavior.RAISE_IF_EXISTS)

    def test_skip_if_exists_never_writes(self, manager: ResultsManager) -> None:
        assert manager.set("k", JOHN, SetBehavior.SKIP_IF_EXISTS) is True
        assert manager.set("k", Person(name="Other", age=1), SetBehavior.SKIP_IF_EXISTS) is False
        assert manager.set("k", Item(index=1), SetBehavior.SKIP_IF_EXISTS) is False
        assert manager.get("k") == JOHN

    def test_raise_if_different_equal_is_a_no_op(self, manager: ResultsManager) -> None:
        assert manager.set("k", JOHN, SetBehavior.RAISE_IF_DIFFERENT) is True
        created = manager.record("k").updated_at
        assert manager.set("k", JOHN.model_copy(), SetBehavior.RAISE_IF_DIFFERENT) is False
        assert manager.record("k").updated_at == created

    def test_raise_if_different_other_data_raises(self, manager: ResultsManager) -> None:
        manager.set("k", JOHN)
        with pytest.raises(ResultConflictError, match="different data"):
            manager.set("k", Person(name="John Doe", age=31), SetBehavior.RAISE_IF_DIFFERENT)
        assert manager.get("k") == JOHN

    def test_conflict_error_is_a_file_exists_error_like_the_originals(
        self, manager: ResultsManager
    ) -> None:
        # Regression (issue 13 item 13): code written for the original ResultsManager catches
        # FileExistsError around RAISE_IF_DIFFERENT.
        manager.set("k", JOHN)
        with pytest.raises(FileExistsError):
            manager.set("k", Person(name="John Doe", age=31), SetBehavior.RAISE_IF_DIFFERENT)

    def test_raise_if_different_other_model_type_raises(self, manager: ResultsManager) -> None:
        manager.set("k", Item(index=1))
        # Same JSON shape is not enough: the type tag differs.
        with pytest.raises(ResultConflictError, match="type default:Item"):
            manager.set("k", Person(name="x", age=1), SetBehavior.RAISE_IF_DIFFERENT)
        assert manager.get("k") == Item(index=1)

    def test_overwrite_replaces_and_keeps_created_time(self, manager: ResultsManager) -> None:
        assert manager.set("k", JOHN, SetBehavior.OVERWRITE) is True
        first = manager.record("k")
        other = Person(name="Other", age=2)
        assert manager.set("k", other, SetBehavior.OVERWRITE) is True
        second = manager.record("k")
        assert manager.get("k") == other
        assert second.created_at == first.created_at
        assert second.updated_at >= first.updated_at


def test_record_metadata_and_times(manager: ResultsManager) -> None:
    before = datetime.now(UTC)
    manager.set("m", JOHN, metadata={"flow": "f", "params": {"x": [1, 2]}})
    record = manager.record("m")
    assert record.metadata == {"flow": "f", "params": {"x": [1, 2]}}
    assert record.model_type == "Person" and record.namespace == "default"
    assert before - timedelta(seconds=1) <= record.created_at <= datetime.now(UTC)
    assert record.created_at.tzinfo is not None


def test_batch_reads(manager: ResultsManager) -> None:
    ids = [f"batch/{i}" for i in range(50)]
    for i, rid in enumerate(ids[:30]):
        manager.set(rid, Item(index=i))
    asked = [*ids, "batch/0", "nothing/here"]
    assert manager.exists_many(asked) == set(ids[:30])
    found = manager.get_many(asked, Item)
    assert list(found) == ids[:30]
    assert found["batch/7"] == Item(index=7)
    assert manager.get_many(["batch/3"]) == {"batch/3": Item(index=3)}
    assert manager.get_many([]) == {} and manager.exists_many([]) == set()


def test_batch_reads_find_ids_with_quotes_wildcards_and_non_ascii(manager: ResultsManager) -> None:
    """SQL stores bind a batch's IDs as one array or JSON text: each must arrive intact."""
    ids = ["q/it's", 'q/say "hi"', "q/100%", "q/a_b", "q/*", "q/é ü 中", "q/[x]", "q/{}", "q/,"]
    for i, rid in enumerate(ids):
        manager.set(rid, Item(index=i))
    assert manager.exists_many([*ids, "q/it"]) == set(ids)
    assert manager.get_many([*ids, "q/a%b"], Item) == {
        rid: Item(index=i) for i, rid in enumerate(ids)
    }


def test_clear_removes_everything(manager: ResultsManager) -> None:
    manager.set("a/b", JOHN)
    manager.set("c", JOHN)
    manager.clear()
    assert manager.list_ids() == []
    manager.set("a/b", JOHN)
    assert manager.list_ids() == ["a/b"]


def test_missing_id_raises_named_error(manager: ResultsManager) -> None:
    with pytest.raises(ResultNotFoundError, match="'no/such'") as info:
        manager.get("no/such")
    assert isinstance(info.value, KeyError) and isinstance(info.value, FileNotFoundError)


def test_stored_data_failing_the_asked_model_names_id_and_model(manager: ResultsManager) -> None:
    manager.set("p", JOHN)
    with pytest.raises(ResultValidationError, match=r"'p'.*Item"):
        manager.get("p", Item)
    assert manager.get("p") == JOHN


def test_unregistered_type_tag_names_tag_and_namespace(manager: ResultsManager) -> None:
    from pydantic import BaseModel

    class Unregistered(BaseModel):
        x: int

    manager.set("u", Unregistered(x=1))
    with pytest.raises(UnknownModelError, match=r"'u'.*'Unregistered'.*'default'"):
        manager.get("u")
    assert manager.get("u", Unregistered) == Unregistered(x=1)


def test_non_model_value_is_refused_and_nothing_is_written(manager: ResultsManager) -> None:
    with pytest.raises(ResultValidationError, match="'x'.*dict"):
        manager.set("x", {"name": "a"})  # type: ignore[arg-type]
    assert not manager.exists("x")


def test_model_that_does_not_round_trip_is_refused(manager: ResultsManager) -> None:
    bad = Person.model_construct(name="x", age="not a number")
    with pytest.raises(ResultValidationError, match="'bad'.*Person"):
        manager.set("bad", bad)
    assert not manager.exists("bad")


def test_switching_backends_keeps_the_api(manager: ResultsManager, tmp_path: object) -> None:
    manager.set("k", JOHN)
    original = manager.backend
    other = ResultsManager("memory://").backend
    manager.backend = other
    assert not manager.exists("k")
    manager.set("k", Item(index=1))
    manager.backend = original
    assert manager.get("k") == JOHN


# --- a damaged record: the same named error through both APIs (issue 20 item 3) ------


def _damage(rm: ResultsManager, result_id: str) -> None:
    """Damage the stored record of ``result_id`` the way a foreign writer or a bad disk
    would, in the store's own representation."""
    backend = rm.backend
    if isinstance(backend, SqlBackend):
        # SQLite keeps times as text (the case); PostgreSQL's are typed.
        column, value = ("created_at", "not a time") if backend.is_sqlite else ("metadata", "[1]")
        with backend.engine.begin() as conn:
            conn.execute(
                sa.update(backend.table)
                .where(backend.table.c.id == result_id)
                .values({column: sa.literal_column(f"'{value}'")})
            )
    elif isinstance(backend, ObjectStoreBackend):
        backend.put_object(backend.key_for(result_id), b"{", "overwrite")
    elif hasattr(backend, "path_for"):  # a store of one file per ID (file, custom)
        backend.path_for(result_id).write_text("{")
    else:
        pytest.skip(f"{type(backend).__name__} keeps records as objects: none to damage")


def test_a_damaged_record_reads_alike_through_both_apis(
    manager: ResultsManager, store_url: str
) -> None:
    """record raises CorruptRecordError; get_many skips it with on_invalid="skip" and
    counts it with "raise", in ResultsManager and AsyncResultsManager alike (the async
    SQLite store raised a bare ValueError from SQLAlchemy's time parsing). get reads only
    the type tag, namespace and data: where the damage is in a time or the metadata (a
    SQL row), it still returns the value, in both APIs."""
    manager.set("good", JOHN)
    manager.set("bad", JOHN)
    _damage(manager, "bad")
    damaged_envelope_only = isinstance(manager.backend, SqlBackend)

    with pytest.raises(CorruptRecordError, match="bad"):
        manager.record("bad")
    if damaged_envelope_only:
        assert manager.get("bad", Person) == JOHN
    else:
        with pytest.raises(CorruptRecordError, match="bad"):
            manager.get("bad", Person)
    assert manager.get_many(["good", "bad"], Person, on_invalid="skip") == {"good": JOHN}
    with pytest.raises(InvalidResultsError) as caught:
        manager.get_many(["good", "bad"], Person)
    assert list(caught.value.invalid) == ["bad"] and caught.value.found == {"good": JOHN}

    async def through_async() -> None:
        async with AsyncResultsManager.from_url(store_url) as arm:
            with pytest.raises(CorruptRecordError, match="bad"):
                await arm.record("bad")
            if damaged_envelope_only:
                assert await arm.get("bad", Person) == JOHN
            else:
                with pytest.raises(CorruptRecordError, match="bad"):
                    await arm.get("bad", Person)
            skipped = await arm.get_many(["good", "bad"], Person, on_invalid="skip")
            assert skipped == {"good": JOHN}
            with pytest.raises(InvalidResultsError) as caught:
                await arm.get_many(["good", "bad"], Person)
            assert list(caught.value.invalid) == ["bad"] and caught.value.found == {"good": JOHN}

    asyncio.run(through_async())


def test_the_narrow_read_of_get_matches_the_record(manager: ResultsManager) -> None:
    """``read_data`` (what get validates) gives the record's tag, namespace and data, and
    None for a missing ID, through both APIs; get without a class rebuilds by that tag."""
    manager.set("narrow/one", JOHN, namespace="people", metadata={"flow": "f"})
    record = manager.record("narrow/one")
    expected = (record.model_type, record.namespace, record.data)

    def fields(stored: object) -> tuple[object, ...]:
        return tuple(getattr(stored, name) for name in ("model_type", "namespace", "data"))

    assert fields(manager.backend.read_data("narrow/one")) == expected
    assert manager.backend.read_data("narrow/none") is None
    with pytest.raises(ResultNotFoundError, match="narrow/none"):
        manager.get("narrow/none", Person)

    async def through_async() -> None:
        async with AsyncResultsManager(backend=manager.backend) as arm:  # the same store
            assert fields(await arm.backend.read_data("narrow/one")) == expected
            assert await arm.backend.read_data("narrow/none") is None
            assert await arm.get("narrow/one", Person) == JOHN
            with pytest.raises(ResultNotFoundError, match="narrow/none"):
                await arm.get("narrow/none", Person)

    asyncio.run(through_async())
