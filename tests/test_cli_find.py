"""Issue 23 items 1, 2 and 7 on the command line: ls by what made a result, rm of many IDs
and by filters, gc by versions, validity and size, verify for people."""

from __future__ import annotations

import io
import json
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel

from results_flow import Record, ResultsManager, register_model
from tests.s3_server import S3Server
from tests.test_cli import run

NAMESPACE = "cli_find_test"
LONG = "daily/score/" + "k" * 150


@register_model(namespace=NAMESPACE)
class Score(BaseModel):
    value: int


@pytest.fixture(autouse=True)
def _registered() -> None:
    register_model(Score, namespace=NAMESPACE)


def made_by(run_id: str, version: str, days_ago: float = 0, **params: object) -> Record:
    moment = datetime.now(UTC) - timedelta(days=days_ago)
    metadata = {
        "flow_name": "daily",
        "task_name": "score",
        "flow_run_id": run_id,
        "task_run_id": None,
        "parameters": params,
        "version": version,
    }
    return Record("Score", NAMESPACE, '{"value": 1}', moment, moment, metadata)


def filled(url: str) -> str:
    with ResultsManager.from_url(url) as store:
        store.backend.upsert("daily/score/a", made_by("run-1", "v1", 40, n=1))
        store.backend.upsert("daily/score/b", made_by("run-1", "v1", 39, n=2))
        store.backend.upsert("daily/score/c", made_by("run-2", "v2", 2, n=1))
        store.backend.upsert(LONG, made_by("run-2", "v2", 1, n=3))
        store.set("other/x", Score(value=5), namespace=NAMESPACE)
    return url


