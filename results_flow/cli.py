"""The ``results-flow`` command: look into and look after a results_flow store.

A thin layer over ``results_flow.maintenance``: each command parses its options,
opens the store, makes one library call and formats the answer (rich tables for
people, ``--json`` for scripts). A named results_flow error becomes one line on
stderr and exit code 1; usage errors exit with 2. Importing this module does not
import Prefect, so the command starts fast.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any, ParamSpec

from cyclopts import App, Parameter
from pydantic import BaseModel
from rich.console import Group
from rich.filesize import decimal
from rich.highlighter import JSONHighlighter
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.prompt import Confirm
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from results_flow import failures, legacy, maintenance, transfer, upgrade_store
from results_flow import stray as stray_files
from results_flow.errors import (
    MaintenanceError,
    ResultConflictError,
    ResultExistsError,
    ResultsFlowError,
)
from results_flow.lineage import LineageNode
from results_flow.lineage import lineage as lineage_of
from results_flow.manager import ResultsManager, SetBehavior
from results_flow.settings import DEFAULT_STORE_URL, STORE_ENV, UPGRADE_FAILURES_SHOWN

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


def _handles_errors(command: Callable[P, int]) -> Callable[P, int]:
    """Turn a named results_flow error into one line on stderr and exit code 1, and
    Ctrl-C into one line and exit code 130."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> int:
        try:
            return command(*args, **kwargs)
        except ResultsFlowError as exc:
            _fail(" ".join(str(exc).split()))
            return 1
        except KeyboardInterrupt:
            # Every record written before it stays; an export file is left as it was.
            _fail("interrupted: what was done before it stands (run it again to go on)")
            return 130

    return run


@app.command
@_handles_errors
def ls(
    prefix: str | None = None,
    /,
    *,
    long: Annotated[bool, Parameter(name=["--long", "-l"], negative=())] = False,
    failed: Annotated[bool, Parameter(name="--failed", negative=())] = False,
    common: Common | None = None,
) -> int:
    """List stored IDs, all or those under PREFIX (whole segments), sorted.

    Parameters
    ----------
    prefix
        Only IDs equal to or below this one (``models`` or ``models/`` finds ``models/x``,
        not ``modelsx``).
    long
        Also show model, namespace, update time and size (reads every record).
    failed
        List the failure records instead: the results_map items that failed after their
        retries and have no result yet (error, attempts, runs failed in a row, runs).
    """
    opts = common or Common()
    if failed:
        return _ls_failed(opts, prefix)
    with _store(opts) as store:
        if long:
            rows = maintenance.summaries(store, prefix)
            if opts.json:
                return _json([row.model_dump(mode="json") for row in rows])
            table = Table("ID", "model", "namespace", "updated", "size", box=None)
            for row in rows:
                table.add_row(
                    _cell(row.id),
                    _cell(row.model_type),
                    _cell(row.namespace),
                    _time(row.updated_at),
                    decimal(row.size),
                )
            count = len(rows)
            _out(table)
        else:
            ids = store.list_ids(maintenance.normalized_prefix(prefix))
            if opts.json:
                return _json(ids)
            count = len(ids)
            if ids:
                app.console.out("\n".join(map(_plain, ids)), highlight=False)
    if count == 0:
        _note("no results" + ("" if prefix is None else f" under {prefix!r}"))
    return 0


def _ls_failed(opts: Common, prefix: str | None) -> int:
    """``ls --failed``: the failure records under PREFIX."""
    with _store(opts) as store:
        rows = list(failures.failures_under(store, prefix).values())
    if opts.json:
        return _json([row.model_dump(mode="json") for row in rows])
    if not rows:
        _note("no failure records" + ("" if prefix is None else f" under {prefix!r}"))
        return 0
    # Two lines per record, never cut at the terminal's width: the ID and counts, the error.
    for row in rows:
        _say(
            f"{row.result_id}  failed {row.runs_failed} run(s) in a row, last "
            f"{_time(row.failed_at)} after {row.attempts} attempt(s)"
        )
        _say(f"    {row.error_type}: {row.message}")
    return 0


