"""StatefulDataManager: datasets kept as JSON files in a folder, held in memory too.

One file per dataset, ``<folder>/<name>.json``, written atomically (a temporary file
in the same folder, flushed, fsynced, then ``os.replace``d; removed on error). A new
name is claimed with ``os.link`` of the fully written temporary file, which fails when
the name exists: of several processes adding the same new name, exactly one wins and
the others get ``DataSourceExistsError``.
``startup()`` loads each file on its own: a corrupt file is skipped and reported in
``startup_errors`` while the others load. ``delete_data`` removes the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from results_flow.backends.file.atomic import create_atomic, write_atomic
from results_flow.data.data_manager import DataManager
from results_flow.data.datasource import DataSource, check_dataset_name
from results_flow.data.etl import ETLFactory
from results_flow.data.schemas import FileSchema
from results_flow.errors import CorruptDatasetError, DataError, StoreError

SUFFIX = ".json"


@dataclass(frozen=True)
class StartupError:
    """A dataset file that ``startup()`` could not load."""

    path: Path
    error: Exception

    def __str__(self) -> str:
        return f"{self.path}: {self.error}"


class StatefulDataManager(DataManager):
    """Keeps datasets as JSON files in ``data_folder`` (created if missing).

    Call ``startup()`` to load the datasets already in the folder.
    """

    def __init__(
        self,
        data_folder: str | os.PathLike[str],
        schemas: Iterable[FileSchema] = (),
        *,
        etl_factory: ETLFactory | None = None,
        protect_master_data: bool = False,
    ) -> None:
        super().__init__(schemas, etl_factory=etl_factory, protect_master_data=protect_master_data)
        self.data_folder = Path(data_folder).expanduser().resolve()
        self.data_folder.mkdir(parents=True, exist_ok=True)
        self._data: dict[str, DataSource] = {}
        self.startup_errors: list[StartupError] = []

    def startup(self) -> None:
        """Load every dataset file in the folder, each on its own.

        A file that cannot be read or validated is left out of the manager and
        reported in ``startup_errors``; the others load.
        """
        with self._lock:
            self._data.clear()
            self.startup_errors = []
            for path in sorted(self.data_folder.glob(f"*{SUFFIX}")):
                if path.name.startswith("."):
                    continue  # a temporary file of an interrupted write
                try:
                    data_source = self._read(path)
                except (DataError, OSError, UnicodeDecodeError) as exc:
                    self.startup_errors.append(StartupError(path, exc))
                    continue
                self._data[data_source.name] = data_source

    def get_data_keys(self) -> list[str]:
        return sorted(self._data)

    def has_data(self, name: str) -> bool:
        # A file written by another process (or before startup) counts: never overwrite it.
        return name in self._data or self.path_of(name).exists()

    def get_data(self, name: str) -> DataSource:
        with self._lock:
            found = self._data.get(name)
            if found is None:
                raise self._not_found(name)
            return found

    def path_of(self, name: str) -> Path:
        """The file that holds dataset ``name``."""
        return self.data_folder / f"{check_dataset_name(name)}{SUFFIX}"

    def _read(self, path: Path) -> DataSource:
        try:
            data_source = DataSource.from_json(path.read_bytes(), self.schemas)
        except CorruptDatasetError as exc:
            raise CorruptDatasetError(f"dataset file {path}: {exc}") from exc
        if path.stem != data_source.name:
            raise CorruptDatasetError(
                f"dataset file {path} holds dataset {data_source.name!r}, not {path.stem!r}"
            )
        return data_source

    def _store(self, data_source: DataSource, *, replace: bool) -> None:
        path = self.path_of(data_source.name)
        content = data_source.to_json().encode()
        if replace:
            write_dataset_file(path, content)
        elif not create_dataset_file(path, content):
            raise self._exists_error(data_source.name)  # another process took the name first
        self._data[data_source.name] = data_source

    def _remove(self, name: str) -> None:
        try:
            self.path_of(name).unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot delete dataset file {self.path_of(name)}: {exc}") from exc
        self._data.pop(name, None)

    def _is_master(self, name: str) -> bool:
        found = self._data.get(name)
        return found.is_master if found is not None else True  # unloaded file: assume master

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.data_folder)!r})"


def write_dataset_file(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` so a reader sees the old file or the new one, never half.

    Raises:
        StoreError: the file cannot be written.
    """
    try:
        write_atomic(path, content)
    except OSError as exc:
        raise StoreError(f"cannot write dataset file {path}: {exc}") from exc


def create_dataset_file(path: Path, content: bytes) -> bool:
    """Create ``path`` holding ``content`` unless it exists; False when it exists (of
    racing creators exactly one wins; see ``create_atomic``).

    Raises:
        StoreError: the file cannot be written (or the filesystem has no hard links).
    """
    try:
        return create_atomic(path, content)
    except OSError as exc:
        raise StoreError(f"cannot write dataset file {path}: {exc}") from exc
