"""``ResultsStorage``: a Prefect result-storage block backed by a results_flow store.

Prefect hands a storage block a key and the bytes of its own result record; this block
keeps them under ``<prefix>/<key>`` in the store the URL names, as a readable document
(the value as JSON, the task and flow run in its metadata: ``documents.py``), so
``@task(result_storage=..., cache_policy=...)`` persists into (and hits from) the same
database or folder as results_flow's own results, and ``ResultsManager.get`` and
``results-flow show`` read them. A slug (``result_storage="results-storage/name"``) is
loaded once per flow run (``slugs.py``).
"""

from __future__ import annotations

from typing import ClassVar

import anyio.to_thread
from prefect.filesystems import WritableFileSystem
from pydantic import ConfigDict, Field, HttpUrl, SecretStr, field_validator, model_validator

from results_flow.backends.registry import check_store_url
from results_flow.blobs import PREFECT_NAMESPACE, PrefectResultBlob
from results_flow.errors import (
    CorruptRecordError,
    InvalidResultIdError,
    ResultNotFoundError,
    UntrustedRecordError,
)
from results_flow.ids import normalize_id
from results_flow.manager import ResultsManager, SetBehavior, decode
from results_flow.prefect.documents import (
    as_whole_record,
    is_document,
    pickled_as_json,
    prefect_bytes,
    readable,
)
from results_flow.prefect.runtime import logger
from results_flow.prefect.slugs import install_slug_resolver
from results_flow.prefect.stores import manager_for_url
from results_flow.prefect.trust import TRUSTED_SERIALIZERS, record_refusal
from results_flow.urls import mask_url
from results_flow.write_policy import write_record

# The README's section on the Prefect layer, where the block is described: the home the
# project is to be published at (no public repository exists yet; update on release).
DOCUMENTATION_URL = (
    "https://github.com/results-flow/results-flow#the-prefect-layer-results_flowprefect"
)