@app.command
@_handles_errors
def show(
    result_id: str,
    /,
    *,
    lineage: Annotated[bool, Parameter(name="--lineage", negative=())] = False,
    common: Common | None = None,
) -> int:
    """Show one stored result: its model, times, metadata and data (long strings wrap).

    Parameters
    ----------
    result_id
        The result's ID, e.g. ``projects/p1/results/analysis``.
    lineage
        Show instead the results it was computed from, and theirs, as a tree (what
        results_map keeps in each result's metadata ``inputs``).
    """
    opts = common or Common()
    if lineage:
        return _show_lineage(opts, result_id)
    with _store(opts) as store:
        record = store.record(result_id)
    doc = maintenance.envelope(result_id, record)
    if opts.json:
        return _json(doc)
    table = Table.grid(padding=(0, 2))
    table.add_row("ID", _cell(doc["id"]))
    table.add_row("model", _cell(f"{record.namespace}:{record.model_type}"))
    table.add_row("created", _time(record.created_at))
    table.add_row("updated", _time(record.updated_at))
    table.add_row("size", decimal(maintenance.document_size(record)))
    table.add_row("metadata", _json_view(doc["metadata"]))
    _out(Group(table, Text("data", style="bold"), _json_view(doc["data"])))
    return 0


def _show_lineage(opts: Common, result_id: str) -> int:
    """``show --lineage``: the tree of a result's inputs."""
    with _store(opts) as store:
        root = lineage_of(store, result_id)
    if opts.json:
        return _json(root)
    tree = Tree(_lineage_label(root))
    stack = [(tree, root)]
    while stack:
        branch, node = stack.pop()
        for upstream in node.inputs:
            child = branch.add(_lineage_label(upstream))
            stack.append((child, upstream))
    _out(tree)
    return 0


def _lineage_label(node: LineageNode) -> Text:
    """One node of a lineage tree: its ID, the parameter it fed, its task and time."""
    label = Text(_plain(node.id), style="bold" if node.parameter is None else "")
    if node.parameter is not None:
        label.append(f"  (as {_plain(node.parameter)})", style="dim")
    if node.missing:
        label.append("  not stored", style="red")
    elif node.cycle:
        label.append("  (cycle)", style="red")
    else:
        label.append(f"  {_plain(node.task_name or '-')}, {_time(node.updated_at)}", style="dim")
    return label


@app.command
@_handles_errors
def rm(
    result_id: str | None = None,
    /,
    *,
    prefix: Prefix = None,
    yes: Yes = False,
    common: Common | None = None,
) -> int:
    """Delete one result, or every result under --prefix; asks first unless --yes.

    Parameters
    ----------
    result_id
        The ID to delete (or give --prefix).
    prefix
        Delete every ID equal to or below this one.
    yes
        Do not ask for confirmation.
    """
    opts = common or Common()
    with _store(opts) as store:
        plan = maintenance.plan_delete(store, result_id, prefix=prefix)
        if not plan.ids:
            _note(f"no results under {prefix!r}; nothing deleted")
            return (
                _json(maintenance.DeleteReport(location=plan.location, deleted=0, kept=0))
                if opts.json
                else 0
            )
        what = plan.ids[0] if result_id is not None else f"{len(plan.ids)} results under {prefix!r}"
        if not (yes or _confirm(f"Delete {what} from {plan.location}?")):
            return _refused(plan.location)
        report = maintenance.delete_planned(store, plan)
    if opts.json:
        return _json(report)
    _say(f"deleted {report.deleted} result(s) from {report.location}")
    return 0


