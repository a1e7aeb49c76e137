"""``etl_flow``: a DataManager's ETL as a Prefect flow whose stages are stored steps.

Extract, validate, transform and load each run as a ``results_task``: a stage's
output is a small Pydantic model (``StagedExtraction``, ``StagedTables``,
``LoadReport``) stored as validated JSON under ``etl/<dataset>/<run key>/<stage>``,
where the run key hashes the dataset name, the files' content and the schemas. A
stage record holds each table's columns, row count and the IDs of its rows: the rows
themselves are ``RowChunk`` records of at most ``STAGE_CHUNK_ROWS`` rows under
``etl-rows/<dataset>/<run key>/<stage>/<table index>/<n>``, read one at a time by
the next stage, so a stage of a million rows is never one giant record. A rerun with the
same inputs takes finished stages from the store, so a failure in transform or
load does not redo extraction and validation; changed files make a new run key.
Load always runs (it writes to the manager) unless this run key already loaded a
dataset the manager still holds.

A run that fails on bad data logs its failing messages at ERROR and, by default,
ends the flow run Failed by raising ``ETLFailedError`` (its ``result`` is the
``ETLResult``); with ``raise_on_failure=False`` the flow run completes and returns
the failed result.

This module imports Prefect; the rest of ``results_flow.data`` does not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.utilities.annotations import quote
from pydantic import BaseModel, Field

from results_flow.data.columns import ColumnSpec
from results_flow.data.datasource import DataTable, table_model, validate_rows
from results_flow.data.etl import ETLPipeline, ETLResult, Files, files_by_name
from results_flow.data.extract import ExtractedData, RawTable
from results_flow.data.manager import DataManager
from results_flow.data.messages import ValidationResult
from results_flow.data.transform import Tables
from results_flow.errors import DataSourceExistsError, ETLFailedError
from results_flow.manager import ResultsManager, SetBehavior
from results_flow.prefect import results_task
from results_flow.records import utc_now

__all__ = [
    "CHUNK_PREFIX",
    "STAGE_PREFIX",
    "LoadReport",
    "RowChunk",
    "StagedExtraction",
    "StagedTable",
    "StagedTables",
    "etl_flow",
    "run_key",
]

STAGE_PREFIX = "etl"
#: Where the rows of stages are kept: ``etl-rows/<dataset>/<run key>/<stage>/<table>/<n>``.
CHUNK_PREFIX = "etl-rows"
#: Rows per chunk record: a stage of a million rows is 50 records of this size, not one.
STAGE_CHUNK_ROWS = 20_000
#: The layout of stage records; part of the run key, so older records are not misread.
STAGE_FORMAT = 2
#: Failing messages logged one by one before the rest are counted in one line.
LOGGED_MESSAGES = 20


class RowChunk(BaseModel):
    """Up to ``STAGE_CHUNK_ROWS`` rows of one staged table, stored as their own record."""

    rows: list[dict[str, Any]] = Field(default_factory=list)
    row_numbers: list[int] | None = Field(
        default=None, description="Each row's number in its file (extracted rows only)."
    )


class StagedTable(BaseModel):
    """One table of a stage: its shape, its row count and the records holding its rows."""

    name: str
    columns: list[ColumnSpec] = Field(default_factory=list)
    file: str | None = Field(default=None, description="The file it was read from.")
    file_columns: list[str] = Field(
        default_factory=list, description="The columns in the file (extracted tables)."
    )
    rows: int = Field(description="How many rows the table has.")
    chunks: list[str] = Field(
        default_factory=list, description="The IDs of the RowChunk records, in row order."
    )


class StagedExtraction(BaseModel):
    """The output of extract: a summary of each raw table and what extraction found."""

    tables: list[StagedTable] = Field(default_factory=list)
    validation: ValidationResult = Field(default_factory=ValidationResult)

    @classmethod
    def of(cls, extracted: ExtractedData, results: ResultsManager, base: str) -> StagedExtraction:
        """Stage ``extracted``: its rows go to chunk records under ``base``."""
        tables = []
        for index, raw in enumerate(extracted.tables.values()):
            chunks = _put_chunks(results, f"{base}/{index}", raw.rows, raw.row_numbers)
            tables.append(
                StagedTable(
                    name=raw.name,
                    file=raw.file,
                    file_columns=raw.columns,
                    rows=len(raw.rows),
                    chunks=chunks,
                )
            )
        return cls(tables=tables, validation=extracted.validation.model_copy(deep=True))

    def to_extracted(self, results: ResultsManager) -> ExtractedData:
        """The extracted tables, rows read back from their chunk records."""
        extracted = ExtractedData(validation=self.validation.model_copy(deep=True))
        for staged in self.tables:
            rows: list[dict[str, Any]] = []
            numbers: list[int] | None = None
            for chunk in _chunks(results, staged.chunks):
                rows.extend(chunk.rows)
                if chunk.row_numbers is not None:
                    numbers = (numbers or []) + chunk.row_numbers
            extracted.tables[staged.name] = RawTable(
                name=staged.name,
                file=staged.file or "",
                columns=staged.file_columns,
                rows=rows,
                row_numbers=numbers,
            )
        return extracted


class StagedTables(BaseModel):
    """The output of validate or transform: a summary of each table of valid rows (the
    rows themselves are in chunk records) and every finding so far."""

    tables: list[StagedTable] = Field(default_factory=list)
    validation: ValidationResult = Field(default_factory=ValidationResult)
    failed: bool = False

    @classmethod
    def of(
        cls,
        tables: Tables,
        result: ValidationResult,
        failed: bool,
        results: ResultsManager,
        base: str,
    ) -> StagedTables:
        """Stage ``tables`` (rows in JSON mode, in chunk records under ``base``)."""
        staged = []
        for index, table in enumerate(tables.values()):
            rows = table.dump("json")
            staged.append(
                StagedTable(
                    name=table.name,
                    columns=table.columns,
                    rows=len(rows),
                    chunks=_put_chunks(results, f"{base}/{index}", rows, None),
                )
            )
        return cls(tables=staged, validation=result.model_copy(deep=True), failed=failed)

    def to_tables(self, pipeline: ETLPipeline, dataset: str, results: ResultsManager) -> Tables:
        """The staged tables with validated rows (each table's declared model when it has one)."""
        tables = {}
        for staged in self.tables:
            model = table_model(staged.name, staged.columns, pipeline.schemas)
            rows: list[Any] = []
            for chunk in _chunks(results, staged.chunks):
                rows.extend(validate_rows(dataset, staged.name, model, chunk.rows))
            tables[staged.name] = DataTable(staged.name, model, rows)
        return tables


def _put_chunks(
    results: ResultsManager, base: str, rows: list[dict[str, Any]], numbers: list[int] | None
) -> list[str]:
    """Store ``rows`` as RowChunk records ``base/0``, ``base/1``...; their IDs.

    Each is overwritten: a stage that failed half-way leaves chunks the rerun replaces.
    """
    ids = []
    for n, start in enumerate(range(0, len(rows), STAGE_CHUNK_ROWS)):
        end = start + STAGE_CHUNK_ROWS
        chunk_id = f"{base}/{n}"
        chunk = RowChunk(
            rows=rows[start:end], row_numbers=None if numbers is None else numbers[start:end]
        )
        results.set(chunk_id, chunk, behavior=SetBehavior.OVERWRITE)
        ids.append(chunk_id)
    return ids


def _chunks(results: ResultsManager, ids: list[str]) -> Iterator[RowChunk]:
    """The chunk records, one at a time (so only one is decoded at once)."""
    for chunk_id in ids:
        yield results.get(chunk_id, RowChunk)


class LoadReport(BaseModel):
    """The output of load: what was stored, and when."""

    dataset_name: str
    dataset_created_at: datetime = Field(description="Tells this load from a later one.")
    tables: dict[str, int] = Field(description="Rows stored per table.")
    loaded_at: datetime = Field(default_factory=utc_now)


def run_key(files: Files, pipeline: ETLPipeline) -> str:
    """A stable key for one ETL input: dataset name, file contents and read options, and
    the table schemas (fields and their types, keys) and failure threshold."""
    sha = hashlib.sha256(pipeline.dataset_name.encode())
    for name, file in sorted(files_by_name(files).items()):
        sha.update(f"\0file:{name}:{file.digest()}".encode())
    for table in pipeline.schemas.values():
        model = table.model
        sha.update(
            f"\0table:{table.name}:{model.__module__}.{model.__qualname__}:"
            f"{[(n, repr(f.annotation), f.is_required()) for n, f in model.model_fields.items()]}:"
            f"{table.primary_key}:{table.unique}:"
            f"{[(fk.columns, fk.ref_table, fk.ref_columns) for fk in table.foreign_keys]}".encode()
        )
    sha.update(f"\0fail_on:{pipeline.fail_on.value}\0stages:{STAGE_FORMAT}".encode())
    return sha.hexdigest()[:16]


def _chunk_base(dataset_name: str, key: str, stage: str) -> str:
    return f"{CHUNK_PREFIX}/{dataset_name}/{key}/{stage}"


def _extract(
    pipeline: ETLPipeline, results: ResultsManager, dataset_name: str, key: str
) -> StagedExtraction:
    base = _chunk_base(dataset_name, key, "extract")
    return StagedExtraction.of(pipeline.extract(), results, base)


def _validate(
    pipeline: ETLPipeline,
    results: ResultsManager,
    extracted: StagedExtraction,
    dataset_name: str,
    key: str,
) -> StagedTables:
    tables, result = pipeline.validate(extracted.to_extracted(results))
    base = _chunk_base(dataset_name, key, "validate")
    return StagedTables.of(tables, result, pipeline.fails(result), results, base)


def _transform(
    pipeline: ETLPipeline,
    results: ResultsManager,
    validated: StagedTables,
    dataset_name: str,
    key: str,
) -> StagedTables:
    result = validated.validation.model_copy(deep=True)
    tables = pipeline.transform(validated.to_tables(pipeline, dataset_name, results), result)
    base = _chunk_base(dataset_name, key, "transform")
    return StagedTables.of(tables, result, pipeline.fails(result), results, base)


def _load(
    manager: DataManager,
    pipeline: ETLPipeline,
    results: ResultsManager,
    transformed: StagedTables,
    overwrite: bool,
    dataset_name: str,
    key: str,
) -> LoadReport:
    result = transformed.validation.model_copy(deep=True)
    tables = transformed.to_tables(pipeline, dataset_name, results)
    data_source = pipeline.load(tables, result)
    manager.add_data_source(data_source, overwrite=overwrite)
    return LoadReport(
        dataset_name=dataset_name,
        dataset_created_at=data_source.created_at,
        tables={name: len(t) for name, t in data_source.tables.items()},
    )


def _stage_id(stage: str) -> str:
    return f"{STAGE_PREFIX}/{{dataset_name}}/{{key}}/{stage}"


@flow(name="results-flow-etl", validate_parameters=False)
def etl_flow(
    manager: DataManager,
    files: Files,
    dataset_name: str,
    *,
    store: ResultsManager | str | None = None,
    overwrite: bool = False,
    raise_on_failure: bool = True,
) -> ETLResult:
    """Run ``manager``'s ETL on ``files`` into ``dataset_name``, one stored task per stage.

    Args:
        manager: the DataManager whose ETL factory builds the pipeline and which keeps
            the dataset.
        files: the files, as for ``DataManager.etl_data``.
        dataset_name: the dataset to create.
        store: where stage outputs are kept (a ResultsManager or a store URL); the
            default results_flow store when None.
        overwrite: replace a dataset of that name.
        raise_on_failure: when bad data fails the run, end the flow run Failed by
            raising ``ETLFailedError``; False completes it and returns the failed result.
            The failing messages are logged at ERROR either way.

    Returns:
        The ``ETLResult``.

    Raises:
        ETLFailedError: bad data failed the run and ``raise_on_failure`` is True; its
            ``result`` is the ``ETLResult``.
        ETLConstructionError: the pipeline cannot be built.
        DataSourceExistsError: the name is taken by another load and ``overwrite`` is False.
    """
    pipeline = manager.etl_factory.build_pipeline(files, dataset_name)
    key = run_key(files, pipeline)
    results = store if isinstance(store, ResultsManager) else ResultsManager(store)
    try:
        finished = _finished(manager, pipeline, results, key)
        if finished is not None:
            return finished
        if manager.has_data(dataset_name) and not overwrite:
            raise DataSourceExistsError(
                f"dataset {dataset_name!r} already exists in {manager!r}; delete it or pass "
                "overwrite=True"
            )
        outcome = _run_stages(manager, pipeline, results, key, overwrite)
    finally:
        if results is not store:
            results.close()
    if not outcome.succeeded:
        _report_failure(outcome, pipeline, raise_on_failure)
    return outcome


def _report_failure(outcome: ETLResult, pipeline: ETLPipeline, raise_on_failure: bool) -> None:
    """Log the failing messages at ERROR; raise ``ETLFailedError`` when asked to."""
    logger = get_run_logger()
    failing = outcome.validation_result.at_least(pipeline.fail_on) or list(
        outcome.validation_result.errors
    )
    for message in failing[:LOGGED_MESSAGES]:
        logger.error("%s", message)
    if len(failing) > LOGGED_MESSAGES:
        logger.error("... and %d more failing messages", len(failing) - LOGGED_MESSAGES)
    if raise_on_failure:
        first = f"; first: {failing[0]}" if failing else ""
        raise ETLFailedError(
            f"ETL {outcome.dataset_name!r} failed ({outcome.validation_result.summary()})"
            f"{first}; the result is on this error's .result, or pass raise_on_failure=False",
            outcome,
        )


def _run_stages(
    manager: DataManager,
    pipeline: ETLPipeline,
    results: ResultsManager,
    key: str,
    overwrite: bool,
) -> ETLResult:
    stage: dict[str, Any] = {"manager": results}
    extract = results_task(
        name="extract", id=_stage_id("extract"), ignore=["pipeline", "results"], **stage
    )(_extract)
    validate = results_task(
        name="validate",
        id=_stage_id("validate"),
        ignore=["pipeline", "results", "extracted"],
        **stage,
    )(_validate)
    transform = results_task(
        name="transform",
        id=_stage_id("transform"),
        ignore=["pipeline", "results", "validated"],
        **stage,
    )(_transform)
    load = results_task(  # always runs: it writes to the manager, and loads are replaceable
        name="load",
        id=_stage_id("load"),
        ignore=["manager", "pipeline", "results", "transformed", "overwrite"],
        behavior=SetBehavior.OVERWRITE,
        **stage,
    )(_load)

    name = pipeline.dataset_name
    # quote(): Prefect would otherwise walk every row looking for upstream futures.
    store = quote(results)
    extracted = extract(quote(pipeline), store, name, key)
    validated = validate(quote(pipeline), store, quote(extracted), name, key)
    if validated.failed:
        return pipeline.outcome(None, validated.validation)
    transformed = transform(quote(pipeline), store, quote(validated), name, key)
    if transformed.failed:
        return pipeline.outcome(None, transformed.validation)
    load(quote(manager), quote(pipeline), store, quote(transformed), overwrite, name, key)
    return pipeline.outcome(manager.get_data(name), transformed.validation)


def _finished(
    manager: DataManager, pipeline: ETLPipeline, results: ResultsManager, key: str
) -> ETLResult | None:
    """The result of a run of this key whose load finished and whose dataset is still
    the one it loaded; None when there is work to do."""
    name = pipeline.dataset_name
    prefix = f"{STAGE_PREFIX}/{name}/{key}"
    if not (results.exists(f"{prefix}/load") and manager.has_data(name)):
        return None
    report = results.get(f"{prefix}/load", LoadReport)
    current = manager.get_data(name)
    if current.created_at != report.dataset_created_at:
        return None  # replaced by another load since
    transformed = results.get(f"{prefix}/transform", StagedTables)
    return pipeline.outcome(current, transformed.validation)
