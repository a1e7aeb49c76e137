"""The ``results-flow`` command: look into and look after a results_flow store.

A thin layer over ``results_flow.maintenance``, ``cleanup`` and ``transfer``: each
command parses its options, opens the store, makes one library call and formats the
answer (rich tables for people, ``--json`` for scripts). A named results_flow error
becomes one line on stderr and exit code 1; usage errors exit with 2. Importing this
module does not import Prefect, so the command starts fast. The app and what commands
share live in ``results_flow.cli_app`` (imported here under the names this module has
always used); ``ls``, ``rm``, ``gc`` and ``verify`` in ``results_flow.cli_find``.
"""

from __future__ import annotations

import sys
from typing import Annotated

from cyclopts import Parameter
from rich.console import Group
from rich.filesize import decimal
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from results_flow import legacy, maintenance, transfer, upgrade_store
from results_flow.cli_app import (
    Common,
    FileArg,
    OnConflict,
    Prefix,
    PrefixArg,
    app,
)
from results_flow.cli_app import cell as _cell
from results_flow.cli_app import conflict_hint as _conflict_hint
from results_flow.cli_app import fail as _fail
from results_flow.cli_app import handles_errors as _handles_errors
from results_flow.cli_app import import_models as _import_models
from results_flow.cli_app import is_pipe as _is_pipe
from results_flow.cli_app import is_stdout as _is_stdout
from results_flow.cli_app import json_view as _json_view
from results_flow.cli_app import note as _note
from results_flow.cli_app import opened as _store
from results_flow.cli_app import plain as _plain
from results_flow.cli_app import print_json as _json
from results_flow.cli_app import progress_bar as _progress
from results_flow.cli_app import render as _out
from results_flow.cli_app import say as _say
from results_flow.cli_app import transferred as _transferred
from results_flow.cli_app import when as _time
from results_flow.lineage import LineageNode
from results_flow.lineage import lineage as lineage_of
from results_flow.manager import SetBehavior
from results_flow.settings import UPGRADE_FAILURES_SHOWN


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
    _import_models(import_)  # what the modules print stays out of --json
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


def main() -> None:
    """Entry point of the ``results-flow`` console script."""
    app()


# ls, rm, gc and verify (finding and cleaning up) live in their own module.
from results_flow import cli_find  # noqa: E402, F401  (registers its commands on app)

__all__ = ["app", "main"]

if __name__ == "__main__":  # python -m results_flow.cli, as the results-flow script
    main()
