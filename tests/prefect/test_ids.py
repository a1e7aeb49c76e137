"""Result IDs of results_task calls: canonical JSON, stability across interpreters,
templates, versions and loud failures for unhashable arguments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path, PurePosixPath
from uuid import UUID

import pytest
from prefect import flow

from results_flow import ResultsManager
from results_flow.errors import InvalidResultIdError, ResultsTaskError, UnhashableParameterError
from results_flow.hashing import canonical_json, stable_key
from results_flow.prefect import NO_FLOW, result_id_for, results_task
from tests.prefect.conftest import ROOT
from tests.prefect.tasks import Color, Item, Score, Window, score, weigh


def test_canonical_json_covers_common_argument_types() -> None:
    value = {
        "model": Item(id="a", weight=0.5),
        "dataclass": Window(1, 2),
        "enum": Color.BLUE,
        "when": datetime(2024, 1, 2, 3, 4, tzinfo=UTC),
        "day": date(2024, 1, 2),
        "path": Path("data/in.csv"),
        "set": {3, 1, 2},
        "nested": [(1, 2), {"b": Decimal("1.10"), "a": UUID(int=1)}],
        "nan": float("nan"),
        2: "int key",
    }
    text = canonical_json(value)
    assert json.loads(text)  # plain JSON
    assert '"$set":[1,2,3]' in text
    assert '{"$path":"data/in.csv"}' in text
    assert canonical_json(PurePosixPath("data/in.csv")) == canonical_json(Path("data/in.csv"))


def test_keys_tell_kinds_apart_but_not_container_order() -> None:
    assert stable_key("2024-01-02") != stable_key(date(2024, 1, 2))
    assert stable_key(1) != stable_key(1.0) != stable_key(True)
    assert stable_key({"a": 1, "b": 2}) == stable_key({"b": 2, "a": 1})
    assert stable_key({1, 2, 3}) == stable_key({3, 2, 1})
    assert stable_key({"$set": [1]}) != stable_key({1})


def test_same_call_same_id_in_two_interpreters_with_different_hash_seeds() -> None:
    outputs = []
    for seed in ("1", "4242"):
        done = subprocess.run(
            [sys.executable, "-m", "tests.prefect.workers", "ids"],
            cwd=ROOT,
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin", "PREFECT_HOME": "/tmp/rf-ids"},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        outputs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert outputs[0] == outputs[1]
    here = [
        result_id_for(score, 7),
        result_id_for(score, 7, factor=3.5),
        result_id_for(weigh, Item(id="a", weight=2.0), Color.BLUE),
        stable_key({"w": Window(1, 2), "s": {3, 1, 2}, "p": Path("a/b")}),
    ]
    assert outputs[0] == here


def test_default_id_is_flow_task_key_and_defaults_count() -> None:
    rid = result_id_for(score, 7)
    flow_segment, task_segment, key = rid.split("/")
    assert (flow_segment, task_segment, len(key)) == (NO_FLOW, "score", 32)
    assert result_id_for(score, 7, factor=2.0) == rid  # the default, applied
    assert result_id_for(score, item=7) == rid
    assert result_id_for(score, 8) != rid
    assert result_id_for(score, 7, factor=2.5) != rid


def test_flow_segment_is_the_running_flow() -> None:
    @flow(name="ids-flow")
    def ids_flow() -> str:
        return result_id_for(score, 7)

    assert ids_flow().startswith("ids-flow/score/")


def test_template_version_and_source_hash_refine_the_id() -> None:
    assert result_id_for(weigh, Item(id="a")) == "items/a@2"
    assert result_id_for(weigh, Item(id="b")) == "items/b@2"

    def body(x: int) -> Score:
        return Score(item=x, value=0.0, pid=0)

    v1 = results_task(body, manager="memory://ids")
    v2 = results_task(manager="memory://ids", version="2")(body)
    hashed = results_task(manager="memory://ids", hash_source=True)(body)
    ids = {result_id_for(t, 1) for t in (v1, v2, hashed)}
    assert len(ids) == 3


def test_unhashable_argument_names_the_parameter_and_ignore_helps() -> None:
    def body(x: int, guard: object) -> Score:
        return Score(item=x, value=0.0, pid=0)

    strict = results_task(body, manager="memory://ids")
    with pytest.raises(UnhashableParameterError, match=r"parameter 'guard'.*ignore=\['guard'\]"):
        result_id_for(strict, 1, threading.Lock())
    relaxed = results_task(manager="memory://ids", ignore=["guard"])(body)
    assert result_id_for(relaxed, 1, threading.Lock()) == result_id_for(relaxed, 1, object())


def test_bad_templates_and_models_fail_at_the_right_time() -> None:
    def body(x: int) -> Score:
        return Score(item=x, value=0.0, pid=0)

    bad = results_task(manager="memory://ids", id="x/{missing}")(body)
    with pytest.raises(InvalidResultIdError, match="cannot be filled"):
        result_id_for(bad, 1)
    dotted = results_task(manager="memory://ids", id="x/{x}/..")(body)
    with pytest.raises(InvalidResultIdError, match="task 'body'"):
        result_id_for(dotted, 1)

    def untyped(x: int):  # type: ignore[no-untyped-def]
        return x

    # Any type Pydantic validates is a result type (issue 22); no annotation is not.
    with pytest.raises(ResultsTaskError, match="untyped.*no return annotation"):
        results_task(untyped)
    with pytest.raises(ResultsTaskError, match="names no parameter"):
        results_task(ignore=["nope"])(body)


def test_template_values_that_add_or_remove_segments_are_refused_naming_the_parameter() -> None:
    """Regression (issue 9 item 11): ``runs/{a}/{b}`` with ("x/y", "z") and ("x", "y/z")
    both gave ``runs/x/y/z``, and the second call silently got the first one's result."""

    def body(a: str, b: str) -> Score:
        return Score(item=0, value=0.0, pid=0)

    runs = results_task(manager="memory://ids", id="runs/{a}/{b}")(body)
    assert result_id_for(runs, "x", "y") == "runs/x/y"
    with pytest.raises(InvalidResultIdError, match=r"task 'body'.*\{a\} of parameter 'a'.*'/'"):
        result_id_for(runs, "x/y", "z")
    with pytest.raises(InvalidResultIdError, match=r"\{b\} of parameter 'b' is 'y/z'"):
        result_id_for(runs, "x", "y/z")
    with pytest.raises(InvalidResultIdError, match=r"\{b\} of parameter 'b' is empty"):
        result_id_for(runs, "x", "")
    with pytest.raises(InvalidResultIdError, match=r"segment filled from parameter 'a'"):
        result_id_for(runs, "..", "z")
    with pytest.raises(InvalidResultIdError, match=r"\{item\.id\} of parameter 'item'"):
        result_id_for(weigh, Item(id="a/b"))  # id="items/{item.id}"
    slashed = results_task(manager="memory://ids", id="runs/{a}-{b}", version="1/2")(body)
    with pytest.raises(InvalidResultIdError, match=r"version '1/2'"):
        result_id_for(slashed, "x", "y")


