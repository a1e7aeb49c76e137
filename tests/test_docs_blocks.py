"""Every ```python and ```bash block of README.md and docs/*.md runs, twice.

The convention the pages are written to:

- the ```python blocks of one page run in order in one interpreter (one namespace), and
  the ```bash blocks with ``bash -e``, all in one fresh temporary working directory;
- the project venv's bin is first on PATH (``results-flow`` works), PREFECT_HOME is
  temporary, PREFECT_SERVER_ANALYTICS_ENABLED=false, RESULTS_FLOW_STORE is unset;
- the whole page runs twice in that same directory: a block that fails on a rerun
  (``ResultExistsError``, a second ``createdb``) fails the page;
- ```text, ```console and any other fence are not run (PostgreSQL, S3, illustrations).

A page whose blocks use Prefect talks to the session's Prefect server (the
``prefect_harness`` fixture, through PREFECT_API_URL) instead of starting a temporary
server of its own on each run (20-30 s on a busy machine).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = {"python", "bash"}
# Safety net, far above what a page needs on an idle machine.
PAGE_TIMEOUT_SECONDS = 400

_OPEN = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,})(?P<info>[^`]*)$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, counted from 1
    language: str
    source: str


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a page, every language, in order."""
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    number = 0
    while number < len(lines):
        match = _OPEN.match(lines[number])
        if not match:
            number += 1
            continue
        indent, fence = match["indent"], match["fence"]
        language = (match["info"].split() or [""])[0].lower()
        body: list[str] = []
        end = number + 1
        while end < len(lines) and not re.match(rf"^\s*{fence}`*\s*$", lines[end]):
            body.append(lines[end][len(indent) :] if lines[end].startswith(indent) else lines[end])
            end += 1
        if end == len(lines):
            raise AssertionError(f"{page.name}:{number + 1}: a fence that never closes")
        found.append(Block(page, number + 1, language, "\n".join(body) + "\n"))
        number = end + 1
    return found


def runnable(page: Path) -> list[Block]:
    return [block for block in blocks(page) if block.language in RUN]


def driver(page: Path) -> str:
    """One Python script that runs a page's blocks in order: python blocks inline at top
    level (one namespace, real source lines), bash blocks through ``bash -e``."""
    name = page.relative_to(ROOT)
    parts = [
        "import subprocess as _subprocess, sys as _sys\n",
        "def _bash(_source, _where):\n"
        "    _done = _subprocess.run(['bash', '-e', '-c', _source])\n"
        "    if _done.returncode:\n"
        "        _sys.exit(f'{_where}: the bash block exited {_done.returncode}')\n",
    ]
    for block in runnable(page):
        where = f"{name}:{block.line}"
        parts.append(f"# ---- {where} ({block.language}) ----\n")
        if block.language == "python":
            parts.append(block.source)
        else:
            parts.append(f"_bash({block.source!r}, {where!r})\n")
    return "".join(parts)


def uses_prefect(page: Path) -> bool:
    return any("prefect" in block.source for block in runnable(page))


def page_env(home: Path, api_url: str | None) -> dict[str, str]:
    drop = {"RESULTS_FLOW_STORE", "PREFECT_API_URL", "PREFECT_HOME", "RESULTS_FLOW_ID_SCOPE"}
    env = {key: value for key, value in os.environ.items() if key not in drop}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # The checkout under test, first (the venv's editable install may point elsewhere).
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


@pytest.mark.timeout(2 * PAGE_TIMEOUT_SECONDS + 100)
@pytest.mark.parametrize(
    "page", [page for page in PAGES if runnable(page)], ids=lambda page: page.name
)
def test_every_block_of_the_page_runs_on_a_first_run_and_a_rerun(
    page: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    api_url = None
    if uses_prefect(page):
        request.getfixturevalue("prefect_harness")
        from prefect.settings import PREFECT_API_URL

        api_url = PREFECT_API_URL.value()
    script = tmp_path / "page.py"
    script.write_text(driver(page), encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    env = page_env(tmp_path / "prefect-home", api_url)
    for run in ("first run", "rerun"):
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=PAGE_TIMEOUT_SECONDS,
        )
        if done.returncode:
            pytest.fail(
                f"{page.relative_to(ROOT)}, {run}: exit {done.returncode}\n"
                f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-6000:]}"
            )


def test_blocks_are_found_with_their_languages_and_lines(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# t\n\n```python\nx = 1\n```\n\n- item\n\n    ```bash\n    echo hi\n    ```\n\n"
        "```text\nnot run\n```\n````python\n```\nstill code\n````\n",
        encoding="utf-8",
    )
    found = blocks(page)
    assert [(b.line, b.language) for b in found] == [
        (3, "python"),
        (9, "bash"),
        (13, "text"),
        (16, "python"),
    ]
    assert found[1].source == "echo hi\n"
    assert found[3].source == "```\nstill code\n"