@app.command
@_handles_errors
def stats(
    prefix: PrefixArg = None,
    /,
    *,
    depth: int = 1,
    common: Common | None = None,
) -> int:
    """Count results and their sizes by ID prefix, model and namespace.

    Parameters
    ----------
    depth
        How many leading ID segments make one prefix group.
    """
    opts = common or Common()
    with _store(opts) as store, _progress("stats") as bar:
        report = maintenance.stats(store, prefix, depth=depth, progress=bar)
    if opts.json:
        return _json(report)
    _say(f"{report.count} results, {decimal(report.size)} in {report.location}")
    if report.count:
        span = f"{_time(report.oldest_update)} and {_time(report.newest_update)}"
        _say(f"last updated between {span}")
    for title, groups in (
        ("prefix", report.by_prefix),
        ("model", report.by_model),
        ("namespace", report.by_namespace),
    ):
        if groups:
            table = Table(title, "results", "size", title=f"by {title}", title_justify="left")
            for key, group in groups.items():
                table.add_row(_cell(key), str(group.count), decimal(group.size))
            _out(table)
    if report.corrupt:
        _note(f"{report.corrupt} record(s) cannot be decoded and are not counted; run verify")
    return 0


@app.command
@_handles_errors
def verify(
    prefix: PrefixArg = None,
    /,
    *,
    import_: Annotated[tuple[str, ...], Parameter(name="--import", negative=())] = (),
    common: Common | None = None,
) -> int:
    """Validate every result against its registered model; exit 1 if any fails.

    Parameters
    ----------
    import_
        A module to import first so its @register_model classes are known
        (repeatable; the current directory is searched first).
    """
    opts = common or Common()
    # Whatever the modules print on import must not mix with our output (--json).
    with contextlib.redirect_stdout(sys.stderr):
        maintenance.import_model_modules(import_)
    with _store(opts) as store, _progress("verify") as bar:
        report = maintenance.verify(store, prefix, progress=bar)
    if opts.json:
        _json(report)
        return 0 if report.ok else 1
    if report.failures:
        table = Table("ID", "problem", "model", "detail", title="failures", title_justify="left")
        for failure in report.failures:
            table.add_row(
                _cell(failure.id),
                failure.kind.replace("_", " "),
                _cell(failure.model or "-"),
                _cell(failure.detail, lines=True),
            )
        _out(table)
    unknown = sum(failure.kind == "unknown_model" for failure in report.failures)
    if unknown:
        _note(f"{unknown} record(s) of unregistered models: pass --import MODULE for their models")
    for orphan in report.orphans:
        _note(f"stray file (no record): {orphan}")
    _say(f"{report.valid} of {report.checked} results valid in {report.location}")
    return 0 if report.ok else 1


@app.command
@_handles_errors
def upgrade(
    prefix: PrefixArg = None,
    /,
    *,
    import_: Annotated[tuple[str, ...], Parameter(name="--import", negative=())] = (),
    dry_run: Annotated[bool, Parameter(name="--dry-run", negative=())] = False,
    limit: Annotated[int, Parameter(name="--limit")] = UPGRADE_FAILURES_SHOWN,
    common: Common | None = None,
) -> int:
    """Bring stored results to their current models through the upgrades registered
    with @upgrades, writing them back; report converted, failed and untouched. Exit 1
    if any failed.

    Parameters
    ----------
    import_
        A module to import first so its @register_model classes and @upgrades
        functions are known (repeatable; the current directory is searched first).
    dry_run
        Convert in memory and report, but write nothing.
    limit
        Failures listed at most (--json lists all).
    """
    opts = common or Common()
    with contextlib.redirect_stdout(sys.stderr):  # keep what the modules print out of --json
        maintenance.import_model_modules(import_)
    with _store(opts) as store, _progress("upgrade") as bar:
        report = upgrade_store.upgrade_store(store, prefix, dry_run=dry_run, progress=bar)
    code = 0 if report.ok else 1
    if opts.json:
        _json(report)
        return code
    if report.failed:
        table = Table("ID", "problem", "model", "message", title="failed", title_justify="left")
        for failure in report.failed[: max(limit, 0)]:
            table.add_row(
                _cell(failure.id),
                failure.kind.replace("_", " "),
                _cell(failure.model or "-"),
                _cell(failure.message, lines=True),
            )
        _out(table)
        if len(report.failed) > limit:
            _note(f"{len(report.failed) - max(limit, 0)} more failures not shown; --json lists all")
    if any(failure.kind == "unknown_model" for failure in report.failed):
        _note("records of unregistered models: pass --import MODULE for their models and upgrades")
    if report.changed:
        _note(
            f"{len(report.changed)} result(s) were written again while upgrading and are left "
            "as written; run upgrade again to check them"
        )
    verb = "would convert" if report.dry_run else "converted"
    _say(
        f"{verb} {len(report.converted)}, failed {len(report.failed)}, untouched "
        f"{report.untouched} of {report.checked} results in {report.location}"
    )
    return code


