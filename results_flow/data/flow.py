"""``etl_flow``: a DataManager's ETL as a Prefect flow whose stages are stored steps.

Extract, validate, transform and load each run as a ``results_task``: a stage's
output is a small Pydantic model (``StagedExtraction``, ``StagedTables``,
``LoadReport``) stored as validated JSON under ``etl/<dataset>/<run key>/<stage>``
(``STAGE_ID``, filled by the same ID recipe as any ``results_task`` template),
where the run key hashes the dataset name, the files' content and the schemas. A
stage record holds each table's columns, row count and the IDs of its rows: the rows
themselves are ``RowChunk`` records of at most ``STAGE_CHUNK_ROWS`` rows under
``etl-rows/<dataset>/<run key>/<stage>/<table index>/<n>``, so a stage of a million
rows is never one giant record. Stages stream where they can, holding one chunk at a
time: extract reads CSV files in chunks; validate checks chunk by chunk
(``ChunkValidation``) when the pipeline streams (``ETLPipeline.stream_order``);
transform without transformers passes the validated chunks on; load with the default
loader hands chunks to ``DataManager.add_table_chunks`` (a ``DatabaseDataManager``
inserts them as they come). Other pipelines hold whole tables in the stages that need
them (custom validators, transformers or loaders see whole tables). A rerun with the
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

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.utilities.annotations import quote
from pydantic import BaseModel, Field

from results_flow.data.columns import ColumnSpec
from results_flow.data.data_manager import DataManager
from results_flow.data.datasource import DataTable, table_model, validate_rows
from results_flow.data.etl import DataSourceLoader, ETLPipeline, ETLResult, Files, files_by_name
from results_flow.data.extract import ExtractedData, RawTable
from results_flow.data.messages import Severity, ValidationResult
from results_flow.data.schemas import TableSchema
from results_flow.data.transform import Tables
from results_flow.data.validate import ChunkValidation
from results_flow.errors import DataSourceExistsError, ETLFailedError
from results_flow.hashing import stable_key
from results_flow.manager import ResultsManager, SetBehavior
from results_flow.prefect import ResultsTask, results_task
from results_flow.records import utc_now
from results_flow.settings import LOGGED_MESSAGES, STAGE_CHUNK_ROWS

__all__ = [
    "CHUNK_PREFIX",
    "STAGE_PREFIX",
    "LoadReport",
    "RowChunk",
    "StageRun",
    "StagedExtraction",
    "StagedTable",
    "StagedTables",
    "etl_flow",
    "run_key",
]

STAGE_PREFIX = "etl"
#: The ID of each stage record, filled by the Prefect layer's ID recipe like any
#: results_task template: ``etl/<dataset>/<run key>/<stage task name>``.
STAGE_ID = STAGE_PREFIX + "/{run.dataset}/{run.key}/{task}"
#: Where the rows of stages are kept: ``etl-rows/<dataset>/<run key>/<stage>/<table>/<n>``.
CHUNK_PREFIX = "etl-rows"
#: The layout of stage records; part of the run key, so older records are not misread.
STAGE_FORMAT = 3


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

    def add(
        self,
        results: ResultsManager,
        base: str,
        rows: list[dict[str, Any]],
        numbers: list[int] | None = None,
    ) -> None:
        """Store ``rows`` after the table's rows so far, as RowChunk records
        ``base/<n>`` of at most ``STAGE_CHUNK_ROWS`` rows each.

        Each is overwritten: a stage that failed half-way leaves chunks the rerun replaces.
        """
        for start in range(0, len(rows), STAGE_CHUNK_ROWS):
            end = start + STAGE_CHUNK_ROWS
            chunk_id = f"{base}/{len(self.chunks)}"
            chunk = RowChunk(
                rows=rows[start:end], row_numbers=None if numbers is None else numbers[start:end]
            )
            results.set(chunk_id, chunk, behavior=SetBehavior.OVERWRITE)
            self.chunks.append(chunk_id)
        self.rows += len(rows)

    def raw_chunks(self, results: ResultsManager) -> Iterator[RawTable]:
        """The extracted rows, one chunk record at a time (an empty table when none)."""
        if not self.chunks:
            yield self._raw([], [])
        for chunk in _chunks(results, self.chunks):
            yield self._raw(chunk.rows, chunk.row_numbers)

    def _raw(self, rows: list[dict[str, Any]], numbers: list[int] | None) -> RawTable:
        return RawTable.model_construct(
            name=self.name,
            file=self.file or "",
            columns=self.file_columns,
            rows=rows,
            row_numbers=numbers,
        )

    def model(self, schemas: Mapping[str, TableSchema]) -> type[BaseModel]:
        """The row model: the table's declared one, else one rebuilt from its columns."""
        return table_model(self.name, self.columns, schemas)

    def table_chunks(
        self, model: type[BaseModel], dataset: str, results: ResultsManager
    ) -> Iterator[DataTable]:
        """The rows validated as ``model``, one chunk record at a time (an empty table
        when none)."""
        if not self.chunks:
            yield DataTable(self.name, model, [])
        for chunk in _chunks(results, self.chunks):
            yield DataTable(self.name, model, validate_rows(dataset, self.name, model, chunk.rows))