@pytest.fixture(params=["sqlite", "file"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return filled(f"sqlite:///{tmp_path / 'results.db'}")
    return filled(f"file://{tmp_path / 'files'}")


def ids(url: str) -> list[str]:
    with ResultsManager.from_url(url) as store:
        return store.list_ids()


def test_ls_by_what_made_a_result(url: str) -> None:
    assert run("ls", "--flow-run", "run-1", "--store", url).out.split() == [
        "daily/score/a",
        "daily/score/b",
    ]
    assert run("ls", "--param", "n=1", "--store", url).out.split() == [
        "daily/score/a",
        "daily/score/c",
    ]
    assert run("ls", "daily", "--version", "v2", "--task", "score", "--store", url).out.split() == [
        "daily/score/c",
        LONG,
    ]
    assert run("ls", "--older-than", "30d", "--flow", "daily", "--store", url).out.split() == [
        "daily/score/a",
        "daily/score/b",
    ]
    listed = json.loads(run("ls", "--flow-run", "run-2", "-l", "--json", "--store", url).out)
    assert [row["id"] for row in listed] == ["daily/score/c", LONG]
    none = run("ls", "--flow", "weekly", "--store", url)
    assert (none.code, none.out, "no results flow=weekly" in none.err) == (0, "", True)
    for bad in (("--param", "n"), ("--older-than", "-3d")):
        refused = run("ls", *bad, "--store", url)
        assert (refused.code, refused.err.count("\n")) == (2, 1), refused.err


def test_ls_long_never_cuts_ids_when_piped(url: str) -> None:
    """Regression (issue 23): ``ls -l`` cut IDs at 80 columns when its output was a pipe."""
    shown = run("ls", "daily", "-l", "--store", url, width=80)
    lines = shown.out.splitlines()
    assert LONG in shown.out and "…" not in shown.out
    assert lines[-1].split("\t")[:3] == [LONG, "Score", NAMESPACE]


def test_ls_invalid_needs_the_models_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"cli_find_models_{uuid.uuid4().hex[:8]}"
    namespace = f"ns_{module}"
    (tmp_path / f"{module}.py").write_text(
        "from pydantic import BaseModel\nfrom results_flow import register_model\n"
        f"@register_model(namespace={namespace!r})\nclass Gadget(BaseModel):\n    size: int\n"
    )
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    with ResultsManager.from_url(url) as store:
        store.backend.insert("g/ok", Record("Gadget", namespace, '{"size": 1}'))
        store.backend.insert("g/bad", Record("Gadget", namespace, '{"size": "huge"}'))
    unknown = run("ls", "--invalid", "--store", url)
    assert (unknown.code, "--import MODULE" in unknown.err) == (1, True)
    found = run("ls", "--invalid", "--import", module, "--store", url)
    assert (found.code, found.out.split()) == (0, ["g/bad"])
    cleaned = run("gc", "--invalid", "--import", module, "--yes", "--store", url)
    assert (cleaned.code, "deleted 1 result(s)" in cleaned.out) == (0, True)
    assert ids(url) == ["g/ok"]


def test_rm_many_ids_at_once(url: str) -> None:
    gone = run("rm", "daily/score/a", "daily/score/b", "other/x", "--yes", "--store", url)
    assert (gone.code, "deleted 3 result(s)" in gone.out) == (0, True)
    missing = run("rm", "daily/score/c", "nope/1", "nope/2", "--yes", "--store", url)
    assert (missing.code, "2 of the IDs are not stored" in missing.err) == (1, True)
    assert ids(url) == ["daily/score/c", LONG]


def test_rm_by_filters_shows_the_plan_and_asks(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    before = ids(url)
    dry = run("rm", "--flow-run", "run-2", "--dry-run", "--store", url)
    assert dry.code == 0 and dry.out.split() == ["daily/score/c", LONG]
    assert "would delete 2 result(s) (flow_run=run-2)" in dry.err
    plan = json.loads(run("rm", "--flow-run", "run-2", "--dry-run", "--json", "--store", url).out)
    assert plan["ids"] == ["daily/score/c", LONG] and plan["planned_at"]
    refused = run("rm", "--flow-run", "run-2", "--store", url)  # stdin cannot be read
    assert (refused.code, "not confirmed; nothing deleted" in refused.err) == (1, True)
    assert LONG in refused.err  # the plan is shown before the question, IDs whole
    assert ids(url) == before
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    done = run("rm", "--task", "score", "--older-than", "30d", "--store", url)
    assert "Delete 2 result(s) (task=score, last updated before" in done.err
    assert (done.code, "deleted 2 result(s)" in done.out) == (0, True)
    assert ids(url) == ["daily/score/c", LONG, "other/x"]
    report = json.loads(run("rm", "--param", "n=3", "--yes", "--json", "--store", url).out)
    assert report["deleted"] == 1
    empty = run("rm", "--flow", "nobody", "--yes", "--store", url)
    assert (empty.code, "nothing deleted" in empty.err) == (0, True)


def test_gc_keep_versions_and_max_size(url: str) -> None:
    dry = json.loads(run("gc", "--keep-versions", "1", "--dry-run", "--json", "--store", url).out)
    assert dry["ids"] == ["daily/score/a", "daily/score/b"]
    assert ids(url) == ["daily/score/a", "daily/score/b", "daily/score/c", LONG, "other/x"]
    kept = run("gc", "--keep-versions", "1", "--yes", "--store", url)
    assert (kept.code, "deleted 2 result(s) from" in kept.out) == (0, True)
    sized = run("gc", "--max-size", "1", "--yes", "--json", "--store", url)
    assert json.loads(sized.out)["deleted"] == 3
    assert ids(url) == []
    for bad in (("--keep-versions", "0"), ("--max-size", "lots")):
        refused = run("gc", *bad, "--store", url)
        assert (refused.code, refused.err.count("\n")) == (2, 1), refused.err


def test_ls_and_rm_on_s3(s3_server: S3Server, tmp_path: Path) -> None:
    url = filled(s3_server.url())
    assert run("ls", "--flow-run", "run-1", "--store", url).out.split() == [
        "daily/score/a",
        "daily/score/b",
    ]
    gone = run("rm", "--version", "v1", "--yes", "--store", url)
    assert (gone.code, "deleted 2 result(s)" in gone.out) == (0, True), gone.err
    assert run("ls", "--flow", "daily", "--store", url).out.split() == ["daily/score/c", LONG]


def test_verify_prints_a_summary_then_a_few_lines_per_kind(tmp_path: Path) -> None:
    """Regression (issue 23 item 7): 2,000 bad records printed ~9,800 lines, the hint last."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    with ResultsManager.from_url(url) as store:
        for i in range(30):
            store.backend.insert(
                f"bad/{i:02d}-" + "x" * 120, Record("Score", NAMESPACE, '{"value": "no"}')
            )
        for i in range(5):
            store.backend.insert(f"ghost/{i}", Record("Ghost", NAMESPACE, "{}"))
        store.set("ok", Score(value=1), namespace=NAMESPACE)
    shown = run("verify", "--store", url, width=80)
    assert shown.code == 1
    lines = shown.out.splitlines()
    assert lines[0] == f"1 of 36 results valid in {url}: 30 invalid, 5 unknown model"
    assert lines[1] == "invalid:" and len(lines) == 1 + 1 + 20  # summary, heading, 20 lines
    assert lines[2].startswith("  bad/00-" + "x" * 120 + "  ")  # IDs whole at 80 columns
    assert "ghost" not in shown.out  # beyond --limit
    assert "5 record(s) of unregistered models: pass --import MODULE" in shown.err
    assert "15 more not shown" in shown.err
    more = run("verify", "--limit", "40", "--store", url)
    assert "unknown model:" in more.out and more.out.count("\n  ghost/") == 5
    full = json.loads(run("verify", "--json", "--store", url).out)
    assert len(full["failures"]) == 35 and full["counts"] == {"invalid": 30, "unknown_model": 5}
