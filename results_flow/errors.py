"""The one exception hierarchy of results_flow.

Every error results_flow raises on purpose is a ``ResultsFlowError``; where a builtin
base lets existing ``except`` clauses keep working, it is added as a second base::

    ResultsFlowError
    ├── InvalidResultIdError (ValueError)       an ID breaks the grammar
    ├── ResultNotFoundError (KeyError, FileNotFoundError)
    ├── ResultExistsError (FileExistsError)     RAISE_IF_EXISTS met a stored ID
    ├── ResultConflictError (FileExistsError)   RAISE_IF_DIFFERENT met other data
    ├── ResultValidationError (ValueError)      a value does not fit its model
    │   ├── InvalidResultsError                 stored results of a batch no longer validate
    │   └── UpgradeFailedError                  no upgrade brings a stored record to its model
    ├── CorruptRecordError                      a stored record cannot be decoded
    ├── UntrustedRecordError                    a Prefect record could run code when loaded
    ├── ModelRegistryError                      registering a model went wrong
    │   ├── UnknownModelError (LookupError)     no model for a stored tag
    │   ├── UpgradeRegistryError (ValueError)   an upgrade cannot be registered as asked
    │   └── ModelModuleImportError (ImportError) a module of models cannot be imported
    ├── StoreError                              the storage layer failed
    │   ├── UnsupportedStoreUrlError (ValueError)
    │   ├── StoreUnavailableError               cannot reach or open the store
    │   ├── StoreBusyError                      locked past the deadline
    │   ├── LockTimeoutError (TimeoutError)     a per-ID lock was not acquired in time
    │   └── LockLostError                       a held per-ID lock was lost before release
    ├── UnhashableParameterError (TypeError)    a task argument has no canonical JSON
    ├── ResultsTaskError (TypeError)            a results_task cannot be built or shipped as asked
    ├── FailedItemError                         a results_map item not run again: it failed before
    ├── DataError                               the data layer (results_flow.data)
    │   ├── ETLConstructionError                an ETL pipeline cannot be built
    │   │   └── CsvOptionsError (ValueError)    unusable CSV options of a File
    │   ├── ETLFailedError                      an ETL flow run failed on bad data
    │   ├── DataSourceExistsError               a dataset name is taken
    │   ├── DataSourceNotFoundError (KeyError)  no dataset of that name
    │   ├── ProtectedDataError                  master data may not be deleted
    │   ├── CatalogueSchemaError                a database catalogue of unknown shape
    │   ├── SchemaDefinitionError (ValueError)  a schema declares what its model lacks
    │   ├── InvalidDatasetNameError (ValueError) a dataset name unfit for files and tables
    │   └── CorruptDatasetError                 a stored dataset cannot be read back
    └── MaintenanceError (ValueError)           a maintenance request cannot be carried out
"""

from __future__ import annotations

from typing import Any

from results_flow.settings import IDS_NAMED_IN_ERRORS


class ResultsFlowError(Exception):
    """Base of every error results_flow raises on purpose."""

    def __str__(self) -> str:
        # KeyError would otherwise repr() its message; keep one readable sentence.
        return str(self.args[0]) if self.args else self.__class__.__name__


class InvalidResultIdError(ResultsFlowError, ValueError):
    """A result ID (or prefix) breaks the ID grammar."""


class ResultNotFoundError(ResultsFlowError, KeyError, FileNotFoundError):
    """No result is stored under the ID."""


class ResultExistsError(ResultsFlowError, FileExistsError):
    """A result is already stored under the ID (RAISE_IF_EXISTS)."""


class ResultConflictError(ResultsFlowError, FileExistsError):
    """Different data or type is stored under the ID (RAISE_IF_DIFFERENT); a FileExistsError
    as in the original ResultsManager."""


class ResultValidationError(ResultsFlowError, ValueError):
    """A value does not validate against its model."""