class StagedExtraction(BaseModel):
    """The output of extract: a summary of each raw table and what extraction found."""

    tables: list[StagedTable] = Field(default_factory=list)
    validation: ValidationResult = Field(default_factory=ValidationResult)

    @classmethod
    def read(cls, pipeline: ETLPipeline, results: ResultsManager, base: str) -> StagedExtraction:
        """Read every file, a chunk at a time, into chunk records under ``base``.

        As in ``Extractor.extract``, a file whose reading ended on a CRITICAL finding
        gives no table (its chunk records are deleted).
        """
        staged = cls()
        found = staged.validation
        tables: dict[str, StagedTable] = {}
        count = 0
        for extractor in pipeline.extractors:
            before = len(found.messages)
            read: dict[str, tuple[StagedTable, str]] = {}
            for piece in extractor.chunks(found, STAGE_CHUNK_ROWS):
                if piece.name not in read:
                    table = StagedTable(
                        name=piece.name, file=piece.file, file_columns=piece.columns, rows=0
                    )
                    read[piece.name] = (table, f"{base}/{count}")
                    count += 1
                table, where = read[piece.name]
                table.add(results, where, piece.rows, piece.row_numbers)
            if any(m.severity is Severity.CRITICAL for m in found.messages[before:]):
                for table, _ in read.values():
                    for chunk_id in table.chunks:
                        results.delete(chunk_id)
                continue
            tables.update((name, table) for name, (table, _) in read.items())
        staged.tables = list(tables.values())
        return staged

    def to_extracted(self, results: ResultsManager) -> ExtractedData:
        """The extracted tables, rows read back from their chunk records."""
        extracted = ExtractedData(validation=self.validation.model_copy(deep=True))
        for staged in self.tables:
            rows: list[dict[str, Any]] = []
            numbers: list[int] = []
            for chunk in staged.raw_chunks(results):
                rows.extend(chunk.rows)
                numbers.extend(chunk.row_numbers or range(len(numbers) + 1, len(rows) + 1))
            extracted.tables[staged.name] = RawTable(
                name=staged.name,
                file=staged.file or "",
                columns=staged.file_columns,
                rows=rows,
                row_numbers=None if not numbers or numbers[-1] == len(numbers) else numbers,
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
            entry = StagedTable(name=table.name, columns=table.columns, rows=0)
            entry.add(results, f"{base}/{index}", table.dump("json"))
            staged.append(entry)
        return cls(tables=staged, validation=result.model_copy(deep=True), failed=failed)

    @classmethod
    def validated(
        cls,
        pipeline: ETLPipeline,
        extracted: StagedExtraction,
        results: ResultsManager,
        base: str,
    ) -> StagedTables:
        """Validate the extracted tables chunk by chunk (``ChunkValidation``), each chunk's
        valid rows stored under ``base`` as they come; the pipeline must stream
        (``stream_order``). A failing run stops keeping rows: it is never loaded."""
        result = extracted.validation.model_copy(deep=True)
        checks = ChunkValidation(
            pipeline.schemas, pipeline.validators, result, pipeline.message_limit
        )
        raw = {table.name: table for table in extracted.tables}
        order = [e.schema.tables[0].name for e in pipeline.stream_order() or []]
        staged: dict[str, StagedTable] = {}
        for index, name in enumerate(n for n in order if n in raw):
            for chunk in raw[name].raw_chunks(results):
                table = checks.validate(chunk)
                if table is None:
                    continue
                entry = staged.setdefault(
                    name, StagedTable(name=name, columns=table.columns, rows=0)
                )
                if not pipeline.fails(result):
                    entry.add(results, f"{base}/{index}", table.dump("json"))
        checks.finish(lambda name: raw[name].raw_chunks(results))
        tables = [staged[name] for name in pipeline.schemas if name in staged]
        return cls(tables=tables, validation=result, failed=pipeline.fails(result))

    def to_tables(self, pipeline: ETLPipeline, dataset: str, results: ResultsManager) -> Tables:
        """The staged tables with validated rows (each table's declared model when it has one)."""
        tables = {}
        for staged in self.tables:
            model = staged.model(pipeline.schemas)
            rows = [r for c in staged.table_chunks(model, dataset, results) for r in c.rows]
            tables[staged.name] = DataTable(staged.name, model, rows)
        return tables


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
    the table schemas (fields and their types, keys) and failure threshold; hashed as
    results_task parameters are."""
    tables = [
        {
            "name": table.name,
            "model": f"{table.model.__module__}.{table.model.__qualname__}",
            "fields": [
                [n, repr(f.annotation), f.is_required()]
                for n, f in table.model.model_fields.items()
            ],
            "primary_key": list(table.primary_key),
            "unique": [list(u) for u in table.unique],
            "foreign_keys": [
                [list(fk.columns), fk.ref_table, list(fk.ref_columns)] for fk in table.foreign_keys
            ],
        }
        for table in pipeline.schemas.values()
    ]
    inputs = {
        "dataset": pipeline.dataset_name,
        "files": {name: file.digest() for name, file in files_by_name(files).items()},
        "tables": tables,
        "fail_on": pipeline.fail_on.value,
        "stages": STAGE_FORMAT,
    }
    return stable_key(inputs, "etl run")


@dataclass(frozen=True)
class StageRun:
    """One ETL run of a dataset: what its stage IDs (``STAGE_ID``) and the IDs of its
    chunk records are made of."""

    dataset: str
    key: str

    def chunk_base(self, stage: str) -> str:
        """Where ``stage`` keeps its rows: ``etl-rows/<dataset>/<run key>/<stage>``."""
        return f"{CHUNK_PREFIX}/{self.dataset}/{self.key}/{stage}"


def _extract(pipeline: ETLPipeline, results: ResultsManager, run: StageRun) -> StagedExtraction:
    return StagedExtraction.read(pipeline, results, run.chunk_base("extract"))


def _validate(
    pipeline: ETLPipeline, results: ResultsManager, extracted: StagedExtraction, run: StageRun
) -> StagedTables:
    base = run.chunk_base("validate")
    if pipeline.stream_order() is not None:
        return StagedTables.validated(pipeline, extracted, results, base)
    tables, result = pipeline.validate(extracted.to_extracted(results))
    return StagedTables.of(tables, result, pipeline.fails(result), results, base)


def _transform(
    pipeline: ETLPipeline, results: ResultsManager, validated: StagedTables, run: StageRun
) -> StagedTables:
    if not pipeline.transformers:  # the validated chunks are the transformed ones
        return validated.model_copy(deep=True)
    result = validated.validation.model_copy(deep=True)
    tables = pipeline.transform(validated.to_tables(pipeline, run.dataset, results), result)
    base = run.chunk_base("transform")
    return StagedTables.of(tables, result, pipeline.fails(result), results, base)


def _load(
    manager: DataManager,
    pipeline: ETLPipeline,
    results: ResultsManager,
    transformed: StagedTables,
    overwrite: bool,
    run: StageRun,
) -> LoadReport:
    if type(pipeline.loader) is DataSourceLoader:  # a master dataset of the tables as they are
        chunks = (
            chunk
            for staged in transformed.tables
            for chunk in staged.table_chunks(staged.model(pipeline.schemas), run.dataset, results)
        )
        data_source = manager.add_table_chunks(run.dataset, chunks, overwrite=overwrite)
        counts = {staged.name: staged.rows for staged in transformed.tables}
    else:
        result = transformed.validation.model_copy(deep=True)
        tables = transformed.to_tables(pipeline, run.dataset, results)
        data_source = pipeline.load(tables, result)
        manager.add_data_source(data_source, overwrite=overwrite)
        counts = {name: len(t) for name, t in data_source.tables.items()}
    return LoadReport(
        dataset_name=run.dataset, dataset_created_at=data_source.created_at, tables=counts
    )


@dataclass(frozen=True)
class _Stages:
    """The four stages as results_tasks storing into one store; only ``run`` names
    their records (every other parameter is left out of the ID)."""

    extract: ResultsTask[..., StagedExtraction]
    validate: ResultsTask[..., StagedTables]
    transform: ResultsTask[..., StagedTables]
    load: ResultsTask[..., LoadReport]

    @classmethod
    def storing_in(cls, results: ResultsManager) -> _Stages:
        common = ["pipeline", "results"]
        return cls(
            extract=results_task(name="extract", id=STAGE_ID, ignore=common, manager=results)(
                _extract
            ),
            validate=results_task(
                name="validate", id=STAGE_ID, ignore=[*common, "extracted"], manager=results
            )(_validate),
            transform=results_task(
                name="transform", id=STAGE_ID, ignore=[*common, "validated"], manager=results
            )(_transform),
            # load always runs (it writes to the manager, and loads are replaceable)
            load=results_task(
                name="load",
                id=STAGE_ID,
                ignore=["manager", *common, "transformed", "overwrite"],
                behavior=SetBehavior.OVERWRITE,
                manager=results,
            )(_load),
        )


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
    run = StageRun(dataset_name, run_key(files, pipeline))
    results = store if isinstance(store, ResultsManager) else ResultsManager(store)
    try:
        stages = _Stages.storing_in(results)
        finished = _finished(manager, pipeline, stages, results, run)
        if finished is not None:
            return finished
        if manager.has_data(dataset_name) and not overwrite:
            raise DataSourceExistsError(
                f"dataset {dataset_name!r} already exists in {manager!r}; delete it or pass "
                "overwrite=True"
            )
        outcome = _run_stages(manager, pipeline, stages, results, run, overwrite)
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
    stages: _Stages,
    results: ResultsManager,
    run: StageRun,
    overwrite: bool,
) -> ETLResult:
    # quote(): Prefect would otherwise walk every row looking for upstream futures.
    store = quote(results)
    extracted = stages.extract(quote(pipeline), store, run)
    validated = stages.validate(quote(pipeline), store, quote(extracted), run)
    if validated.failed:
        return pipeline.outcome(None, validated.validation)
    transformed = stages.transform(quote(pipeline), store, quote(validated), run)
    if transformed.failed:
        return pipeline.outcome(None, transformed.validation)
    stages.load(quote(manager), quote(pipeline), store, quote(transformed), overwrite, run)
    return pipeline.outcome(manager.get_data(run.dataset), transformed.validation)


def _finished(
    manager: DataManager,
    pipeline: ETLPipeline,
    stages: _Stages,
    results: ResultsManager,
    run: StageRun,
) -> ETLResult | None:
    """The result of a run of this key whose load finished and whose dataset is still
    the one it loaded; None when there is work to do."""
    load_id = stages.load.result_id(manager, pipeline, results, None, False, run)
    if not (results.exists(load_id) and manager.has_data(run.dataset)):
        return None
    report = results.get(load_id, LoadReport)
    current = manager.get_data(run.dataset)
    if current.created_at != report.dataset_created_at:
        return None  # replaced by another load since
    transform_id = stages.transform.result_id(pipeline, results, None, run)
    transformed = results.get(transform_id, StagedTables)
    return pipeline.outcome(current, transformed.validation)