@app.command
@_handles_errors
def export(
    file: FileArg,
    /,
    *,
    prefix: Prefix = None,
    common: Common | None = None,
) -> int:
    """Write every result (or those under --prefix) to FILE as JSON Lines ('-' for stdout).

    Parameters
    ----------
    file
        The JSON Lines file to write; it is replaced only when the export succeeds.
    prefix
        Only IDs equal to or below this one.
    """
    opts = common or Common()
    with _store(opts) as store, _progress("export") as bar:
        target = sys.stdout if file == "-" else file
        report = transfer.export_jsonl(store, target, prefix, progress=bar)
    return _transferred(report, opts, "exported", to_stderr=file == "-" or _is_stdout(file))


@app.command(name="import")
@_handles_errors
def import_(
    file: FileArg | None = None,
    /,
    *,
    from_resultsmanager: Annotated[str | None, Parameter(name="--from-resultsmanager")] = None,
    on_conflict: OnConflict = SetBehavior.RAISE_IF_DIFFERENT,
    common: Common | None = None,
) -> int:
    """Store every record of a JSON Lines export ('-' for stdin), envelopes unchanged, or
    every result of an original ResultsManager store (--from-resultsmanager PATH).

    Parameters
    ----------
    file
        A file written by ``results-flow export``; read through once before the store is
        opened, so a bad file stores (and creates) nothing. A pipe or FIFO is read once,
        as '-' is: a bad line stops the import with the lines before it stored.
    from_resultsmanager
        Instead of FILE: the original ResultsManager's store, a folder of ``<id>.json``
        files or its SQLite database; IDs, model types, namespaces, data and times are
        kept. Read through once first, like FILE; never changed.
    on_conflict
        For an ID already stored: raise-if-different (equal records are skipped),
        skip-if-exists, raise-if-exists or overwrite.
    """
    opts = common or Common()
    if file is not None and from_resultsmanager is None:
        # A missing or malformed file must not leave a new, empty store; a pipe
        # (``<(zcat x.gz)``, a FIFO) can be read only once, so it is not read first.
        if file != "-" and not _is_pipe(file):
            transfer.check_jsonl(file)
        with (
            _conflict_hint(),
            _store(opts, create=True) as store,
            _progress("import") as bar,
        ):
            source = sys.stdin if file == "-" else file
            report = transfer.import_jsonl(store, source, on_conflict=on_conflict, progress=bar)
    elif from_resultsmanager is not None and file is None:
        legacy.check_resultsmanager_store(from_resultsmanager)  # likewise
        with (
            _conflict_hint(),
            _store(opts, create=True) as store,
            _progress("import") as bar,
        ):
            report = legacy.import_resultsmanager(
                store, from_resultsmanager, on_conflict=on_conflict, progress=bar
            )
    else:
        _fail("import needs FILE or --from-resultsmanager PATH (one of them)")
        return 2
    return _transferred(report, opts, "imported")


@app.command
@_handles_errors
def migrate(
    *,
    to: str,
    prefix: Prefix = None,
    on_conflict: OnConflict = SetBehavior.RAISE_IF_DIFFERENT,
    common: Common | None = None,
) -> int:
    """Copy every result (or those under --prefix) to the store at --to, envelopes unchanged.

    Parameters
    ----------
    to
        The target store URL; created if needed.
    prefix
        Only IDs equal to or below this one.
    on_conflict
        For an ID the target already holds: raise-if-different (equal records are
        skipped, so an interrupted migration can be rerun), skip-if-exists,
        raise-if-exists or overwrite.
    """
    opts = common or Common()
    with (
        _conflict_hint(),
        _store(opts) as source,
        _store(Common(store=to), create=True) as target,
        _progress("migrate") as bar,
    ):
        report = transfer.migrate(source, target, prefix, on_conflict=on_conflict, progress=bar)
    return _transferred(report, opts, "copied")


