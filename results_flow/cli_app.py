"""The ``results-flow`` app and what its commands share: the options every command
takes, the one error handler, opening the store, and output for people and scripts
(every text from a store passes ``plain``, so no control character reaches a terminal).
Commands live in ``results_flow.cli`` and ``results_flow.cli_find``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any, ParamSpec

from cyclopts import App, Parameter
from pydantic import BaseModel
from rich.highlighter import JSONHighlighter
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.prompt import Confirm
from rich.text import Text

from results_flow import maintenance, transfer
from results_flow.errors import (
    ResultConflictError,
    ResultExistsError,
    ResultsFlowError,
)
from results_flow.json_text import escape_controls
from results_flow.manager import ResultsManager, SetBehavior
from results_flow.settings import DEFAULT_STORE_URL, STORE_ENV

P = ParamSpec("P")


def _version() -> str:
    try:
        return version("results-flow")
    except PackageNotFoundError:
        return "unknown"


app = App(
    name="results-flow",
    help="Look into and look after a results_flow store.",
    help_epilogue=(
        f"The store is --store URL, else ${STORE_ENV}, else {DEFAULT_STORE_URL}. "
        "Exit codes: 0 done, 1 failed (or verify found bad records), 2 usage error."
    ),
    version=_version,
)


@Parameter(name="*")
@dataclass
class Common:
    """Options every command takes."""

    store: Annotated[str | None, Parameter(name="--store")] = None
    """Store URL (sqlite:///..., file://..., postgresql://..., or a folder)."""

    json: Annotated[bool, Parameter(name="--json", negative=())] = False
    """Print JSON for scripts instead of tables."""


#: A file name where "-" means stdin or stdout.
FileArg = Annotated[str, Parameter(allow_leading_hyphen=True)]
Yes = Annotated[bool, Parameter(name=["--yes", "-y"], negative=())]
Prefix = Annotated[str | None, Parameter(name="--prefix")]
#: The PREFIX argument of the commands that read every record under it.
PrefixArg = Annotated[str | None, Parameter(help="Only IDs equal to or below this one.")]
#: An age such as 30d, parsed by ``maintenance.parse_age`` (a leading "-" reaches it too,
#: so "-5d" gets a clear message instead of "requires an argument").
Age = Annotated[str | None, Parameter(allow_leading_hyphen=True)]
OnConflict = Annotated[SetBehavior, Parameter(name="--on-conflict")]


def handles_errors(command: Callable[P, int]) -> Callable[P, int]:
    """Turn a named results_flow error into one line on stderr and exit code 1, and
    Ctrl-C into one line and exit code 130."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> int:
        try:
            return command(*args, **kwargs)
        except ResultsFlowError as exc:
            fail(" ".join(str(exc).split()))
            return 1
        except KeyboardInterrupt:
            # Every record written before it stays; an export file is left as it was.
            fail("interrupted: what was done before it stands (run it again to go on)")
            return 130

    return run


# --- helpers ----------------------------------------------------------------------------


@contextlib.contextmanager
def opened(opts: Common, *, create: bool = False) -> Iterator[ResultsManager]:
    """The store the options name; a missing file or SQLite store is an error unless ``create``."""
    with maintenance.open_store(opts.store, create=create) as store:
        yield store


@contextlib.contextmanager
def conflict_hint() -> Iterator[None]:
    """Name the command-line flag that settles an import or migration conflict."""
    try:
        yield
    except (ResultExistsError, ResultConflictError) as exc:
        hint = "pass --on-conflict skip-if-exists or --on-conflict overwrite"
        raise type(exc)(f"{exc}; {hint}") from exc


class _Bar:
    """A ``ProgressSink`` drawn as a rich progress bar."""

    def __init__(self, progress: Progress, label: str) -> None:
        self.progress = progress
        self._label = label
        self._task: Any = None

    def start(self, total: int | None) -> None:
        self._task = self.progress.add_task(self._label, total=total)

    def advance(self, count: int) -> None:
        if self._task is not None:
            self.progress.advance(self._task, count)


@contextlib.contextmanager
def progress_bar(label: str) -> Iterator[_Bar | None]:
    """A progress bar on stderr when it is a terminal; None otherwise."""
    console = app.error_console
    if not console.is_terminal:
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        yield _Bar(progress, label)


def is_stdout(path: str) -> bool:
    """Whether ``path`` is where standard output goes (``/dev/stdout``, /proc/self/fd/1):
    the summary then goes to stderr, out of the exported lines."""
    try:
        there, out = os.stat(path), os.fstat(sys.stdout.fileno())
    except (OSError, ValueError):  # no such path, or stdout is no file (captured)
        return False
    return (there.st_dev, there.st_ino) == (out.st_dev, out.st_ino)


def is_pipe(path: str) -> bool:
    """Whether ``path`` is there but is no regular file (a FIFO, /dev/fd/N, a device)."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False  # missing or unreadable: the check names it


def import_models(modules: Sequence[str]) -> None:
    """Import the models modules; what they print on import must not mix with our
    output (--json)."""
    with contextlib.redirect_stdout(sys.stderr):
        maintenance.import_model_modules(modules)


def confirm(question: str) -> bool:
    """Ask on the terminal; no answer (closed or unreadable stdin) means no."""
    try:
        return Confirm.ask(Text(plain(question)), console=app.error_console, default=False)
    except (EOFError, OSError):
        return False


def refused(location: str) -> int:
    fail(f"not confirmed; nothing deleted from {location} (pass --yes to skip the question)")
    return 1


def transferred(
    report: transfer.TransferReport, opts: Common, verb: str, *, to_stderr: bool = False
) -> int:
    """Print a transfer's outcome (on stderr when stdout carries the export itself)."""
    code = 0 if report.ok else 1
    if opts.json and not to_stderr:
        print_json(report)
        return code
    line = f"{verb} {report.written} result(s) from {report.source} to {report.target}"
    if report.skipped:
        line += f"; {report.skipped} already there, left as they were"
    if to_stderr:
        note(line)
    else:
        say(line)
    if report.refused:
        shown = 5
        for refusal in report.refused[:shown]:
            fail(f"{report.target} cannot hold {refusal.id!r}: {refusal.reason}")
        more = len(report.refused) - shown
        fail(
            f"{len(report.refused)} result(s) not {verb}"
            + (f" ({more} more not shown; --json lists all)" if more > 0 else "")
        )
    return code


#: What a terminal may act on rather than show: C0 and C1 controls (ESC starts a
#: colour, a title or a cursor move; 0x9B is an 8-bit CSI), DEL, and the bidirectional
#: overrides that reorder what is shown.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTROL_BUT_NEWLINE = re.compile(
    r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def plain(value: object, *, lines: bool = False) -> str:
    """``value`` as text a terminal shows as it is: every control character written as
    its escape (``\\x1b``, ``\\u202e``); newlines kept only with ``lines``. Everything
    the command prints from a store, a record, a path or an error goes through here."""
    pattern = _CONTROL_BUT_NEWLINE if lines else _CONTROL
    return pattern.sub(lambda found: repr(found.group())[1:-1], str(value))


def cell(value: object, *, lines: bool = False) -> Text:
    """A table cell that shows ``value`` as plain text (no markup, no control characters)."""
    return Text(plain(value, lines=lines))


def _json_text(data: object) -> str:
    """JSON text of ``data`` in which no control character is left raw: ``json`` escapes
    C0 controls; DEL, C1 and bidirectional controls (only ever inside strings) become
    ``\\uXXXX`` too, so the text stays valid JSON of the same value."""
    return escape_controls(json.dumps(data, indent=2, ensure_ascii=False))


def json_view(data: object) -> Text:
    """``data`` as highlighted JSON whose long strings wrap at the terminal width."""
    view = JSONHighlighter()(_json_text(data))
    view.no_wrap = False
    view.overflow = "fold"
    return view


def print_json(value: object) -> int:
    """Print a report or plain value as JSON on stdout; returns exit code 0."""
    data = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    app.console.out(_json_text(data), highlight=False)
    return 0


def render(renderable: Any) -> None:
    app.console.print(renderable)


def say(line: str) -> None:
    """One plain line on stdout, never wrapped at the terminal width."""
    app.console.print(Text(plain(line)), soft_wrap=True)


def note(message: str) -> None:
    app.error_console.print(Text(plain(message), style="dim"), soft_wrap=True)


def fail(message: str) -> None:
    app.error_console.print(Text.assemble(("error: ", "bold red"), plain(message)), soft_wrap=True)


def when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.isoformat(sep=" ", timespec="seconds")