def test_template_flow_and_task_names_are_made_safe_like_the_default_id() -> None:
    def body(x: int) -> Score:
        return Score(item=x, value=0.0, pid=0)

    named = results_task(manager="memory://ids", id="{flow}/{task}/{x}", name="a/b")(body)
    assert result_id_for(named, 1) == f"{NO_FLOW}/a_b/1"  # Prefect refuses '/' in flow names


def test_result_id_for_names_the_flow_so_a_notebook_finds_what_it_stored(store_url: str) -> None:
    @flow(name="nightly")
    def nightly() -> str:
        score(7)
        return result_id_for(score, 7)

    stored = nightly()
    assert result_id_for(score, 7, flow="nightly") == stored
    assert result_id_for(score, 7, flow=nightly) == stored  # the flow itself will do
    assert score.result_id(item=7, flow="nightly") == stored
    assert ResultsManager.from_url(store_url).get(stored, Score).item == 7
    assert weigh.result_id(Item(id="a"), flow="any") == "items/a@2"  # a template is kept

    def body(flow: str, x: int) -> Score:
        return Score(item=x, value=0.0, pid=0)

    clash = results_task(body, manager="memory://ids")
    assert result_id_for(clash, "mine", 1, flow="nightly").startswith("nightly/body/")
    with pytest.raises(ResultsTaskError, match="pass that parameter positionally"):
        result_id_for(clash, x=1, flow="nightly")


def test_a_template_with_key_holds_the_key_of_the_default_id() -> None:
    def work(a: int, b: str = "x") -> Score:
        return Score(value=a)

    plain = results_task(manager="memory://ids-key", name="work")(work)
    templated = results_task(manager="memory://ids-key", name="work", id="k/{key}")(work)
    labelled = results_task(manager="memory://ids-key", name="work", id="k/{a}")(work)
    key = plain.result_id(1, b="y").rsplit("/", 1)[1]
    assert templated.result_id(1, b="y") == f"k/{key}"
    assert labelled.result_id(1, b="y") == "k/1"


def test_arguments_by_name_give_the_ids_of_arguments_by_position() -> None:
    """results_map passes every argument by name, through a shortcut past
    Signature.bind; the IDs must be those of any other way of calling."""

    def work(a: int, b: str = "x", *, c: int = 0) -> Score:
        return Score(value=a)

    task = results_task(manager="memory://ids-bind", name="work")(work)
    assert task.result_id(a=1, b="x", c=0) == task.result_id(1) == task.result_id(1, "x", c=0)
    assert task.result_id(c=0, b="x", a=1) == task.result_id(1)
    assert task.result_id(1, b="y") != task.result_id(1)


def test_a_non_utf8_file_name_is_an_unhashable_parameter_not_a_unicode_error() -> None:
    """Issue 21 item 6: a path from a folder listing whose name is not UTF-8."""

    def body(path: Path) -> Score:
        return Score(item=0, value=0.0, pid=0)

    task = results_task(body, manager="memory://ids")
    odd = Path("inputs") / os.fsdecode(b"caf\xe9.csv")
    with pytest.raises(UnhashableParameterError, match=r"parameter 'path'.*lone surrogate"):
        result_id_for(task, odd)
    result_id_for(task, Path("inputs/café.csv"))  # UTF-8 names hash as before
