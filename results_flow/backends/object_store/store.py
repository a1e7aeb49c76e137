"""ObjectStoreBackend: records as objects in S3, Google Cloud Storage or Azure Blob Storage.

``s3://bucket/prefix``, ``gs://bucket/prefix`` and ``az://container/prefix`` name a
store; ``a/b/c`` lives in the object ``<prefix>/a/b/c.json``, holding the same JSON
document a ``FileBackend`` file holds. obstore (one Rust library for the three clouds)
does the requests, so the atomic steps are the object store's own conditional writes:

- ``insert`` is a create-only put (``If-None-Match: *``): of two racing writers exactly
  one wins, the other reads the winner's record. Each put carries a random write
  token in the object's metadata, so a put whose answer was lost, and which the
  client sent again, finds its own token rather than a rival's record;
- ``upsert`` reads the stored record and its ETag, then puts conditionally on that ETag
  (``If-Match``), retrying when another writer came in between, so the first creation
  time survives every overwrite;
- compute-once locks are lease objects (``results_flow.backends.object_store.leases``); a write
  through a held lease passes ``fence``, called before each put or delete of the
  record, which proves the lease is still held.

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

import contextlib
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from results_flow.backends.base import ResultsBackend, unique
from results_flow.backends.descriptors import NO_DESCRIPTORS_HINT, out_of_descriptors
from results_flow.backends.object_store.leases import LeaseLock, lease
from results_flow.errors import (
    InvalidResultIdError,
    ResultsFlowError,
    StoreError,
    StoreUnavailableError,
    UnsupportedStoreUrlError,
)
from results_flow.ids import SEPARATOR, normalize_id
from results_flow.records import Record
from results_flow.settings import (
    LEASE_TTL_SECONDS,
    OBJECT_STORE_CONCURRENCY,
    OBJECT_STORE_CONNECT_TIMEOUT,
    OBJECT_STORE_MAX_RETRIES,
    OBJECT_STORE_REQUEST_TIMEOUT,
    OBJECT_STORE_RETRY_TIMEOUT,
    OBJECT_STORE_WRITE_ATTEMPTS,
    STORE_LOCK_TIMEOUT,
)
from results_flow.urls import mask_url

if TYPE_CHECKING:
    from obstore.store import AzureStore, GCSStore, S3Store

    ObjectStore = S3Store | GCSStore | AzureStore

T = TypeVar("T")

SCHEMES = ("s3", "gs", "az")
SUFFIX = ".json"
#: Internal objects (leases) live here; no result ID segment starts with a dot.
INTERNAL_PREFIX = ".results_flow"
#: The longest object key S3, GCS and Azure all accept (bytes of UTF-8).
MAX_KEY_BYTES = 1024
#: The object metadata key of a record's write token (``x-amz-meta-results-flow-write``).
WRITE_TOKEN = "results-flow-write"

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
#: The words by which a request on an object (not a listing) says its bucket is gone.
_BUCKET_GONE = ("NoSuchBucket", "ContainerNotFound")
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


def _no_fence() -> None:
    """The fence of a write made without a lock: nothing to prove."""


class Found(NamedTuple):
    """An object as read: its content, ETag and the write token it was put with."""

    content: bytes
    etag: str | None
    writer: str | None


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
        concurrency: int = OBJECT_STORE_CONCURRENCY,
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
        client_options.setdefault(
            "connect_timeout", timedelta(seconds=OBJECT_STORE_CONNECT_TIMEOUT)
        )
        client_options.setdefault("timeout", timedelta(seconds=OBJECT_STORE_REQUEST_TIMEOUT))
        retry: Any = {
            "max_retries": OBJECT_STORE_MAX_RETRIES,
            "retry_timeout": timedelta(seconds=OBJECT_STORE_RETRY_TIMEOUT),
        }
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

    def insert(
        self, result_id: str, record: Record, *, fence: Callable[[], None] = _no_fence
    ) -> Record | None:
        """See ``ResultsBackend.insert``; ``fence`` runs before each put (see the module)."""
        key = self.key_for(result_id)
        body = record.to_document().encode("utf-8")
        token = uuid.uuid4().hex
        for _ in range(OBJECT_STORE_WRITE_ATTEMPTS):
            fence()
            if self.put_object(key, body, "create", writer=token)[0]:
                return None
            found = self.get_object(key)
            if found is not None:
                # Our own token: the put landed, its answer was lost and the retry met it.
                return None if found.writer == token else self._record(key, found)
            # deleted between our create and our read: try the create again
        raise StoreError(f"could not write {self.where(key)}: it kept changing under us")

    def upsert(
        self, result_id: str, record: Record, *, fence: Callable[[], None] = _no_fence
    ) -> None:
        """See ``ResultsBackend.upsert``; ``fence`` runs before each put (see the module)."""
        key = self.key_for(result_id)
        for _ in range(OBJECT_STORE_WRITE_ATTEMPTS):
            found = self._get(key)
            fence()
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

    def delete(self, result_id: str, *, fence: Callable[[], None] = _no_fence) -> bool:
        """See ``ResultsBackend.delete``; ``fence`` runs before the delete."""
        # obstore's delete does not say whether there was an object; head first.
        if not self.exists(result_id):
            return False
        fence()
        return self.delete_object(self.key_for(result_id))

    def list_ids(self, prefix: str | None = None) -> list[str]:
        found = [i for i in map(self.id_for, self._keys(prefix)) if i is not None]
        if prefix is not None and self.exists(prefix):
            found.append(prefix)
        return sorted(found)

    def read_many(self, result_ids: Sequence[str]) -> dict[str, Record]:
        ids = unique(result_ids)
        results = self._gather(self.read_with_tag, ids)
        return {i: found[0] for i, found in zip(ids, results, strict=True) if found is not None}

    def exists_many(self, result_ids: Sequence[str]) -> set[str]:
        ids = unique(result_ids)
        results = self._gather(self.exists, ids)
        return {i for i, there in zip(ids, results, strict=True) if there}

    def delete_many(self, result_ids: Sequence[str]) -> int:
        """One concurrent look for which IDs are there, then deletes of up to 1,000
        objects per request."""
        import obstore

        there = self.exists_many(result_ids)
        keys = [self.key_for(i) for i in unique(result_ids) if i in there]
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]
            with self._missing_ok(batch[0]):
                obstore.delete(self.client(), batch)
        return len(keys)

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
    ) -> contextlib.AbstractContextManager[LeaseLock]:
        """A compute-once lease on the ID (see ``backends.object_store.leases``); writes
        through the ``LeaseLock`` it yields are refused once the lease is lost."""
        wait = self.lock_timeout if timeout is None else timeout
        return lease(self, result_id, wait, self.lease_ttl)

    def close(self) -> None:
        with self._guard:
            self._client = None

    def __repr__(self) -> str:
        return f"ObjectStoreBackend({self.location!r})"

    def __getstate__(self) -> dict[str, Any]:
        # Clients, locks and threads stay behind; the other process opens its own.
        state = dict(self.__dict__)
        state.update(_guard=None, _client=None, _pid=-1)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._guard = threading.Lock()

    # -- object operations, shared with the leases ------------------------------------

    def _get(self, key: str) -> tuple[Record, str | None] | None:
        found = self.get_object(key)
        return None if found is None else (self._record(key, found), found.etag)

    def _record(self, key: str, found: Found) -> Record:
        return Record.from_document(found.content, self.where(key))

    @contextlib.contextmanager
    def _missing_ok(self, key: str) -> Iterator[None]:
        """Around an obstore request on ``key``: a missing object (FileNotFoundError)
        ends the block quietly, an answer and not an error; any other error becomes
        the store's error (``_mapped``)."""
        try:
            yield
        except FileNotFoundError as exc:
            if _bucket_gone(exc):
                raise self._no_bucket(exc) from exc
        except ResultsFlowError:
            raise  # our own (a damaged record read in the block) pass through unmapped
        except Exception as exc:
            raise self._mapped(exc, key) from exc

    def _put(self, key: str, body: bytes, mode: Any) -> bool:
        """Put ``body``; False when the condition in ``mode`` failed (exists, or changed)."""
        return self.put_object(key, body, mode)[0]

    def put_object(
        self, key: str, body: bytes, mode: Any, writer: str | None = None
    ) -> tuple[bool, str | None]:
        """Put ``body`` (with the write token ``writer`` in its metadata): (False, None)
        when the condition in ``mode`` failed, else (True, the new ETag).

        Raises:
            StoreUnavailableError: the bucket is gone, or the request failed.
        """
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        attributes: Any = {WRITE_TOKEN: writer} if writer else None
        try:
            result = obstore.put(self.client(), key, body, mode=mode, attributes=attributes)
        except (AlreadyExistsError, PreconditionError, FileNotFoundError) as exc:
            if _bucket_gone(exc):  # else If-Match on an object that is gone, or a conflict
                raise self._no_bucket(exc) from exc
            return False, None
        except Exception as exc:
            raise self._mapped(exc, key) from exc
        return True, result.get("e_tag")

    def get_object(self, key: str) -> Found | None:
        """An object's content, ETag and write token, or None."""
        import obstore

        with self._missing_ok(key):
            result = obstore.get(self.client(), key)
            writer = result.attributes.get(WRITE_TOKEN)
            return Found(bytes(result.bytes()), result.meta.get("e_tag"), writer)
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

    def _gather(self, call: Callable[[str], T], result_ids: Sequence[str]) -> list[T]:
        """``call(id)`` for every ID, results in order, at most ``concurrency`` in flight.

        The requests are obstore's blocking calls made from threads of our own, joined
        before this returns. Not its ``*_async`` calls: those hand each answer back from a
        tokio thread, and a process that exits while such a thread is still inside the
        event loop's wake-up call aborts (SIGABRT at interpreter teardown, about 1 short
        script in 5 after a batch read). The workers take the IDs one by one from one
        iterator, so memory grows with the requests in flight, not with the number of IDs.

        Raises:
            InvalidResultIdError: an ID too long for an object key (before any request).
            StoreUnavailableError: a request failed, or no thread could be started.
        """
        for result_id in result_ids:
            self.key_for(result_id)
        results: list[Any] = [None] * len(result_ids)
        todo = iter(enumerate(result_ids))
        taking = threading.Lock()
        failed = threading.Event()

        def worker() -> None:
            while not failed.is_set():
                with taking:
                    item = next(todo, None)
                if item is None:
                    return
                try:
                    results[item[0]] = call(item[1])
                except BaseException:
                    failed.set()  # the others stop taking IDs; the error is re-raised below
                    raise

        workers = min(self.concurrency, len(results))
        if workers == 0:
            return []
        self.client()
        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="results-flow-s3") as pool:
                futures = [pool.submit(worker) for _ in range(workers)]
        except RuntimeError as exc:  # "can't start new thread": out of threads or descriptors
            raise self._mapped(exc, "") from exc
        for future in futures:
            future.result()
        return results

    def _mapped(self, exc: BaseException, key: str, listing: bool = False) -> StoreError:
        """The results_flow error for an obstore error on ``key`` (``listing``: a list
        request, where "not found" can only mean the bucket)."""
        from obstore.exceptions import PermissionDeniedError, UnauthenticatedError

        where = self.where(key) if key else self.location
        message = _safe_message(exc)
        if out_of_descriptors():
            return StoreUnavailableError(
                f"{where}: cannot open a connection or event loop ({message}); "
                f"{NO_DESCRIPTORS_HINT}"
            )
        if isinstance(exc, PermissionDeniedError | UnauthenticatedError) or (
            listing and any(word in message for word in _REFUSED)
        ):
            return StoreUnavailableError(
                f"{where}: the object store refused the credentials ({message})"
            )
        if listing and (
            isinstance(exc, FileNotFoundError) or any(w in message for w in _NO_BUCKET)
        ):
            return self._no_bucket(exc)
        return StoreUnavailableError(f"{where}: the object store request failed ({message})")

    def _no_bucket(self, exc: BaseException) -> StoreUnavailableError:
        """The error of a request that found no bucket (or container)."""
        return StoreUnavailableError(
            f"{self.location}: no bucket or container {self.bucket!r} ({_safe_message(exc)})"
        )


def _bucket_gone(exc: BaseException) -> bool:
    """Whether an obstore "not found" or "precondition" error says the bucket is gone
    (S3 and Azure name it in the error body; a missing object says NoSuchKey)."""
    return any(word in str(exc) for word in _BUCKET_GONE)


def _safe_message(exc: BaseException) -> str:
    """The first line of an obstore error, without request query strings (SAS tokens)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = " ".join(lines[:2]) if lines else type(exc).__name__
    text = _QUERY_IN_TEXT.sub(r"\1?***", text)
    return text if len(text) <= 400 else text[:400] + "..."
