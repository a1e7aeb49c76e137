"""ObjectStoreBackend: records as objects in S3, Google Cloud Storage or Azure Blob Storage.

``s3://bucket/prefix``, ``gs://bucket/prefix`` and ``az://container/prefix`` name a
store; ``a/b/c`` lives in the object ``<prefix>/a/b/c.json``, holding the same JSON
document a ``FileBackend`` file holds. obstore (one Rust library for the three clouds)
does the requests, so the atomic steps are the object store's own conditional writes:

- ``insert`` is a create-only put (``If-None-Match: *``): of two racing writers exactly
  one wins, the other reads the winner's record;
- ``upsert`` reads the stored record and its ETag, then puts conditionally on that ETag
  (``If-Match``), retrying when another writer came in between, so the first creation
  time survives every overwrite;
- compute-once locks are lease objects (``results_flow.backends.leases``).

Credentials come from the standard chain of each cloud (environment variables, web
identity, instance or workload metadata); settings given in the URL query
(``?endpoint=http://127.0.0.1:9000&region=eu-west-1``) override them. Messages never
show a secret: the URL is masked and a request URL's query string is cut off.

obstore runs every request on one Rust (tokio) runtime per process, created on first
use; its threads do not survive ``fork()``, so a child forked after the parent used
obstore would hang. Such a child gets a ``StoreUnavailableError`` instead: start worker
processes with ``spawn`` or ``forkserver`` (Prefect's process pool and Dask already
do). Clients are opened per process, on first use, and never pickled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from results_flow.backends.base import ResultsBackend, unique
from results_flow.backends.held import HeldLock, held_by
from results_flow.backends.urls import mask_url
from results_flow.errors import (
    InvalidResultIdError,
    StoreError,
    StoreUnavailableError,
    UnsupportedStoreUrlError,
)
from results_flow.ids import SEPARATOR, normalize_id
from results_flow.records import Record
from results_flow.settings import LEASE_TTL_SECONDS, STORE_LOCK_TIMEOUT

if TYPE_CHECKING:
    from obstore.store import AzureStore, GCSStore, S3Store

    ObjectStore = S3Store | GCSStore | AzureStore

T = TypeVar("T")

SCHEMES = ("s3", "gs", "az")
SUFFIX = ".json"
#: Internal objects (leases) live here; no result ID segment starts with a dot.
INTERNAL_PREFIX = ".results_flow"
DEFAULT_CONCURRENCY = 32
#: The longest object key S3, GCS and Azure all accept (bytes of UTF-8).
MAX_KEY_BYTES = 1024
#: How often a write retries when a concurrent writer keeps changing the object.
MAX_WRITE_ATTEMPTS = 50

#: URL query keys that are client options rather than the store's own config.
_CLIENT_KEYS = frozenset(
    {
        "allow_http",
        "allow_invalid_certificates",
        "connect_timeout",
        "pool_idle_timeout",
        "proxy_url",
        "read_timeout",
        "timeout",
        "user_agent",
    }
)
_BOOL_KEYS = frozenset({"allow_http", "allow_invalid_certificates", "skip_signature"})
_QUERY_IN_TEXT = re.compile(r"(https?://[^\s?\"'<>]*)\?[^\s\"'<>]*")
#: obstore reports a failed list request as a GenericError; only its text tells that
#: the bucket (or container) is missing or the credentials were refused.
_NO_BUCKET = ("NoSuchBucket", "ContainerNotFound", "404 Not Found")
_REFUSED = (
    "401 Unauthorized",
    "403 Forbidden",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "AuthenticationFailed",
)


#: Whether this process has used obstore, and whether it was forked from one that had.
_used_here = False
_forked_after_use = False


def _after_fork_in_child() -> None:
    global _used_here, _forked_after_use
    _forked_after_use = _forked_after_use or _used_here
    _used_here = False


os.register_at_fork(after_in_child=_after_fork_in_child)


class ObjectStoreBackend(ResultsBackend):
    """Stores each record as one JSON object under a bucket (or container) and prefix.

    Args:
        url: ``s3://bucket/prefix``, ``gs://bucket/prefix`` or ``az://container/prefix``,
            optionally with obstore settings as query parameters.
        config: more obstore store settings (``region``, ``endpoint``, ...); they
            override the URL's.
        concurrency: requests in flight at once for ``read_many`` / ``exists_many``.
        lease_ttl: seconds a compute-once lease lives without a heartbeat; a lease
            whose holder died is taken over after this long.
        lock_timeout: how long ``lock(id)`` waits by default.
        check: reach the bucket once now, so a wrong bucket or credentials fail here.

    Raises:
        UnsupportedStoreUrlError: not an ``s3://``, ``gs://`` or ``az://`` URL, or no bucket.
        StoreUnavailableError: the bucket does not exist or the credentials are refused.
    """

    def __init__(
        self,
        url: str,
        *,
        config: Mapping[str, Any] | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        lease_ttl: float = LEASE_TTL_SECONDS,
        lock_timeout: float = STORE_LOCK_TIMEOUT,
        check: bool = True,
    ) -> None:
        parts = urlsplit(url)
        self.scheme = parts.scheme.lower()
        if self.scheme not in SCHEMES or not parts.netloc:
            raise UnsupportedStoreUrlError(
                f"{mask_url(url)!r} is not an object store URL; use s3://bucket/prefix, "
                "gs://bucket/prefix or az://container/prefix"
            )
        if concurrency < 1 or lease_ttl <= 0:
            raise UnsupportedStoreUrlError(
                f"{mask_url(url)!r}: concurrency must be >= 1 and lease_ttl > 0"
            )
        self.bucket = parts.netloc
        self.prefix = unquote(parts.path).strip("/")
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        options.update({key: str(value) for key, value in (config or {}).items()})
        self._url = url
        self._options = options
        self.location = mask_url(url)
        self.concurrency = concurrency
        self.lease_ttl = lease_ttl
        self.lock_timeout = lock_timeout
        self._guard = threading.Lock()
        self._pid = -1
        self._client: ObjectStore | None = None
        self._pool: ThreadPoolExecutor | None = None
        if check:
            self.check()

    @classmethod
    def from_url(cls, url: str) -> ObjectStoreBackend:
        """Open the store a URL names (see the class)."""
        return cls(url)

    @property
    def url(self) -> str:
        """The URL that reopens this store in another process (secrets included: never
        print it; ``location`` is the masked form)."""
        return self._url

    # -- the client, one per process ------------------------------------------------

    def client(self) -> ObjectStore:
        """This process's obstore client, opened on first use (clients do not survive fork).

        Raises:
            UnsupportedStoreUrlError: obstore refuses a setting from the URL.
            StoreUnavailableError: this process was forked from one that used obstore.
        """
        global _used_here
        if _forked_after_use:
            raise StoreUnavailableError(
                f"{self.location}: this process was forked from one that had used the object "
                "store, and obstore's runtime does not survive fork(); start worker processes "
                "with the 'spawn' or 'forkserver' method"
            )
        _used_here = True
        pid = os.getpid()
        client = self._client
        if client is not None and self._pid == pid:
            return client
        with self._guard:
            if self._client is None or self._pid != pid:
                self._client = self._open()
                self._pool = None  # a forked child has the parent's threads' husk only
                self._pid = pid
            return self._client

    def _open(self) -> ObjectStore:
        from obstore.store import AzureStore, GCSStore, S3Store

        config: dict[str, Any] = {}
        client_options: dict[str, Any] = {}
        for key, value in self._options.items():
            typed: Any = value.lower() in ("1", "true", "yes") if key in _BOOL_KEYS else value
            (client_options if key in _CLIENT_KEYS else config)[key] = typed
        endpoint = str(config.get("endpoint", ""))
        if endpoint.startswith("http://"):
            client_options.setdefault("allow_http", True)  # the URL asked for plain HTTP
        client_options.setdefault("connect_timeout", timedelta(seconds=10))
        client_options.setdefault("timeout", timedelta(seconds=60))
        retry: Any = {"max_retries": 3, "retry_timeout": timedelta(seconds=30)}
        prefix = self.prefix or None
        classes: dict[str, type[S3Store] | type[GCSStore]] = {"s3": S3Store, "gs": GCSStore}
        store_class = classes.get(self.scheme, AzureStore)
        try:
            return store_class(
                self.bucket,
                prefix=prefix,
                config=config,  # type: ignore[arg-type]
                client_options=client_options,  # type: ignore[arg-type]
                retry_config=retry,
            )
        except BaseException as exc:  # obstore raises pyo3 panics for unknown keys
            if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
                raise
            raise UnsupportedStoreUrlError(
                f"{self.location}: obstore refuses the settings: {_safe_message(exc)}"
            ) from exc

    def check(self) -> None:
        """Reach the bucket once: list at most one page under the prefix.

        Raises:
            StoreUnavailableError: no such bucket, credentials refused, or unreachable.
        """
        import obstore

        client = self.client()
        try:
            stream = obstore.list(client, chunk_size=1)
            next(iter(stream), None)
        except Exception as exc:
            raise self._mapped(exc, "", listing=True) from exc

    # -- keys -----------------------------------------------------------------------

    def key_for(self, result_id: str) -> str:
        """The object key (below the prefix) that holds an ID.

        Raises:
            InvalidResultIdError: prefix, ID and suffix exceed the object store's key limit.
        """
        key = result_id + SUFFIX
        if len(self.prefix.encode()) + 1 + len(key.encode()) > MAX_KEY_BYTES:
            raise InvalidResultIdError(
                f"result ID {result_id[:80]!r}... is too long for {self.location}: with the "
                f"prefix and {SUFFIX!r} its object key would exceed {MAX_KEY_BYTES} bytes"
            )
        return key

    def unfit_reason(self, result_id: str, record: Record) -> str | None:
        try:
            self.key_for(result_id)
        except InvalidResultIdError as exc:
            return str(exc)
        return None

    @staticmethod
    def id_for(key: str) -> str | None:
        """The ID an object key holds, or None for objects this store did not write."""
        if not key.endswith(SUFFIX) or key.startswith(INTERNAL_PREFIX + SEPARATOR):
            return None
        try:
            return normalize_id(key[: -len(SUFFIX)])
        except InvalidResultIdError:
            return None

    def where(self, key: str) -> str:
        """An object's place for messages."""
        return f"{self.location.split('?', 1)[0].rstrip('/')}/{key}"

    # -- the interface --------------------------------------------------------------

    def read(self, result_id: str) -> Record | None:
        found = self._get(self.key_for(result_id))
        return None if found is None else found[0]

    def read_with_tag(self, result_id: str) -> tuple[Record, str | None] | None:
        """The stored record and its ETag, or None."""
        return self._get(self.key_for(result_id))

    def exists(self, result_id: str) -> bool:
        import obstore

        key = self.key_for(result_id)
        with self._missing_ok(key):
            obstore.head(self.client(), key)
            return True
        return False

    def insert(self, result_id: str, record: Record) -> Record | None:
        key = self.key_for(result_id)
        body = record.to_document().encode("utf-8")
        for _ in range(MAX_WRITE_ATTEMPTS):
            if self._put(key, body, "create"):
                return None
            found = self._get(key)
            if found is not None:
                return found[0]
            # deleted between our create and our read: try the create again
        raise StoreError(f"could not write {self.where(key)}: it kept changing under us")

    def upsert(self, result_id: str, record: Record) -> None:
        key = self.key_for(result_id)
        for _ in range(MAX_WRITE_ATTEMPTS):
            found = self._get(key)
            if found is None:
                if self._put(key, record.to_document().encode("utf-8"), "create"):
                    return
                continue
            previous, etag = found
            body = record.replacing(previous).to_document().encode("utf-8")
            mode: Any = {"e_tag": etag} if etag else "overwrite"
            if self._put(key, body, mode):
                return
        raise StoreError(f"could not overwrite {self.where(key)}: it kept changing under us")

    def delete(self, result_id: str) -> bool:
        # obstore's delete does not say whether there was an object; head first.
        return self.exists(result_id) and self.delete_object(self.key_for(result_id))

    def list_ids(self, prefix: str | None = None) -> list[str]:
        found = [i for i in map(self.id_for, self._keys(prefix)) if i is not None]
        if prefix is not None and self.exists(prefix):
            found.append(prefix)
        return sorted(found)

    def read_many(self, result_ids: Sequence[str]) -> dict[str, Record]:
        ids = unique(result_ids)
        results = self._gather([self._get_async(self.key_for(i)) for i in ids])
        return {i: found[0] for i, found in zip(ids, results, strict=True) if found is not None}

    def exists_many(self, result_ids: Sequence[str]) -> set[str]:
        ids = unique(result_ids)
        results = self._gather([self._head_async(self.key_for(i)) for i in ids])
        return {i for i, there in zip(ids, results, strict=True) if there}

    def clear(self) -> None:
        """Remove every record under the prefix; other objects (and leases) stay."""
        import obstore

        keys = [key for key in self._keys(None) if self.id_for(key) is not None]
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]
            with self._missing_ok(batch[0]):
                obstore.delete(self.client(), batch)

    def lock(
        self, result_id: str, timeout: float | None = None
    ) -> contextlib.AbstractContextManager[HeldLock]:
        """A compute-once lease on the ID (see ``results_flow.backends.leases``)."""
        from results_flow.backends.leases import lease

        wait = self.lock_timeout if timeout is None else timeout
        return held_by(self, result_id, lease(self, result_id, wait, self.lease_ttl))

    def close(self) -> None:
        with self._guard:
            self._client = None
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)

    def __repr__(self) -> str:
        return f"ObjectStoreBackend({self.location!r})"

    def __getstate__(self) -> dict[str, Any]:
        # Clients, locks and threads stay behind; the other process opens its own.
        state = dict(self.__dict__)
        state.update(_guard=None, _client=None, _pool=None, _pid=-1)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._guard = threading.Lock()

    # -- object operations, shared with the leases ------------------------------------

    def _get(self, key: str) -> tuple[Record, str | None] | None:
        return self._parsed(key, self.get_object(key))

    def _parsed(
        self, key: str, found: tuple[bytes, str | None] | None
    ) -> tuple[Record, str | None] | None:
        if found is None:
            return None
        return Record.from_document(found[0], self.where(key)), found[1]

    @contextlib.contextmanager
    def _missing_ok(self, key: str) -> Iterator[None]:
        """Around an obstore request on ``key``: a missing object (FileNotFoundError)
        ends the block quietly, an answer and not an error; any other error becomes
        the store's error (``_mapped``)."""
        try:
            yield
        except FileNotFoundError:
            pass
        except Exception as exc:
            raise self._mapped(exc, key) from exc

    def _put(self, key: str, body: bytes, mode: Any) -> bool:
        """Put ``body``; False when the condition in ``mode`` failed (exists, or changed)."""
        return self.put_object(key, body, mode)[0]

    def put_object(self, key: str, body: bytes, mode: Any) -> tuple[bool, str | None]:
        """Put ``body``: (False, None) when the condition in ``mode`` failed, else
        (True, the new ETag)."""
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        try:
            result = obstore.put(self.client(), key, body, mode=mode)
        except (AlreadyExistsError, PreconditionError, FileNotFoundError):
            return False, None  # FileNotFoundError: If-Match on an object that is gone
        except Exception as exc:
            raise self._mapped(exc, key) from exc
        return True, result.get("e_tag")

    def get_object(self, key: str) -> tuple[bytes, str | None] | None:
        """An object's content and ETag, or None."""
        import obstore

        with self._missing_ok(key):
            result = obstore.get(self.client(), key)
            return bytes(result.bytes()), result.meta.get("e_tag")
        return None

    def delete_object(self, key: str) -> bool:
        """Delete an object; False when it was already gone."""
        import obstore

        with self._missing_ok(key):
            obstore.delete(self.client(), key)
            return True
        return False

    def _keys(self, prefix: str | None) -> Iterator[str]:
        """Every key below ``prefix`` (by whole segments), page by page."""
        import obstore

        try:
            for page in obstore.list(self.client(), prefix=prefix, chunk_size=1000):
                for meta in page:
                    yield meta["path"]
        except Exception as exc:
            raise self._mapped(exc, prefix or "", listing=True) from exc

    async def _get_async(self, key: str) -> tuple[Record, str | None] | None:
        import obstore

        found: tuple[bytes, str | None] | None = None
        with self._missing_ok(key):
            result = await obstore.get_async(self.client(), key)
            found = bytes(await result.bytes_async()), result.meta.get("e_tag")
        return self._parsed(key, found)

    async def _head_async(self, key: str) -> bool:
        import obstore

        with self._missing_ok(key):
            await obstore.head_async(self.client(), key)
            return True
        return False

    def _gather(self, calls: list[Coroutine[Any, Any, T]]) -> list[T]:
        """Run the calls with at most ``concurrency`` in flight; results in order."""
        if not calls:
            return []

        async def bounded() -> list[T]:
            gate = asyncio.Semaphore(self.concurrency)

            async def one(call: Awaitable[T]) -> T:
                async with gate:
                    return await call

            return await asyncio.gather(*(one(call) for call in calls))

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(bounded())
        # Called from a thread that runs an event loop: run ours in a worker thread.
        return self._worker().submit(_run, bounded).result()

    def _worker(self) -> ThreadPoolExecutor:
        self.client()
        with self._guard:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="results-flow-s3")
            return self._pool

    def _mapped(self, exc: BaseException, key: str, listing: bool = False) -> StoreError:
        """The results_flow error for an obstore error on ``key`` (``listing``: a list
        request, where "not found" can only mean the bucket)."""
        from obstore.exceptions import PermissionDeniedError, UnauthenticatedError

        where = self.where(key) if key else self.location
        message = _safe_message(exc)
        if isinstance(exc, PermissionDeniedError | UnauthenticatedError) or (
            listing and any(word in message for word in _REFUSED)
        ):
            return StoreUnavailableError(
                f"{where}: the object store refused the credentials ({message})"
            )
        if listing and (
            isinstance(exc, FileNotFoundError) or any(w in message for w in _NO_BUCKET)
        ):
            return StoreUnavailableError(
                f"{self.location}: no bucket or container {self.bucket!r} ({message})"
            )
        return StoreUnavailableError(f"{where}: the object store request failed ({message})")


def _run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(factory())


def _safe_message(exc: BaseException) -> str:
    """The first line of an obstore error, without request query strings (SAS tokens)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = " ".join(lines[:2]) if lines else type(exc).__name__
    text = _QUERY_IN_TEXT.sub(r"\1?***", text)
    return text if len(text) <= 400 else text[:400] + "..."
