"""The CLI reference, ``docs/cli.md``, written from each command's own ``--help``.

``python -m results_flow.cli_docs`` writes the page; ``--check`` exits 1 when the page
on disk differs from what the commands print now (``make test`` runs that check, so a
renamed option or a new command cannot leave the reference behind). The help is
rendered at a fixed width without colour, whatever the terminal, so the page is the
same on every machine.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from rich.console import Console

from results_flow.cli import app

#: The page's terminal width in columns: a fact of the page's format (the help tables
#: wrap at it), fixed so that the page does not depend on who generated it.
WIDTH = 100
DEFAULT_PAGE = Path("docs/cli.md")

HEADER = """\
# `results-flow` command reference

Generated from each command's `--help` by `python -m results_flow.cli_docs`
(`make docs` runs it; `make test` fails when this page differs from the commands).
Do not edit it by hand: change the command's docstring in `results_flow/cli.py`
(`ls`, `rm`, `gc` and `verify`: `results_flow/cli_find.py`).

The store is `--store URL`, else `$RESULTS_FLOW_STORE`, else
`sqlite:///results_store/results.db`. Options go after the command; `--json` on any
command prints JSON for scripts. Every command is also a function in
`results_flow.maintenance` (`results_flow.cleanup` for `rm` and `gc`,
`results_flow.transfer` for `export`, `import` and `migrate`; `ls` with filters is
`ResultsManager.find`), usable from Python.
"""


def commands() -> list[str]:
    """The CLI's command names, in the order ``results-flow --help`` lists them."""
    return sorted(name for name in app if not name.startswith("-"))


def help_text(tokens: list[str]) -> str:
    """What ``results-flow <tokens> --help`` prints, at WIDTH columns and without colour."""
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=WIDTH,
        color_system=None,
        force_terminal=False,
        highlight=False,
        emoji=False,
        _environ={},
    )
    app.help_print(tokens, console=console)
    lines = buffer.getvalue().splitlines()
    return "\n".join(line.rstrip() for line in lines).strip("\n")


def render() -> str:
    """The whole page: the overview, then one section per command."""
    parts = [HEADER, "```text\n$ results-flow --help\n" + help_text([]) + "\n```\n"]
    for name in commands():
        block = f"```text\n$ results-flow {name} --help\n{help_text([name])}\n```\n"
        parts.append(f"## {name}\n\n{block}")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", nargs="?", type=Path, default=DEFAULT_PAGE)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the page differs (write nothing)"
    )
    args = parser.parse_args(argv)
    page: Path = args.page
    text = render()
    if args.check:
        if not page.exists() or page.read_text(encoding="utf-8") != text:
            sys.stderr.write(
                f"{page} is not what the commands' --help prints now; "
                "regenerate it with: python -m results_flow.cli_docs\n"
            )
            return 1
        return 0
    page.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