@app.command
@_handles_errors
def gc(
    *,
    older_than: Age = None,
    stray: Annotated[bool, Parameter(name="--stray", negative=())] = False,
    stray_age: Annotated[str, Parameter(allow_leading_hyphen=True)] = "1h",
    prefix: Prefix = None,
    yes: Yes = False,
    common: Common | None = None,
) -> int:
    """Delete results last updated longer ago than --older-than, and with --stray the
    temporary files killed writers left in a file store; asks first unless --yes.

    Parameters
    ----------
    older_than
        An age such as 30d, 12h, 1w or 1d12h (units s, m, h, d, w, M = 30d, y = 365d).
    stray
        Also remove the store's own hidden temporary files (``.NAME.json.XXXXXXXX.tmp``)
        untouched for --stray-age; never any other file. Only a file store has them.
    stray_age
        How long a temporary file must have been left alone to be removed.
    prefix
        Only IDs equal to or below this one (records only).
    yes
        Do not ask for confirmation.
    """
    opts = common or Common()
    if older_than is None and not stray:
        _fail("gc needs --older-than AGE, --stray, or both")
        return 2
    try:
        age = None if older_than is None else maintenance.parse_age(older_than)
        temp_age = maintenance.parse_age(stray_age)
    except MaintenanceError as exc:
        _fail(str(exc))
        return 2
    with _store(opts) as store:
        plan = strays = None
        if age is not None:
            with _progress("scan") as bar:
                try:
                    plan = maintenance.plan_gc(store, age, prefix, progress=bar)
                except MaintenanceError as exc:  # an age no record can reach: usage
                    _fail(str(exc))
                    return 2
        if stray:
            strays = stray_files.plan_stray(store, temp_age)
        what = []
        if plan is not None and plan.ids:
            what.append(f"{len(plan.ids)} result(s) last updated before {_time(plan.cutoff)}")
        if strays is not None and strays.paths:
            what.append(f"{len(strays.paths)} stray temporary file(s)")
        location = maintenance.backend_of(store).location
        if what and not (yes or _confirm(f"Delete {' and '.join(what)} from {location}?")):
            return _refused(location)
        report = removed = None
        if plan is not None:
            with _progress("delete") as bar:
                report = maintenance.delete_planned(store, plan, progress=bar)
        if strays is not None:
            removed = stray_files.remove_stray(store, strays)
    if opts.json:
        if removed is None:
            return _json(report)
        both = {"records": report, "stray": removed}
        return _json({k: v if v is None else v.model_dump(mode="json") for k, v in both.items()})
    if report is not None and age is not None:
        _say(
            f"deleted {report.deleted} result(s) older than {maintenance.human_age(age)} "
            f"from {report.location}"
        )
    if removed is not None:
        _say(
            f"removed {removed.removed} stray temporary file(s) older than "
            f"{maintenance.human_age(temp_age)} from {removed.location}"
        )
    return 0


def main() -> None:
    """Entry point of the ``results-flow`` console script."""
    app()


# --- helpers ----------------------------------------------------------------------------


@contextlib.contextmanager
def _store(opts: Common, *, create: bool = False) -> Iterator[ResultsManager]:
    """The store the options name; a missing file or SQLite store is an error unless ``create``."""
    with maintenance.open_store(opts.store, create=create) as store:
        yield store


@contextlib.contextmanager
def _conflict_hint() -> Iterator[None]:
    """Name the command-line flag that settles an import or migration conflict."""
    try:
        yield
    except (ResultExistsError, ResultConflictError) as exc:
        hint = "pass --on-conflict skip-if-exists or --on-conflict overwrite"
        raise type(exc)(f"{exc}; {hint}") from exc


class _Bar:
    """A ``ProgressSink`` drawn as a rich progress bar."""

    def __init__(self, progress: Progress, label: str) -> None:
        self._progress = progress
        self._label = label
        self._task: Any = None

    def start(self, total: int | None) -> None:
        self._task = self._progress.add_task(self._label, total=total)

    def advance(self, count: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, count)