class ResultsStorage(WritableFileSystem):
    """Keeps Prefect's result records in a results_flow store (files, SQLite, PostgreSQL)."""

    _block_type_name: ClassVar[str] = "Results Storage"
    _block_type_slug: ClassVar[str] = "results-storage"
    _description: ClassVar[str] = (
        "Store Prefect task and flow results in a results_flow store: a folder of JSON "
        "files, a SQLite file or a PostgreSQL database, next to your validated results."
    )
    _documentation_url: ClassVar[HttpUrl | None] = HttpUrl(DOCUMENTATION_URL)
    # No hosted logo: Prefect's UI shows its default icon.
    _logo_url: ClassVar[HttpUrl | None] = None
    _code_example: ClassVar[str] = """```python
from prefect import task
from results_flow.prefect import RESULT_ID, PydanticSerializer
from results_flow.prefect import ResultsStorage

ResultsStorage(store_url="sqlite:///results_store/results.db").save("results")
results_storage_block = ResultsStorage.load("BLOCK_NAME")

@task(
    result_storage=results_storage_block,
    result_serializer=PydanticSerializer(),
    cache_policy=RESULT_ID,
)
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

    allow_pickle: bool = Field(
        default=False,
        description=(
            "Also read and write Prefect records that could run code when loaded: "
            "records of Prefect's default 'pickle', 'compressed' or any serializer "
            "other than 'json' and 'results_flow_pydantic', records that name no "
            "serializer, and 'json' results that name classes that are not registered "
            "models. Off by default, so a record planted in the store is refused "
            "(UntrustedRecordError) and never run, and a result Prefect pickled (no "
            "serializer set) is written as JSON instead."
        ),
    )

    store: str = Field(
        default="",
        title="Store",
        description=(
            "The store URL with only its password masked, for the UI: set from the "
            "Store URL whenever the block is built, edited or loaded."
        ),
    )

    @model_validator(mode="after")
    def _show_store(self) -> ResultsStorage:
        # Written past validate_assignment (which would run this validator again).
        object.__setattr__(self, "store", mask_url(self.store_url.get_secret_value()))
        return self

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
        """The bytes of the Prefect record stored under ``path``, rebuilt from its document.

        Raises:
            ResultNotFoundError: nothing is stored under the key.
            CorruptRecordError: what is stored there is no Prefect result (a results_flow
                result of another kind, or a damaged document).
            UntrustedRecordError: the record could run code when loaded (it names no
                trusted serializer, or its result names an untrusted class; see
                ``results_flow.prefect.trust``) and ``allow_pickle`` is off (also logged,
                since Prefect's cache lookup takes any error for a miss and recomputes).
        """
        result_id = self.result_id(path)
        try:
            record = self.manager().record(result_id)
        except ResultNotFoundError as exc:
            raise ResultNotFoundError(f"no Prefect result under key {path!r} ({exc})") from exc
        if is_document(record):
            content = prefect_bytes(record, result_id)
        elif (record.namespace, record.model_type) == (PREFECT_NAMESPACE, "PrefectResultBlob"):
            content = decode(result_id, record, PrefectResultBlob).to_bytes()
        else:
            raise CorruptRecordError(
                f"{result_id!r} holds a {record.namespace}:{record.model_type} result, not a "
                "Prefect result record: give this block a prefix= of its own"
            )
        reason = None if self.allow_pickle else record_refusal(content, reading=True)
        if reason is not None:
            message = (
                f"refused the Prefect record under {result_id!r}: it names {reason}, which "
                f"could run code when loaded; this ResultsStorage reads only records of "
                f"{' and '.join(TRUSTED_SERIALIZERS)} (set allow_pickle=True to trust it)"
            )
            logger.warning(message)
            raise UntrustedRecordError(message)
        return content

    def write_path(self, path: str, content: bytes, _sync: bool | None = None) -> str:  # type: ignore[override]
        """Store the Prefect record ``content`` under ``path`` as a readable document
        (replacing what was there); returns ``path``.

        A record of Prefect's default pickle serializer is written as JSON (see
        ``results_flow.prefect.documents``). With ``allow_pickle``, a record of another
        serializer is kept as it is, in a ``PrefectResultBlob``.

        Raises:
            UntrustedRecordError: the record's serializer is not trusted (or its pickled
                value has no JSON form) and ``allow_pickle`` is off, so it could never be
                read back.
        """
        result_id = self.result_id(path)
        content = as_whole_record(content, path, self._block_document_id) or content
        reason = record_refusal(content, reading=False)
        if reason is not None and not self.allow_pickle:
            converted = pickled_as_json(content, path)
            if converted is None:
                raise UntrustedRecordError(
                    f"this ResultsStorage keeps only records of "
                    f"{' and '.join(TRUSTED_SERIALIZERS)}, and the one for key {path!r} names "
                    f"{reason}, so it could never be read back: give the task "
                    "result_serializer=PydanticSerializer() (any model= registered with "
                    "register_model) or 'json', or set allow_pickle=True"
                )
            content, reason = converted, None
        document = readable(content) if reason is None else None
        manager = self.manager()
        if document is None:
            manager.set(result_id, PrefectResultBlob.of(content), SetBehavior.OVERWRITE)
        else:
            write_record(manager.backend, result_id, document, SetBehavior.OVERWRITE)
        return path

    async def aread_path(self, path: str) -> bytes:
        """``read_path`` off the event loop."""
        return await anyio.to_thread.run_sync(self.read_path, path)

    async def awrite_path(self, path: str, content: bytes) -> str:
        """``write_path`` off the event loop."""
        return await anyio.to_thread.run_sync(self.write_path, path, content)

    def __repr__(self) -> str:
        return f"ResultsStorage(store={self.store!r}, prefix={self.prefix!r})"


install_slug_resolver(ResultsStorage.get_block_type_slug())
