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

from results_flow import legacy, maintenance, transfer
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
from results_flow.cli_app import is_pipe as _is_pipe
from results_flow.cli_app import is_stdout as _is_stdout
from results_flow.cli_app import json_view as _json_view
from results_flow.cli_app import note as _note
from results_flow.cli_app import opened as _store
from results_flow.cli_app import print_json as _json
from results_flow.cli_app import progress_bar as _progress
from results_flow.cli_app import render as _out
from results_flow.cli_app import say as _say
from results_flow.cli_app import transferred as _transferred
from results_flow.cli_app import when as _time
from results_flow.manager import SetBehavior


@app.command
@_handles_errors
def show(result_id: str, /, *, common: Common | None = None) -> int:
    """Show one stored result: its model, times, metadata and data (long strings wrap).

    Parameters
    ----------
    result_id
        The result's ID, e.g. ``projects/p1/results/analysis``.
    """
    opts = common or Common()
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