@contextlib.contextmanager
def _progress(label: str) -> Iterator[_Bar | None]:
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


def _is_stdout(path: str) -> bool:
    """Whether ``path`` is where standard output goes (``/dev/stdout``, /proc/self/fd/1):
    the summary then goes to stderr, out of the exported lines."""
    try:
        there, out = os.stat(path), os.fstat(sys.stdout.fileno())
    except (OSError, ValueError):  # no such path, or stdout is no file (captured)
        return False
    return (there.st_dev, there.st_ino) == (out.st_dev, out.st_ino)


def _is_pipe(path: str) -> bool:
    """Whether ``path`` is there but is no regular file (a FIFO, /dev/fd/N, a device)."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False  # missing or unreadable: the check names it


def _confirm(question: str) -> bool:
    """Ask on the terminal; no answer (closed or unreadable stdin) means no."""
    try:
        return Confirm.ask(Text(_plain(question)), console=app.error_console, default=False)
    except (EOFError, OSError):
        return False


def _refused(location: str) -> int:
    _fail(f"not confirmed; nothing deleted from {location} (pass --yes to skip the question)")
    return 1


def _transferred(
    report: transfer.TransferReport, opts: Common, verb: str, *, to_stderr: bool = False
) -> int:
    """Print a transfer's outcome (on stderr when stdout carries the export itself)."""
    code = 0 if report.ok else 1
    if opts.json and not to_stderr:
        _json(report)
        return code
    line = f"{verb} {report.written} result(s) from {report.source} to {report.target}"
    if report.skipped:
        line += f"; {report.skipped} already there, left as they were"
    if to_stderr:
        _note(line)
    else:
        _say(line)
    if report.refused:
        shown = 5
        for refusal in report.refused[:shown]:
            _fail(f"{report.target} cannot hold {refusal.id!r}: {refusal.reason}")
        more = len(report.refused) - shown
        _fail(
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
#: The controls ``json.dumps`` leaves raw in strings (it escapes C0 itself).
_CONTROL_IN_JSON = re.compile(r"[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _plain(value: object, *, lines: bool = False) -> str:
    """``value`` as text a terminal shows as it is: every control character written as
    its escape (``\\x1b``, ``\\u202e``); newlines kept only with ``lines``. Everything
    the command prints from a store, a record, a path or an error goes through here."""
    pattern = _CONTROL_BUT_NEWLINE if lines else _CONTROL
    return pattern.sub(lambda found: repr(found.group())[1:-1], str(value))


def _cell(value: object, *, lines: bool = False) -> Text:
    """A table cell that shows ``value`` as plain text (no markup, no control characters)."""
    return Text(_plain(value, lines=lines))


def _json_text(data: object) -> str:
    """JSON text of ``data`` in which no control character is left raw: ``json`` escapes
    C0 controls; DEL, C1 and bidirectional controls (only ever inside strings) become
    ``\\uXXXX`` too, so the text stays valid JSON of the same value."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    return _CONTROL_IN_JSON.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def _json_view(data: object) -> Text:
    """``data`` as highlighted JSON whose long strings wrap at the terminal width."""
    view = JSONHighlighter()(_json_text(data))
    view.no_wrap = False
    view.overflow = "fold"
    return view


def _json(value: object) -> int:
    """Print a report or plain value as JSON on stdout; returns exit code 0."""
    data = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    app.console.out(_json_text(data), highlight=False)
    return 0


def _out(renderable: Any) -> None:
    app.console.print(renderable)


def _say(line: str) -> None:
    """One plain line on stdout, never wrapped at the terminal width."""
    app.console.print(Text(_plain(line)), soft_wrap=True)


def _note(message: str) -> None:
    app.error_console.print(Text(_plain(message), style="dim"), soft_wrap=True)


def _fail(message: str) -> None:
    app.error_console.print(Text.assemble(("error: ", "bold red"), _plain(message)), soft_wrap=True)


def _time(moment: datetime | None) -> str:
    return "-" if moment is None else moment.isoformat(sep=" ", timespec="seconds")


__all__ = ["app", "main"]

if __name__ == "__main__":  # python -m results_flow.cli, as the results-flow script
    main()
