"""DataManager: the ABC every dataset store follows, and the in-memory StatelessDataManager.

A manager runs ETL into datasets and keeps them: ``etl_data`` loads files into a new
dataset, ``derive_data`` copies one under a new name, ``delete_data`` removes one
(refusing master data when asked to protect it), and ``add_data_source`` stores a
dataset built elsewhere, refusing to replace one unless told to. Subclasses say
where datasets live through four small hooks.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable

from results_flow.data.datasource import DataKind, DataSource, DataTable, check_dataset_name
from results_flow.data.etl import ETLFactory, ETLResult, Files, SimpleETLFactory
from results_flow.data.schemas import FileSchema
from results_flow.errors import DataSourceExistsError, DataSourceNotFoundError, ProtectedDataError


class DataManager(ABC):
    """Loads, derives, deletes and keeps datasets.

    Args:
        schemas: the files and tables datasets are loaded from (and read back with).
        etl_factory: builds the ETL pipelines; ``SimpleETLFactory(schemas)`` by default.
        protect_master_data: the default of ``delete_data``'s ``protect_master``.
    """

    def __init__(
        self,
        schemas: Iterable[FileSchema] = (),
        *,
        etl_factory: ETLFactory | None = None,
        protect_master_data: bool = False,
    ) -> None:
        if etl_factory is None:
            etl_factory = SimpleETLFactory(list(schemas))
        self.etl_factory = etl_factory
        self.protect_master_data = protect_master_data
        self._lock = threading.RLock()

    @property
    def schemas(self) -> list[FileSchema]:
        """The file schemas of the ETL factory."""
        return self.etl_factory.file_schemas

    def startup(self) -> None:  # noqa: B027 - optional hook: nothing to do in memory
        """Prepare the store and load what it keeps (a no-op for memory)."""

    @abstractmethod
    def get_data_keys(self) -> list[str]:
        """The names of the stored datasets, sorted."""

    @abstractmethod
    def get_data(self, name: str) -> DataSource:
        """The dataset called ``name``.

        Raises:
            DataSourceNotFoundError: no such dataset.
        """

    def has_data(self, name: str) -> bool:
        """Whether a dataset called ``name`` is stored."""
        return name in self.get_data_keys()

    def add_data_source(self, data_source: DataSource, *, overwrite: bool = False) -> None:
        """Store ``data_source`` under its name.

        Raises:
            DataSourceExistsError: the name is taken and ``overwrite`` is False.
        """
        with self._lock:
            self._claim(data_source.name, overwrite=overwrite)
            # overwrite, not "found it": another process may store the name meanwhile
            self._store(data_source, replace=overwrite)

    def add_table_chunks(
        self, name: str, chunks: Iterable[DataTable], *, overwrite: bool = False
    ) -> DataSource:
        """Store master dataset ``name`` from its tables' rows given chunk by chunk (the
        chunks of a table in row order; tables in the order of their first chunk); the
        dataset. Here the chunks are gathered into whole tables; a manager that can
        write as they come (``DatabaseDataManager``) never holds a whole table.

        Raises:
            DataSourceExistsError: ``name`` is taken and ``overwrite`` is False.
        """
        tables: dict[str, DataTable] = {}
        for chunk in chunks:
            table = tables.setdefault(chunk.name, DataTable(chunk.name, chunk.model, []))
            table.rows.extend(chunk.rows)
        data_source = DataSource(name, list(tables.values()), kind=DataKind.MASTER)
        self.add_data_source(data_source, overwrite=overwrite)
        return data_source

    def derive_data(self, source_name: str, new_name: str) -> DataSource:
        """Copy dataset ``source_name`` as derived data called ``new_name``, store and return it.

        Raises:
            DataSourceNotFoundError: no dataset ``source_name``.
            DataSourceExistsError: ``new_name`` is taken.
        """
        with self._lock:
            self._claim(new_name, overwrite=False)
            derived = self.get_data(source_name).derive(new_name)
            self.add_data_source(derived)
            return derived

    def delete_data(self, name: str, *, protect_master: bool | None = None) -> None:
        """Remove dataset ``name`` and everything stored for it.

        Args:
            name: the dataset.
            protect_master: refuse to delete master data; the manager's
                ``protect_master_data`` when None.

        Raises:
            DataSourceNotFoundError: no such dataset.
            ProtectedDataError: it is master data and protection is on.
        """
        protect = self.protect_master_data if protect_master is None else protect_master
        with self._lock:
            if not self.has_data(name):
                raise self._not_found(name)
            if protect and self._is_master(name):
                raise ProtectedDataError(
                    f"dataset {name!r} is master data and protected from deletion; "
                    "pass protect_master=False to delete it"
                )
            self._remove(name)

    def etl_data(self, files: Files, dataset_name: str, *, overwrite: bool = False) -> ETLResult:
        """Run ETL on ``files`` into ``dataset_name`` and store the dataset when it succeeds.

        Bad data never raises: inspect ``result.status`` and
        ``result.validation_result.messages``. An exception raised by a user-supplied
        validator, transformer or loader is a bug in it and propagates unchanged.

        Raises:
            ETLConstructionError: the pipeline cannot be built (no schema for a file, a
                declared file not given, a missing file, an unknown format).
            DataSourceExistsError: ``dataset_name`` is taken and ``overwrite`` is False.
        """
        self._claim(dataset_name, overwrite=overwrite)
        result = self.etl_factory.build_pipeline(files, dataset_name).run()
        if result.data_source is not None:
            self.add_data_source(result.data_source, overwrite=overwrite)
        return result

    @abstractmethod
    def _store(self, data_source: DataSource, *, replace: bool) -> None:
        """Keep ``data_source``; ``replace`` says a stored dataset of that name (found
        now or stored by another writer since ``_claim``) is replaced, else refused.

        Raises:
            DataSourceExistsError: the name is stored and ``replace`` is False.
        """

    @abstractmethod
    def _remove(self, name: str) -> None:
        """Remove the stored dataset ``name`` (it exists)."""

    def _is_master(self, name: str) -> bool:
        return self.get_data(name).is_master

    def _claim(self, name: str, *, overwrite: bool) -> bool:
        """Whether dataset ``name`` is stored, once the name is checked (a caller that
        writes on the answer holds ``_lock`` from here to the write).

        Raises:
            DataSourceExistsError: it is stored and ``overwrite`` is False.
        """
        check_dataset_name(name)
        exists = self.has_data(name)
        if exists and not overwrite:
            raise self._exists_error(name)
        return exists

    def _exists_error(self, name: str) -> DataSourceExistsError:
        return DataSourceExistsError(
            f"dataset {name!r} already exists in {self!r}; delete it or pass overwrite=True"
        )

    def _not_found(self, name: str) -> DataSourceNotFoundError:
        have = ", ".join(map(repr, self.get_data_keys())) or "none"
        return DataSourceNotFoundError(f"no dataset {name!r} in {self!r} (datasets: {have})")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class StatelessDataManager(DataManager):
    """Keeps datasets in memory only; they are gone with the process."""

    def __init__(
        self,
        schemas: Iterable[FileSchema] = (),
        *,
        etl_factory: ETLFactory | None = None,
        protect_master_data: bool = False,
    ) -> None:
        super().__init__(schemas, etl_factory=etl_factory, protect_master_data=protect_master_data)
        self._data: dict[str, DataSource] = {}

    def get_data_keys(self) -> list[str]:
        return sorted(self._data)

    def has_data(self, name: str) -> bool:
        return name in self._data

    def get_data(self, name: str) -> DataSource:
        try:
            return self._data[name]
        except KeyError:
            raise self._not_found(name) from None

    def _store(self, data_source: DataSource, *, replace: bool) -> None:
        self._data[data_source.name] = data_source

    def _remove(self, name: str) -> None:
        del self._data[name]
