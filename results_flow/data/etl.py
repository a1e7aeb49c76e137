"""The ETL pipeline: extract -> validate -> transform -> load, and the factory that builds it.

``ETLFactory`` builds the extraction sequence (one extractor per file), the
validation sequence, the transformation sequence and the loader;
``SimpleETLFactory`` does so with every validator on and no transformers unless
given. ``ETLPipeline.run()`` returns an ``ETLResult`` whatever the data holds: bad
data fails the result with messages, it never raises. A pipeline that cannot be
built (a file without a schema, a missing file, a format mismatch) raises
``ETLConstructionError`` from ``build_pipeline``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from results_flow.choices import member
from results_flow.data.datasource import DataKind, DataSource, check_dataset_name
from results_flow.data.extract import CsvExtractor, ExtractedData, Extractor, extractor_for
from results_flow.data.files import File
from results_flow.data.messages import Severity, ValidationResult
from results_flow.data.schemas import FileSchema, TableSchema, check_schemas
from results_flow.data.storable import refuse_transformed
from results_flow.data.transform import Tables, Transformer
from results_flow.data.validate import (
    ForeignKeyValidator,
    MissingValuesValidator,
    PrimaryKeyValidator,
    RequiredColumnsValidator,
    TypeValidator,
    UniqueValidator,
    Validator,
    default_validators,
    run_validators,
)
from results_flow.errors import ETLConstructionError
from results_flow.settings import VALIDATION_MESSAGE_LIMIT

Files = Mapping[str, File] | Iterable[File]


@dataclass
class ETLResult:
    """The outcome of an ETL run.

    Attributes:
        status: ``success`` when the dataset was built (and, from a manager, stored).
        dataset_name: the name asked for.
        data_source: the dataset built, or None when the run failed.
        validation_result: every message the run produced.
    """

    status: Literal["success", "failed"]
    dataset_name: str
    data_source: DataSource | None
    validation_result: ValidationResult

    @property
    def succeeded(self) -> bool:
        """Whether the status is ``success``."""
        return self.status == "success"

    @property
    def dataset(self) -> DataSource | None:
        """The dataset built (alias of ``data_source``)."""
        return self.data_source

    def __str__(self) -> str:
        return f"ETL {self.dataset_name!r}: {self.status} ({self.validation_result.summary()})"


class Loader(ABC):
    """Turns the final tables into the dataset to store."""

    @abstractmethod
    def load(self, tables: Tables, dataset_name: str, result: ValidationResult) -> DataSource:
        """The dataset named ``dataset_name`` holding ``tables``."""


class DataSourceLoader(Loader):
    """Builds a master ``DataSource`` from the tables, in schema order."""

    def load(self, tables: Tables, dataset_name: str, result: ValidationResult) -> DataSource:
        return DataSource(dataset_name, list(tables.values()), kind=DataKind.MASTER)


class ETLPipeline:
    """One ETL run over given files; each stage is a method so a flow can run it as a step."""

    def __init__(
        self,
        dataset_name: str,
        schemas: Mapping[str, TableSchema],
        extractors: Sequence[Extractor],
        validators: Sequence[Validator],
        transformers: Sequence[Transformer],
        loader: Loader,
        *,
        fail_on: Severity = Severity.ERROR,
        message_limit: int = VALIDATION_MESSAGE_LIMIT,
    ) -> None:
        self.dataset_name = check_dataset_name(dataset_name)
        self.schemas = dict(schemas)
        self.extractors = list(extractors)
        self.validators = list(validators)
        self.transformers = list(transformers)
        self.loader = loader
        self.fail_on = member(Severity, fail_on, "fail_on")
        self.message_limit = message_limit

    def extract(self) -> ExtractedData:
        """Read every file into raw tables."""
        extracted = ExtractedData()
        for extractor in self.extractors:
            for table in extractor.extract(extracted.validation):
                extracted.tables[table.name] = table
        return extracted

    def validate(self, extracted: ExtractedData) -> tuple[Tables, ValidationResult]:
        """Validate the raw tables: the tables of valid rows, and every finding so far."""
        tables, result = run_validators(
            extracted, self.schemas, self.validators, self.message_limit
        )
        ordered = {name: tables[name] for name in self.schemas if name in tables}
        return ordered, result

    def transform(self, tables: Tables, result: ValidationResult) -> Tables:
        """Apply the transformers in order."""
        for transformer in self.transformers:
            tables = transformer.transform(tables, result)
        if self.transformers:  # what they made must be storable, as validation ensured for files
            keys = {name: schema.primary_key for name, schema in self.schemas.items()}
            refuse_transformed(tables, keys, result)
        return tables

    def load(self, tables: Tables, result: ValidationResult) -> DataSource:
        """Build the dataset."""
        return self.loader.load(tables, self.dataset_name, result)

    def stream_order(self) -> list[CsvExtractor] | None:
        """The extractors in an order that lets the data stream in chunks, or None.

        Streaming needs CSV files only, no transformers, the default loader, the built-in
        validators, and tables whose foreign keys point to other tables that can be read
        before them (no cycle, no table referencing itself).
        """
        csv = [e for e in self.extractors if type(e) is CsvExtractor]
        if (
            len(csv) != len(self.extractors)
            or self.transformers
            or type(self.loader) is not DataSourceLoader
            or any(type(v) not in _STREAMING_VALIDATORS for v in self.validators)
        ):
            return None
        table_of = {id(e): e.schema.tables[0].name for e in csv}
        pending = list(csv)
        done: set[str] = set()
        order: list[CsvExtractor] = []
        while pending:
            ready = [
                e
                for e in pending
                if all(
                    fk.ref_table in done or fk.ref_table not in self.schemas
                    for fk in self.schemas[table_of[id(e)]].foreign_keys
                )
            ]
            if not ready:
                return None
            for extractor in ready:
                pending.remove(extractor)
                done.add(table_of[id(extractor)])
                order.append(extractor)
        return order

    def fails(self, result: ValidationResult) -> bool:
        """Whether ``result`` holds a message at the failure threshold (or CRITICAL)."""
        return result.fails(self.fail_on)

    def outcome(self, data_source: DataSource | None, result: ValidationResult) -> ETLResult:
        """The ``ETLResult`` for a dataset (None when a stage failed)."""
        if data_source is None or self.fails(result):
            return ETLResult("failed", self.dataset_name, None, result)
        return ETLResult("success", self.dataset_name, data_source, result)

    def run(self) -> ETLResult:
        """Extract, validate, transform and load; stops after the first failing stage."""
        tables, result = self.validate(self.extract())
        if self.fails(result):
            return self.outcome(None, result)
        tables = self.transform(tables, result)
        if self.fails(result):
            return self.outcome(None, result)
        return self.outcome(self.load(tables, result), result)


_STREAMING_VALIDATORS = (
    RequiredColumnsValidator,
    MissingValuesValidator,
    TypeValidator,
    PrimaryKeyValidator,
    UniqueValidator,
    ForeignKeyValidator,
)


class ETLFactory(ABC):
    """Builds ETL pipelines for a set of file schemas.

    Subclasses say which validators, transformers and loader a pipeline uses;
    ``build_pipeline`` checks the files against the schemas.

    Args:
        schemas: the files (and their tables) datasets are loaded from.
        fail_on: the severity at which a run fails (CRITICAL always fails).
        require_all_files: every declared file must be given to each run.
        message_limit: per table and message code, findings listed before summarizing.
    """

    def __init__(
        self,
        schemas: Iterable[FileSchema],
        *,
        fail_on: Severity = Severity.ERROR,
        require_all_files: bool = True,
        message_limit: int = VALIDATION_MESSAGE_LIMIT,
    ) -> None:
        self.schemas = check_schemas(schemas)
        self.fail_on = member(Severity, fail_on, "fail_on")
        self.require_all_files = require_all_files
        self.message_limit = message_limit

    def create_extractors(self, files: Mapping[str, File]) -> list[Extractor]:
        """One extractor per file, in the format its schema declares.

        Raises:
            ETLConstructionError: see ``build_pipeline``.
        """
        return [extractor_for(file, self.schemas[name]) for name, file in files.items()]

    @abstractmethod
    def create_validators(self) -> list[Validator]:
        """The validation sequence."""

    @abstractmethod
    def create_transformers(self) -> list[Transformer]:
        """The transformation sequence."""

    @abstractmethod
    def create_loader(self) -> Loader:
        """The loader."""

    def build_pipeline(self, files: Files, dataset_name: str) -> ETLPipeline:
        """A pipeline loading ``files`` into ``dataset_name``.

        ``files`` maps schema file names to files, or is a list of files matched by name.

        Raises:
            ETLConstructionError: a file has no schema, a declared file is not given,
                a file is missing or of another format, or XLSX lacks openpyxl.
            InvalidDatasetNameError: ``dataset_name`` is unfit for files and tables.
        """
        check_dataset_name(dataset_name)
        given = files_by_name(files)
        unknown = sorted(set(given) - set(self.schemas))
        if unknown:
            raise ETLConstructionError(
                f"dataset {dataset_name!r}: no schema for file(s) {', '.join(map(repr, unknown))}; "
                f"declared: {', '.join(map(repr, sorted(self.schemas)))}"
            )
        absent = sorted(set(self.schemas) - set(given))
        if absent and self.require_all_files:
            raise ETLConstructionError(
                f"dataset {dataset_name!r}: file(s) {', '.join(map(repr, absent))} not given"
            )
        if not given:
            raise ETLConstructionError(f"dataset {dataset_name!r}: no files given")
        for file in given.values():
            file.check_readable()
        tables = {t.name: t for name in given for t in self.schemas[name].tables}
        return ETLPipeline(
            dataset_name,
            tables,
            self.create_extractors(given),
            self.create_validators(),
            self.create_transformers(),
            self.create_loader(),
            fail_on=self.fail_on,
            message_limit=self.message_limit,
        )

    @property
    def file_schemas(self) -> list[FileSchema]:
        """The declared file schemas."""
        return list(self.schemas.values())


class SimpleETLFactory(ETLFactory):
    """An ETL factory with good defaults: every validator, the given transformers, and a
    loader that builds a master ``DataSource``.

    Args:
        schemas: the files (and their tables) datasets are loaded from.
        validators: replaces the default validators (a ``TypeValidator`` is always run).
        transformers: run in order after validation.
        fail_on: the severity at which a run fails; ERROR by default.
        require_all_files: every declared file must be given to each run.
        message_limit: per table and message code, findings listed before summarizing.
    """

    def __init__(
        self,
        schemas: Iterable[FileSchema],
        *,
        validators: Sequence[Validator] | None = None,
        transformers: Sequence[Transformer] = (),
        fail_on: Severity = Severity.ERROR,
        require_all_files: bool = True,
        message_limit: int = VALIDATION_MESSAGE_LIMIT,
    ) -> None:
        super().__init__(
            schemas,
            fail_on=fail_on,
            require_all_files=require_all_files,
            message_limit=message_limit,
        )
        self.validators = list(validators) if validators is not None else None
        self.transformers = list(transformers)

    def create_validators(self) -> list[Validator]:
        return list(self.validators) if self.validators is not None else default_validators()

    def create_transformers(self) -> list[Transformer]:
        return list(self.transformers)

    def create_loader(self) -> Loader:
        return DataSourceLoader()


def files_by_name(files: Files) -> dict[str, File]:
    """The files by schema file name (a list of files is keyed by each file's name).

    Raises:
        ETLConstructionError: two files of a list have the same name.
    """
    if isinstance(files, Mapping):
        return dict(files)
    named: dict[str, File] = {}
    for file in files:
        if file.name in named:
            raise ETLConstructionError(f"two files are named {file.name!r}")
        named[file.name] = file
    return named
