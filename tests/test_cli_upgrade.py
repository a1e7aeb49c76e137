"""``results-flow upgrade`` (issue 23 item 5): converts a store in bulk through the
upgrades a models module registers, with a report (converted, failed, untouched), a dry
run that writes nothing, ``--json`` and a bounded failure list."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from results_flow import Record, ResultsManager
from tests.test_cli import run


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """A models module (in the current directory) with Size and an upgrade from SizeV1,
    and its namespace."""
    module = f"upgrade_models_{uuid.uuid4().hex[:8]}"
    namespace = f"cli_upgrade_{module}"
    (tmp_path / f"{module}.py").write_text(
        "from pydantic import BaseModel, ConfigDict\n"
        "from results_flow import register_model, upgrades\n"
        "class SizeV1(BaseModel):\n"
        "    model_config = ConfigDict(extra='forbid')\n"
        "    cm: int\n"
        f"@register_model(namespace={namespace!r})\n"
        "class Size(BaseModel):\n    mm: int\n"
        "@upgrades(Size)\n"
        "def from_v1(old: SizeV1) -> Size:\n    return Size(mm=old.cm * 10)\n"
    )
    monkeypatch.chdir(tmp_path)
    return module, namespace


def test_upgrade_converts_reports_and_dry_runs(tmp_path: Path, models: tuple[str, str]) -> None:
    module, namespace = models
    url = f"sqlite:///{tmp_path / 'results.db'}"
    with ResultsManager.from_url(url) as store:
        for rid, data in (("s/a", '{"cm": 1}'), ("s/b", '{"cm": 2}'), ("s/c", '{"mm": 3}')):
            store.backend.upsert(rid, Record("Size", namespace, data))
        store.backend.upsert("s/bad", Record("Size", namespace, '{"inch": 1}'))

    unknown = run("upgrade", "--store", url)
    assert unknown.code == 1 and "pass --import MODULE" in unknown.err
    assert "converted 0, failed 4, untouched 0 of 4 results" in unknown.out

    dry = run("upgrade", "--import", module, "--dry-run", "--store", url)
    assert dry.code == 1  # one record fails
    assert "would convert 2, failed 1, untouched 1 of 4 results" in dry.out
    assert "s/bad" in dry.out and "upgrade failed" in dry.out
    with ResultsManager.from_url(url) as store:
        assert store.record("s/a").data == '{"cm": 1}'  # a dry run writes nothing

    done = run("upgrade", "s", "--import", module, "--json", "--store", url)
    report = json.loads(done.out)
    assert done.code == 1 and report["converted"] == ["s/a", "s/b"]
    assert (report["untouched"], report["checked"], report["dry_run"]) == (1, 4, False)
    assert [(f["id"], f["kind"]) for f in report["failed"]] == [("s/bad", "upgrade_failed")]
    with ResultsManager.from_url(url) as store:
        assert json.loads(store.record("s/b").data) == {"mm": 20}

    again = run("upgrade", "--import", module, "--limit", "0", "--store", url)
    assert "converted 0, failed 1, untouched 3 of 4 results" in again.out
    assert "s/bad" not in again.out and "1 more failures not shown" in again.err


def test_upgrade_of_a_clean_store_exits_0(tmp_path: Path, models: tuple[str, str]) -> None:
    module, namespace = models
    url = f"sqlite:///{tmp_path / 'results.db'}"
    with ResultsManager.from_url(url) as store:
        store.backend.upsert("a", Record("Size", namespace, '{"cm": 4}'))
    assert run("upgrade", "--import", module, "--store", url).code == 0
    second = run("upgrade", "--import", module, "--store", url)
    assert second.code == 0 and "converted 0, failed 0, untouched 1 of 1" in second.out
