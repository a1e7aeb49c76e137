"""docs/cli.md is generated from the commands' own --help and checked for drift."""

from __future__ import annotations

from pathlib import Path

import pytest

from results_flow.cli_docs import commands, main, render

PAGE = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_the_checked_in_cli_reference_is_what_the_commands_print() -> None:
    assert PAGE.read_text(encoding="utf-8") == render(), (
        "docs/cli.md differs from the commands' --help: regenerate it with "
        "`python -m results_flow.cli_docs` (or `make docs`)"
    )


def test_every_command_has_a_section() -> None:
    text = render()
    assert {"ls", "show", "rm", "gc", "verify", "export", "import", "migrate"} <= set(commands())
    for name in commands():
        assert f"\n## {name}\n" in text
        assert f"$ results-flow {name} --help\nUsage: results-flow {name}" in text


def test_the_page_does_not_depend_on_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = render()
    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TERM", "xterm-256color")
    text = render()
    assert text == expected
    assert "\x1b" not in text


def test_check_fails_on_a_stale_page_and_passes_on_a_fresh_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "cli.md"
    assert main(["--check", str(page)]) == 1  # missing
    assert main([str(page)]) == 0
    assert main(["--check", str(page)]) == 0
    page.write_text(page.read_text(encoding="utf-8").replace("--older-than", "--older"))
    assert main(["--check", str(page)]) == 1
    assert "python -m results_flow.cli_docs" in capsys.readouterr().err
