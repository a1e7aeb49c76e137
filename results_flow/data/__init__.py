"""The data layer: ETL from files into datasets of validated Pydantic rows, and the
managers that keep them in memory, in a folder or in a SQL database.

The Prefect flow (``etl_flow``) lives in ``results_flow.data.flow`` and is imported
from there, so that using the data layer does not import Prefect.
"""

from results_flow.data.columns import ColumnSpec
from results_flow.data.data_manager import DataManager, StatelessDataManager
from results_flow.data.database import DatabaseDataManager
from results_flow.data.datasource import DataKind, DataSource, DataTable
from results_flow.data.etl import (
    DataSourceLoader,
    ETLFactory,
    ETLPipeline,
    ETLResult,
    Loader,
    SimpleETLFactory,
)
from results_flow.data.extract import ExtractedData, Extractor, RawTable
from results_flow.data.files import CsvOptions, File
from results_flow.data.messages import Severity, ValidationMessage, ValidationResult
from results_flow.data.schemas import FileFormat, FileSchema, ForeignKey, TableSchema, schema
from results_flow.data.stateful import StartupError, StatefulDataManager
from results_flow.data.transform import CleanTransformer, JoinTransformer, Transformer
from results_flow.data.validate import (
    ForeignKeyValidator,
    MissingValuesValidator,
    PrimaryKeyValidator,
    RequiredColumnsValidator,
    TypeValidator,
    UniqueValidator,
    ValidationContext,
    Validator,
    default_validators,
)

__all__ = [
    "CleanTransformer",
    "ColumnSpec",
    "CsvOptions",
    "DataKind",
    "DataManager",
    "DataSource",
    "DataSourceLoader",
    "DataTable",
    "DatabaseDataManager",
    "ETLFactory",
    "ETLPipeline",
    "ETLResult",
    "ExtractedData",
    "Extractor",
    "File",
    "FileFormat",
    "FileSchema",
    "ForeignKey",
    "ForeignKeyValidator",
    "JoinTransformer",
    "Loader",
    "MissingValuesValidator",
    "PrimaryKeyValidator",
    "RawTable",
    "RequiredColumnsValidator",
    "Severity",
    "SimpleETLFactory",
    "StartupError",
    "StatefulDataManager",
    "StatelessDataManager",
    "TableSchema",
    "Transformer",
    "TypeValidator",
    "UniqueValidator",
    "ValidationContext",
    "ValidationMessage",
    "ValidationResult",
    "Validator",
    "default_validators",
    "schema",
]
