"""The results-flow command never sends a control character from a store to the
terminal (issue 21 item 4: a record's model type and namespace, taken in by an
import, reached the terminal raw from ``show``, ``ls -l``, ``stats`` and ``verify``)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from results_flow import ResultsManager
from results_flow.cli import app

#: An OSC title change, a colour, an 8-bit CSI, DEL, a bidi override and a bell.
HOSTILE = "\x1b]0;owned\x07Evil\x1b[31m\x9b2J\x7f\u202eRLO\r"
RAW = ("\x1b", "\x07", "\x9b", "\x7f", "\u202e", "\r")


def _cli(*tokens: str, stdout_only: bool = False) -> tuple[int, str]:
    out = Console(file=io.StringIO(), width=300)
    err = Console(file=io.StringIO(), width=300)
    try:
        code: Any = app(list(tokens), console=out, error_console=err, result_action="return_value")
    except SystemExit as exc:
        code = exc.code
    text = out.file.getvalue() + ("" if stdout_only else err.file.getvalue())  # type: ignore[attr-defined]
    return int(code or 0), text


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A file store holding one imported record whose every text field is hostile."""
    line = {
        "id": "planted/one",
        "format": "results_flow/1",
        "model_type": HOSTILE,
        "namespace": "ns" + HOSTILE,
        "created_at": "2026-01-01T00:00:00+00:00",
        "updated_at": "2026-01-01T00:00:00+00:00",
        "metadata": {"note" + HOSTILE: HOSTILE},
        "data": {"text": HOSTILE, HOSTILE: 1},
    }
    source = tmp_path / "planted.jsonl"
    source.write_text(json.dumps(line) + "\n")
    url = str(tmp_path / "store")
    code, text = _cli("import", str(source), "--store", url)
    assert code == 0, text
    (tmp_path / "store" / f"stray{HOSTILE[:8]}.json").write_text("{}")  # a file name too
    with ResultsManager(url) as manager:
        assert manager.backend.read("planted/one").model_type == HOSTILE  # type: ignore[union-attr]
    return url


@pytest.mark.parametrize(
    "command",
    [
        ["ls", "-l"],
        ["ls"],
        ["show", "planted/one"],
        ["stats"],
        ["verify"],
        ["ls", "-l", "--json"],
        ["show", "planted/one", "--json"],
        ["stats", "--json"],
        ["verify", "--json"],
    ],
    ids=" ".join,
)
def test_no_control_character_reaches_the_terminal(store: str, command: list[str]) -> None:
    code, text = _cli(*command, "--store", store)
    assert code in (0, 1), text
    assert "Evil" in text or command == ["ls"], text  # the field is shown, escaped
    assert not [raw for raw in RAW if raw in text], repr(text)


def test_json_output_keeps_the_value(store: str) -> None:
    code, text = _cli("show", "planted/one", "--json", "--store", store, stdout_only=True)
    assert code == 0
    doc = json.loads(text)  # still JSON, and the same strings once parsed
    assert doc["model_type"] == HOSTILE and doc["data"]["text"] == HOSTILE


def test_an_export_shows_no_control_character_and_imports_the_same_record(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Export lines are read on terminals too (``export -``, ``cat``): C1 and bidi
    controls in strings are written as escapes, and the file imports the same record."""
    exported = tmp_path / "export.jsonl"
    code, text = _cli("export", str(exported), "--store", store)
    assert code == 0, text
    capsys.readouterr()
    code, _ = _cli("export", "-", "--store", store)
    streamed = capsys.readouterr().out
    assert code == 0
    for line in (exported.read_text(), streamed):
        assert "planted/one" in line
        assert not [raw for raw in RAW if raw in line], repr(line)
    copy = str(tmp_path / "copy")
    code, text = _cli("import", str(exported), "--store", copy)
    assert code == 0, text
    with ResultsManager(store) as source, ResultsManager(copy) as target:
        before, after = source.record("planted/one"), target.record("planted/one")
    assert (after.model_type, after.namespace, after.metadata) == (
        before.model_type,
        before.namespace,
        before.metadata,
    )
    assert json.loads(after.data) == json.loads(before.data)
