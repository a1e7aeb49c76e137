"""``ls``, ``rm``, ``gc`` and ``verify``: find results by what made them, clean them up,
and check a store. Registered on ``results_flow.cli_app.app`` when ``results_flow.cli``
imports this module; each command makes one library call (``ResultsManager.find``,
``cleanup``, ``maintenance``) and formats the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from cyclopts import Parameter
from rich.filesize import decimal
from rich.table import Table

from results_flow import cleanup, failures, finding, maintenance
from results_flow import stray as stray_files
from results_flow.cli_app import (
    Age,
    Common,
    Prefix,
    PrefixArg,
    Yes,
    app,
    cell,
    confirm,
    fail,
    handles_errors,
    import_models,
    note,
    opened,
    plain,
    print_json,
    progress_bar,
    refused,
    render,
    say,
    when,
)
from results_flow.errors import MaintenanceError
from results_flow.maintenance import parse_age
from results_flow.manager import ResultsManager
from results_flow.query import RecordQuery, human_age, parse_params
from results_flow.settings import PLAN_IDS_SHOWN, VERIFY_LINES

Imports = Annotated[tuple[str, ...], Parameter(name="--import", negative=())]
DryRun = Annotated[bool, Parameter(name="--dry-run", negative=())]


@Parameter(name="*")
@dataclass
class Filters:
    """What made a result: the filters of ``ls`` and ``rm`` (each given one must hold)."""

    flow: Annotated[str | None, Parameter(name="--flow")] = None
    """Only results of this flow (its name)."""

    task: Annotated[str | None, Parameter(name="--task")] = None
    """Only results of this task (its name)."""

    flow_run: Annotated[str | None, Parameter(name="--flow-run")] = None
    """Only results made in this flow run (its ID)."""

    version: Annotated[str | None, Parameter(name="--version")] = None
    """Only results of this task version."""

    param: Annotated[tuple[str, ...], Parameter(name="--param", negative=())] = ()
    """NAME=VALUE: only results of calls with this parameter value (repeatable; a
    number or true/false matches the stored JSON value, e.g. n=3)."""

    older_than: Age = None
    """Only results last updated longer ago than this age (30d, 12h, 1w, 1d12h)."""

    invalid: Annotated[bool, Parameter(name="--invalid", negative=())] = False
    """Only results that no longer validate as their registered model (needs the
    models: see --import)."""

    import_: Imports = ()
    """A module to import first so its @register_model classes are known (repeatable)."""

    def active(self) -> bool:
        return any((self.flow, self.task, self.flow_run, self.version, self.param)) or bool(
            self.older_than is not None or self.invalid
        )

    def find(self, store: ResultsManager, prefix: str | None) -> list[str]:
        """``store.find`` with these filters (check them first with ``query``)."""
        return store.find(prefix, **self._made_by(), invalid=self.invalid)

    def query(self, prefix: str | None) -> RecordQuery:
        """The query of these filters under ``prefix`` (``invalid`` aside).

        Raises:
            MaintenanceError: a malformed age or parameter (a usage error).
            InvalidResultIdError: the prefix breaks the ID grammar.
        """
        return finding.record_query(prefix, **self._made_by())

    def _made_by(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "task": self.task,
            "flow_run": self.flow_run,
            "version": self.version,
            "params": dict(parse_params(self.param)),
            "older_than": None if self.older_than is None else parse_age(self.older_than),
        }


@app.command(version_flags=[])
@handles_errors
def ls(
    prefix: str | None = None,
    /,
    *,
    long: Annotated[bool, Parameter(name=["--long", "-l"], negative=())] = False,
    failed: Annotated[bool, Parameter(name="--failed", negative=())] = False,
    filters: Filters | None = None,
    common: Common | None = None,
) -> int:
    """List stored IDs, all or those under PREFIX (whole segments) that the filters
    select, sorted.

    Parameters
    ----------
    prefix
        Only IDs equal to or below this one (``models`` or ``models/`` finds ``models/x``,
        not ``modelsx``).
    long
        Also show model, namespace, update time and size (reads every record listed).
        Not on a terminal, one tab-separated line per result, IDs whole.
    failed
        List the failure records instead: the results_map items that failed after their
        retries and have no result yet (error, attempts, runs failed in a row, runs).
    """
    opts, chosen = common or Common(), filters or Filters()
    if failed:
        return _ls_failed(opts, prefix)
    try:
        query = chosen.query(prefix)
    except MaintenanceError as exc:
        fail(str(exc))
        return 2
    import_models(chosen.import_)
    with opened(opts) as store:
        ids = chosen.find(store, prefix)
        rows = maintenance.summaries(store, ids=ids) if long else None
    if opts.json:
        return print_json(ids if rows is None else [row.model_dump(mode="json") for row in rows])
    if rows is None:
        if ids:
            app.console.out("\n".join(map(plain, ids)), highlight=False)
    elif app.console.is_terminal:
        table = Table("ID", "model", "namespace", "updated", "size", box=None)
        table.columns[0].overflow = "fold"  # wrapped, never cut
        for row in rows:
            fields = (row.model_type, row.namespace, when(row.updated_at), decimal(row.size))
            table.add_row(cell(row.id), *map(cell, fields))
        render(table)
    else:
        for row in rows:
            line = (row.id, row.model_type, row.namespace, when(row.updated_at), str(row.size))
            # Straight to the file: rich would expand the tabs into spaces.
            print("\t".join(map(plain, line)), file=app.console.file)
    if not ids:
        note("no results" + ("" if query == RecordQuery() else f" {query.describe()}"))
    return 0


@app.command(version_flags=[])
@handles_errors
def rm(
    *result_ids: str,
    prefix: Prefix = None,
    filters: Filters | None = None,
    dry_run: DryRun = False,
    yes: Yes = False,
    common: Common | None = None,
) -> int:
    """Delete results: the IDs given, or every result under --prefix that the filters
    select (in batches); shows the plan and asks first unless --yes.

    Parameters
    ----------
    result_ids
        IDs to delete (any number; or give --prefix and filters instead).
    prefix
        Delete every ID equal to or below this one (that the filters select).
    dry_run
        Only show what would be deleted (every ID; --json: the plan).
    yes
        Do not ask for confirmation.
    """
    opts, chosen = common or Common(), filters or Filters()
    try:
        query = chosen.query(prefix) if prefix is not None or chosen.active() else None
    except MaintenanceError as exc:
        fail(str(exc))
        return 2
    import_models(chosen.import_)
    with opened(opts) as store:
        plan = cleanup.plan_delete(store, result_ids, query=query, invalid=chosen.invalid)
        if query is None:
            what = plan.ids[0] if len(plan.ids) == 1 else f"{len(plan.ids)} results"
        elif query == RecordQuery(prefix=query.prefix) and not chosen.invalid:
            what = f"{len(plan.ids)} results under {prefix!r}"
        else:
            what = f"{len(plan.ids)} result(s) ({plan.selection})"
        if dry_run:
            return _planned(plan, opts, what)
        if not plan.ids:
            note(f"no results {plan.selection}; nothing deleted")
            empty = cleanup.DeleteReport(location=plan.location, deleted=0, kept=0)
            return print_json(empty) if opts.json else 0
        _show_plan(plan.ids, yes)
        if not (yes or confirm(f"Delete {what} from {plan.location}?")):
            return refused(plan.location)
        with progress_bar("delete") as bar:
            report = cleanup.delete_planned(store, plan, progress=bar)
    if opts.json:
        return print_json(report)
    kept = f"; {report.kept} kept (gone or updated since the plan)" if report.kept else ""
    say(f"deleted {report.deleted} result(s) from {report.location}{kept}")
    return 0


@app.command
@handles_errors
def gc(
    *,
    older_than: Age = None,
    keep_versions: Annotated[int | None, Parameter(name="--keep-versions")] = None,
    invalid: Annotated[bool, Parameter(name="--invalid", negative=())] = False,
    import_: Imports = (),
    max_size: Annotated[str | None, Parameter(name="--max-size")] = None,
    stray: Annotated[bool, Parameter(name="--stray", negative=())] = False,
    stray_age: Annotated[str, Parameter(allow_leading_hyphen=True)] = "1h",
    prefix: Prefix = None,
    dry_run: DryRun = False,
    yes: Yes = False,
    common: Common | None = None,
) -> int:
    """Delete the results any rule picks (an age, old versions, invalid records, a size
    cap), and with --stray the temporary files killed writers left in a file store;
    shows the plan and asks first unless --yes.

    Parameters
    ----------
    older_than
        An age such as 30d, 12h, 1w or 1d12h (units s, m, h, d, w, M = 30d, y = 365d).
    keep_versions
        Per task (flow and task name), keep the results of the newest N versions (a
        version is as new as its newest result); delete the older versions' results.
    invalid
        Delete results that no longer validate as their registered model (see --import;
        a result of a model that is not registered stops gc, it is never deleted).
    import_
        A module to import first so its @register_model classes are known (repeatable).
    max_size
        After the other rules, delete the oldest results until the rest holds at most
        this much (500MB, 1.5G, 2GiB, or bytes), as ``stats`` counts sizes.
    stray
        Also remove the store's own hidden temporary files (``.NAME.json.XXXXXXXX.tmp``)
        untouched for --stray-age; never any other file. Only a file store has them.
    stray_age
        How long a temporary file must have been left alone to be removed.
    prefix
        Only IDs equal to or below this one (records only).
    dry_run
        Only show what would be deleted (every ID; --json: the plan).
    yes
        Do not ask for confirmation.
    """
    opts = common or Common()
    rules = older_than is not None or keep_versions is not None or invalid or max_size is not None
    if not (rules or stray):
        fail(
            "gc needs a rule: --older-than AGE, --keep-versions N, --invalid, "
            "--max-size SIZE, or --stray"
        )
        return 2
    try:
        age = None if older_than is None else maintenance.parse_age(older_than)
        temp_age = maintenance.parse_age(stray_age)
        size = None if max_size is None else cleanup.parse_size(max_size)
    except MaintenanceError as exc:
        fail(str(exc))
        return 2
    import_models(import_)
    with opened(opts) as store:
        plan = strays = None
        if rules:
            with progress_bar("scan") as bar:
                try:
                    plan = cleanup.plan_gc(
                        store,
                        age,
                        prefix,
                        keep_versions=keep_versions,
                        invalid=invalid,
                        max_size=size,
                        progress=bar,
                    )
                except MaintenanceError as exc:  # an age no record can reach, 0 versions: usage
                    fail(str(exc))
                    return 2
        if stray:
            strays = stray_files.plan_stray(store, temp_age)
        what = []
        if plan is not None and plan.ids:
            if plan.cutoff is not None:
                what.append(f"{len(plan.ids)} result(s) last updated before {when(plan.cutoff)}")
            else:
                reasons = ", ".join(f"{count} {reason}" for reason, count in plan.reasons.items())
                what.append(f"{len(plan.ids)} result(s) ({reasons})")
        if strays is not None and strays.paths:
            what.append(f"{len(strays.paths)} stray temporary file(s)")
        location = maintenance.backend_of(store).location
        if dry_run and plan is not None:
            return _planned(plan, opts, " and ".join(what) or "no results")
        if plan is not None:
            _show_plan(plan.ids, yes)
        if what and not (yes or confirm(f"Delete {' and '.join(what)} from {location}?")):
            return refused(location)
        report = removed = None
        if plan is not None:
            with progress_bar("delete") as bar:
                report = cleanup.delete_planned(store, plan, progress=bar)
        if strays is not None:
            removed = stray_files.remove_stray(store, strays)
    if opts.json:
        if removed is None:
            return print_json(report)
        both = {"records": report, "stray": removed}
        return print_json(
            {k: v if v is None else v.model_dump(mode="json") for k, v in both.items()}
        )
    if report is not None:
        by_age = age is not None and plan is not None and plan.cutoff is not None
        older = f" older than {human_age(age)}" if by_age and age is not None else ""
        say(f"deleted {report.deleted} result(s){older} from {report.location}")
    if removed is not None:
        say(
            f"removed {removed.removed} stray temporary file(s) older than "
            f"{human_age(temp_age)} from {removed.location}"
        )
    return 0


@app.command
@handles_errors
def verify(
    prefix: PrefixArg = None,
    /,
    *,
    import_: Imports = (),
    limit: int = VERIFY_LINES,
    common: Common | None = None,
) -> int:
    """Validate every result against its registered model; exit 1 if any fails. Prints a
    summary (counts by kind of problem), then at most --limit problems grouped by kind.

    Parameters
    ----------
    import_
        A module to import first so its @register_model classes are known
        (repeatable; the current directory is searched first).
    limit
        How many problems to list one by one (--json lists all).
    """
    opts = common or Common()
    import_models(import_)
    with opened(opts) as store, progress_bar("verify") as bar:
        report = maintenance.verify(store, prefix, progress=bar)
    if opts.json:
        print_json(report)
        return 0 if report.ok else 1
    counts = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in report.counts.items())
    strays = f"; {len(report.orphans)} stray file(s)" if report.orphans else ""
    summary = f"{report.valid} of {report.checked} results valid in {report.location}"
    say(summary + (f": {counts}" if counts else "") + strays)
    unknown = report.counts.get("unknown_model", 0)
    if unknown:
        note(f"{unknown} record(s) of unregistered models: pass --import MODULE for their models")
    shown = 0
    problems: list[tuple[str, str]] = [
        (f.kind, f"{f.id}  {f.model or '-'}  {f.detail}") for f in report.failures
    ]
    problems += [("stray_file", f"{orphan}  (no record)") for orphan in report.orphans]
    for kind in dict.fromkeys(kind for kind, _ in problems):
        lines = [line for k, line in problems if k == kind][: max(limit - shown, 0)]
        if lines:
            say(f"{kind.replace('_', ' ')}:")
            for line in lines:
                say(f"  {line}")
            shown += len(lines)
    if len(problems) > shown:
        note(f"{len(problems) - shown} more not shown (--limit N shows more; --json lists all)")
    return 0 if report.ok else 1


def _ls_failed(opts: Common, prefix: str | None) -> int:
    """``ls --failed``: the failure records under PREFIX."""
    with opened(opts) as store:
        rows = list(failures.failures_under(store, prefix).values())
    if opts.json:
        return print_json([row.model_dump(mode="json") for row in rows])
    if not rows:
        note("no failure records" + ("" if prefix is None else f" under {prefix!r}"))
        return 0
    # Two lines per record, never cut at the terminal's width: the ID and counts, the error.
    for row in rows:
        say(
            f"{row.result_id}  failed {row.runs_failed} run(s) in a row, last "
            f"{when(row.failed_at)} after {row.attempts} attempt(s)"
        )
        say(f"    {row.error_type}: {row.message}")
    return 0


def _show_plan(ids: Sequence[str], yes: bool) -> None:
    """The first IDs of a deletion on stderr, before the question."""
    if yes or not ids:
        return
    for result_id in ids[:PLAN_IDS_SHOWN]:
        note(f"  {result_id}")
    if len(ids) > PLAN_IDS_SHOWN:
        note(f"  ... and {len(ids) - PLAN_IDS_SHOWN} more (--dry-run lists all)")


def _planned(plan: cleanup.DeletePlan, opts: Common, what: str) -> int:
    """A plan shown instead of carried out (--dry-run, or nothing to delete)."""
    if opts.json:
        return print_json(plan)
    if plan.ids:
        app.console.out("\n".join(map(plain, plan.ids)), highlight=False)
        note(f"would delete {what} from {plan.location} (dry run: nothing deleted)")
    else:
        note(f"no results to delete from {plan.location}; nothing deleted")
    return 0
