"""``ResultsStorage``: a Prefect result-storage block backed by a results_flow store.

Prefect hands a storage block a key and the bytes of its own result record; this block
keeps them as a ``PrefectResultBlob`` under ``<prefix>/<key>`` in the store the URL
names, so ``@task(result_storage=..., cache_policy=...)`` persists into (and hits
from) the same database or folder as results_flow's own results.
"""

from __future__ import annotations

import base64
from typing import ClassVar, Literal

import anyio.to_thread
from prefect.filesystems import WritableFileSystem
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from results_flow.backends.urls import check_store_url
from results_flow.errors import InvalidResultIdError, ResultNotFoundError
from results_flow.ids import normalize_id
from results_flow.manager import ResultsManager, SetBehavior
from results_flow.prefect.stores import manager_for_url
from results_flow.registry import register_model

PREFECT_NAMESPACE = "prefect"


@register_model(namespace=PREFECT_NAMESPACE)
class PrefectResultBlob(BaseModel):
    """The bytes Prefect wrote for one result key, as text (or base64 when not UTF-8)."""

    content: str
    encoding: Literal["utf-8", "base64"] = "utf-8"

    @classmethod
    def of(cls, content: bytes) -> PrefectResultBlob:
        """The blob that keeps ``content`` exactly."""
        try:
            return cls(content=content.decode("utf-8"))
        except UnicodeDecodeError:
            return cls(content=base64.b64encode(content).decode("ascii"), encoding="base64")

    def to_bytes(self) -> bytes:
        """The bytes Prefect wrote."""
        if self.encoding == "base64":
            return base64.b64decode(self.content)
        return self.content.encode("utf-8")


class ResultsStorage(WritableFileSystem):
    """Keeps Prefect's result records in a results_flow store (files, SQLite, PostgreSQL)."""

    _block_type_name: ClassVar[str] = "Results Storage"
    _block_type_slug: ClassVar[str] = "results-storage"
    _description: ClassVar[str] = (
        "Store Prefect task and flow results in a results_flow store: a folder of JSON "
        "files, a SQLite file or a PostgreSQL database, next to your validated results."
    )
    _code_example: ClassVar[str] = """```python
from results_flow.prefect import ResultsStorage

ResultsStorage(store_url="sqlite:///results_store/results.db").save("results")

@task(result_storage="results-storage/results", cache_policy=INPUTS)
def work(x: int) -> int: ...
```"""

    # A URL edited after construction is checked too, so a bad one is never saved.
    # hide_input_in_errors: pydantic's "input_value=" would show the URL's password.
    model_config = ConfigDict(validate_assignment=True, hide_input_in_errors=True)

    store_url: SecretStr = Field(
        default=...,
        title="Store URL",
        description=(
            "The results_flow store: file:///path/to/folder, sqlite:///path/results.db "
            "or postgresql://user:password@host/database. Kept secret because a "
            "database URL may hold a password."
        ),
    )
    prefix: str = Field(
        default="prefect",
        description=(
            "Result ID prefix under which Prefect's records are kept, so they never "
            "collide with results_flow's own results."
        ),
    )

    @field_validator("store_url")
    @classmethod
    def _known_store(cls, value: SecretStr) -> SecretStr:
        check_store_url(value.get_secret_value())
        return value

    @field_validator("prefix")
    @classmethod
    def _valid_prefix(cls, value: str) -> str:
        return normalize_id(value)

    def manager(self) -> ResultsManager:
        """The manager of this block's store in this process (opened once).

        Raises:
            StoreUnavailableError: the store cannot be opened or reached.
        """
        return manager_for_url(self.store_url.get_secret_value())

    def check(self) -> None:
        """Open the store now, so a wrong or unreachable URL fails here.

        Raises:
            StoreUnavailableError: the store cannot be opened or reached.
        """
        self.manager()

    def result_id(self, path: str) -> str:
        """The result ID that keeps Prefect's key ``path``.

        Raises:
            InvalidResultIdError: the key cannot be a results_flow ID; names it.
        """
        try:
            return normalize_id(f"{self.prefix}/{path.strip('/')}")
        except InvalidResultIdError as exc:
            raise InvalidResultIdError(f"Prefect result key {path!r}: {exc}") from exc

    def read_path(self, path: str, _sync: bool | None = None) -> bytes:  # type: ignore[override]
        """The bytes Prefect stored under ``path``.

        Raises:
            ResultNotFoundError: nothing is stored under the key.
        """
        result_id = self.result_id(path)
        try:
            blob = self.manager().get(result_id, PrefectResultBlob)
        except ResultNotFoundError as exc:
            raise ResultNotFoundError(f"no Prefect result under key {path!r} ({exc})") from exc
        return blob.to_bytes()

    def write_path(self, path: str, content: bytes, _sync: bool | None = None) -> str:  # type: ignore[override]
        """Store ``content`` under ``path``, replacing what was there; returns ``path``."""
        self.manager().set(
            self.result_id(path), PrefectResultBlob.of(content), SetBehavior.OVERWRITE
        )
        return path

    async def aread_path(self, path: str) -> bytes:
        """``read_path`` off the event loop."""
        return await anyio.to_thread.run_sync(self.read_path, path)

    async def awrite_path(self, path: str, content: bytes) -> str:
        """``write_path`` off the event loop."""
        return await anyio.to_thread.run_sync(self.write_path, path, content)

    def __repr__(self) -> str:
        return f"ResultsStorage(store_url=SecretStr('**********'), prefix={self.prefix!r})"