class InvalidResultsError(ResultValidationError):
    """Stored results among a batch (or a task's stored result) no longer validate.

    ``invalid`` maps every such ID to its error; ``found`` holds the batch's results that
    did validate, so a caller can keep them (``get_many(on_invalid="raise")``).
    """

    def __init__(
        self,
        message: str,
        invalid: dict[str, ResultsFlowError] | None = None,
        found: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.invalid: dict[str, ResultsFlowError] = dict(invalid or {})
        self.found: dict[str, Any] = dict(found or {})

    @classmethod
    def of(
        cls,
        invalid: dict[str, ResultsFlowError],
        found: dict[str, Any] | None = None,
        *,
        total: int | None = None,
        hint: str = "",
    ) -> InvalidResultsError:
        """The error for ``invalid`` (ID -> error): counts them, names the first few."""
        ids = list(invalid)
        shown = ", ".join(repr(rid) for rid in ids[:IDS_NAMED_IN_ERRORS])
        more = (
            f" and {len(ids) - IDS_NAMED_IN_ERRORS} more" if len(ids) > IDS_NAMED_IN_ERRORS else ""
        )
        of_total = f" of {total}" if total is not None else ""
        noun = "result no longer validates" if len(ids) == 1 else "results no longer validate"
        message = (
            f"{len(ids)}{of_total} stored {noun}: {shown}{more}; first error: {invalid[ids[0]]}"
        )
        return cls(message + (f"; {hint}" if hint else ""), invalid, found)


class UpgradeFailedError(ResultValidationError):
    """A stored record that no longer validates could not be upgraded: no registered
    upgrade accepts its shape, an upgrade raised, or the chain ends short of the model."""


class CorruptRecordError(ResultsFlowError):
    """A stored record cannot be decoded: not JSON, or not a results_flow record."""


class UntrustedRecordError(ResultsFlowError):
    """A Prefect result record could run code on load (no trusted serializer, untrusted type)."""


class ModelRegistryError(ResultsFlowError):
    """A model cannot be registered as asked."""


class UnknownModelError(ModelRegistryError, LookupError):
    """No model is registered under a type tag and namespace."""


class UpgradeRegistryError(ModelRegistryError, ValueError):
    """An upgrade cannot be registered: no older shape, a shape taken, or a cycle."""


class StoreError(ResultsFlowError):
    """The storage layer failed."""


class UnsupportedStoreUrlError(StoreError, ValueError):
    """A store URL has a scheme no backend handles, or is malformed."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached or opened."""


class StoreBusyError(StoreError):
    """The store stayed locked by other writers past the deadline."""


class LockTimeoutError(StoreError, TimeoutError):
    """A per-ID lock could not be acquired in time."""


class LockLostError(StoreError):
    """A per-ID lock was lost while held (its session or lease ended): another worker may
    have taken it, so the holder must not assume it computed alone."""


class UnhashableParameterError(ResultsFlowError, TypeError):
    """A task argument cannot be turned into canonical JSON for its result ID."""


class ResultsTaskError(ResultsFlowError, TypeError):
    """A results_task cannot be built or shipped as asked (no model, unpicklable store)."""


class FailedItemError(ResultsFlowError):
    """A results_map item was not run again: it failed in earlier runs (its failure record
    says how), and ``retry_failed=False`` or ``max_failures`` holds it back."""


class DataError(ResultsFlowError):
    """Base of the data layer's errors."""


class ETLConstructionError(DataError):
    """An ETL pipeline cannot be built (no schema, unknown format, missing file)."""


class CsvOptionsError(ETLConstructionError, ValueError):
    """A File's CSV options cannot work: a delimiter or quote character that is not one
    character, the two equal, a line break, or an unknown encoding."""


class ETLFailedError(DataError):
    """An ETL flow run failed on bad data; ``result`` holds its ``ETLResult`` and messages."""

    def __init__(self, message: str, result: Any = None) -> None:
        super().__init__(message)
        self.result = result

    def __reduce__(self) -> tuple[Any, ...]:
        # Prefect may pickle a flow's exception: keep the result across the round trip.
        return (type(self), (self.args[0], self.result))


class DataSourceExistsError(DataError):
    """A dataset of that name is already stored."""


class DataSourceNotFoundError(DataError, KeyError):
    """No dataset of that name is stored."""


class ProtectedDataError(DataError):
    """Master data is protected from deletion."""


class CatalogueSchemaError(DataError):
    """A database catalogue table has a shape this version does not know."""


class SchemaDefinitionError(DataError, ValueError):
    """A schema declares keys, columns or tables that its row model or file cannot have."""


class InvalidDatasetNameError(DataError, ValueError):
    """A dataset name is empty, too long or holds characters unfit for files and tables."""


class CorruptDatasetError(DataError):
    """A stored dataset (JSON file or database tables) cannot be decoded or validated."""


class ModelModuleImportError(ModelRegistryError, ImportError):
    """A module named to register models (``results-flow verify --import``) cannot be imported."""


class MaintenanceError(ResultsFlowError, ValueError):
    """A maintenance request cannot be carried out (a negative age, a store copied onto itself)."""
