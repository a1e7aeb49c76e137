"""What only the object store backend has: URLs, masked secrets, named errors for a
wrong bucket or wrong credentials, the prefix as the store's edge, fork safety and
compute-once leases. The shared behaviour runs in the conformance suite (kind "s3")."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from results_flow import (
    InvalidResultIdError,
    LockLostError,
    LockTimeoutError,
    ResultsManager,
    SetBehavior,
    StoreUnavailableError,
    UnsupportedStoreUrlError,
)
from results_flow.backends.object_store import leases
from results_flow.backends.object_store.store import ObjectStoreBackend
from results_flow.records import Record
from results_flow.urls import mask_url
from tests.backends.models import Item
from tests.s3_server import S3Server, free_port

ROOT = Path(__file__).resolve().parents[2]


def open_store(url: str, **options: Any) -> ResultsManager:
    return ResultsManager(backend=ObjectStoreBackend(url, **options))


def test_url_parts_and_masked_location(s3_server: S3Server) -> None:
    url = f"s3://{s3_server.bucket}/a/b?endpoint={s3_server.endpoint}&session_token=TOPSECRET"
    backend = ObjectStoreBackend(url)
    assert (backend.bucket, backend.prefix, backend.url) == (s3_server.bucket, "a/b", url)
    assert "TOPSECRET" not in backend.location and "TOPSECRET" not in repr(backend)
    assert ObjectStoreBackend.from_url(url).url == url
    assert mask_url("az://c/p?sas_token=abc&x=1") == "az://c/p?sas_token=***&x=***"


def test_not_an_object_store_url_is_refused() -> None:
    for url in ("s3:///no-bucket", "ftp://bucket/x"):
        with pytest.raises(UnsupportedStoreUrlError):
            ObjectStoreBackend(url)


def test_unknown_setting_is_named_and_secrets_stay_hidden(s3_server: S3Server) -> None:
    url = f"{s3_server.url()}&secret_access_key=TOPSECRET&no_such_setting=1"
    with pytest.raises(UnsupportedStoreUrlError, match="no_such_setting") as caught:
        ObjectStoreBackend(url)
    assert "TOPSECRET" not in str(caught.value)


def test_missing_bucket_is_a_named_error(s3_server: S3Server) -> None:
    with pytest.raises(StoreUnavailableError, match="no bucket or container 'no-such-bucket'"):
        ObjectStoreBackend(f"s3://no-such-bucket/p?endpoint={s3_server.endpoint}")


def test_unreachable_endpoint_is_a_named_error() -> None:
    with pytest.raises(StoreUnavailableError, match="request failed"):
        ObjectStoreBackend(f"s3://bucket/p?endpoint=http://127.0.0.1:{free_port()}")


@pytest.fixture(scope="module")
def authenticating_server() -> Any:
    """A second moto server that checks credentials: it knows no access key at all."""
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import socket

    deadline = time.monotonic() + 120
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("the authenticating moto server did not start")
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait()


def test_bad_credentials_are_a_named_error_without_the_secret(
    authenticating_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "WRONG-SECRET-VALUE")
    with pytest.raises(StoreUnavailableError, match="refused the credentials") as caught:
        ObjectStoreBackend(f"s3://bucket/p?endpoint={authenticating_server}")
    assert "WRONG-SECRET-VALUE" not in str(caught.value)


def test_clear_and_list_stay_inside_the_prefix(s3_server: S3Server) -> None:
    url = s3_server.url()
    rm = open_store(url)
    neighbour = open_store(s3_server.url())
    rm.set("x/1", Item(index=1))
    neighbour.set("x/1", Item(index=2))
    prefix = ObjectStoreBackend(url, check=False).prefix
    raw = s3_server.client()
    raw.put_object(Bucket=s3_server.bucket, Key=f"{prefix}/notes.txt", Body=b"not a record")
    raw.put_object(Bucket=s3_server.bucket, Key=f"{prefix}.json", Body=b"{}")  # beside, not in
    assert rm.list_ids() == ["x/1"]
    rm.clear()
    assert rm.list_ids() == [] and neighbour.list_ids() == ["x/1"]
    keys = {o["Key"] for o in raw.list_objects_v2(Bucket=s3_server.bucket)["Contents"]}
    assert {f"{prefix}/notes.txt", f"{prefix}.json"} <= keys


def test_an_id_too_long_for_an_object_key_is_named(s3_server: S3Server) -> None:
    rm = open_store(s3_server.url("a-long-prefix/" + "p" * 100))
    long_id = "/".join(["s" * 150] * 6)  # a valid ID of 905 bytes; the key would pass 1024
    with pytest.raises(InvalidResultIdError, match="too long"):
        rm.set(long_id, Item(index=1))
    record = Record("Item", "default", '{"index": 1}')
    assert "too long" in str(rm.backend.unfit_reason(long_id, record))
    assert rm.backend.unfit_reason("short/id", record) is None


def test_records_are_the_shared_envelope(s3_server: S3Server) -> None:
    url = s3_server.url()
    open_store(url).set("people/p1", Item(index=7), metadata={"flow": "f"})
    prefix = ObjectStoreBackend(url, check=False).prefix
    raw = s3_server.client()
    body = raw.get_object(Bucket=s3_server.bucket, Key=f"{prefix}/people/p1.json")["Body"].read()
    record = Record.from_document(body, "raw")
    assert record.model_type == "Item" and record.metadata == {"flow": "f"}


def test_batch_reads_with_bounded_concurrency_inside_an_event_loop(s3_server: S3Server) -> None:
    import asyncio

    rm = open_store(s3_server.url(), concurrency=3)
    ids = [f"b/{i}" for i in range(25)]
    for i, rid in enumerate(ids[:20]):
        rm.set(rid, Item(index=i))

    async def from_a_coroutine() -> tuple[int, int]:
        return len(rm.get_many(ids, Item)), len(rm.exists_many(ids))

    assert rm.get_many(ids, Item)["b/3"].index == 3
    assert asyncio.run(from_a_coroutine()) == (20, 20)


def test_backend_pickles_without_its_client(s3_server: S3Server) -> None:
    backend = ObjectStoreBackend(s3_server.url())
    ResultsManager(backend=backend).set("p", Item(index=1))
    copy = pickle.loads(pickle.dumps(backend))
    assert ResultsManager(backend=copy).get("p", Item).index == 1


def test_forked_child_gets_a_named_error_not_a_hang(s3_server: S3Server) -> None:
    """Regression guard: obstore's runtime does not survive fork(); a call hung forever."""
    rm = open_store(s3_server.url())
    rm.set("parent", Item(index=1))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        signal.signal(signal.SIGALRM, lambda *_: os._exit(3))
        signal.alarm(60)
        try:
            rm.get("parent", Item)
        except StoreUnavailableError as exc:
            os._exit(0 if "spawn" in str(exc) else 1)
        os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert rm.get("parent", Item).index == 1


def spawned_writer(url: str, worker: int, ids: list[str]) -> list[str]:
    rm = open_store(url)
    return [rid for rid in ids if rm.set(rid, Item(index=worker), SetBehavior.SKIP_IF_EXISTS)]


def test_spawned_workers_share_the_store(s3_server: S3Server) -> None:
    url = s3_server.url()
    rm = open_store(url)
    rm.set("parent", Item(index=1))
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        won = list(pool.map(spawned_writer, [url] * 2, range(2), [["w/1", "w/2"]] * 2))
    assert sorted(rid for ids in won for rid in ids) == ["w/1", "w/2"]
    assert rm.list_ids("w") == ["w/1", "w/2"]


# -- leases ----------------------------------------------------------------------------


def test_lease_excludes_a_second_holder_and_is_released(s3_server: S3Server) -> None:
    rm = open_store(s3_server.url(), lease_ttl=5)
    entered = threading.Event()
    leave = threading.Event()

    def hold() -> None:
        with rm.lock("job/1"):
            entered.set()
            leave.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    assert entered.wait(60)
    with pytest.raises(LockTimeoutError, match="job/1"), rm.lock("job/1", timeout=0.3):
        pass
    leave.set()
    holder.join()
    with rm.lock("job/1", timeout=60):  # released: no TTL to wait out
        pass
    assert rm.list_ids() == []  # leases are not records


def test_dead_lease_holder_is_taken_over_after_its_ttl(s3_server: S3Server, tmp_path: Path) -> None:
    url = s3_server.url()
    ready = tmp_path / "ready"
    code = (
        "import sys, time, pathlib\n"
        "from results_flow.backends.object_store.store import ObjectStoreBackend\n"
        "held = ObjectStoreBackend(sys.argv[1], lease_ttl=1.5).lock('job/dead')\n"
        "held.__enter__()\n"
        "pathlib.Path(sys.argv[2]).write_text('held')\n"
        "time.sleep(600)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, url, str(ready)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and holder.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the holder never took the lease"
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    backend = ObjectStoreBackend(url, lease_ttl=1.5)
    assert backend.get_object(leases.lease_key("job/dead")) is not None  # left behind
    rm = ResultsManager(backend=backend)
    with rm.lock("job/dead", timeout=120):
        rm.set("job/dead", Item(index=1))
    assert backend.get_object(leases.lease_key("job/dead")) is None


def test_holder_that_lost_its_lease_is_told_and_never_replaces_the_first_result(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A holder that stops beating (paused, cut off) loses its lease to a waiter."""
    monkeypatch.setattr(leases.Lease, "_heartbeat", lambda self: None)
    url = s3_server.url()
    slow = open_store(url, lease_ttl=1)
    fast = open_store(url, lease_ttl=1)
    held = slow.lock("job/lost")
    held.__enter__()
    with fast.lock("job/lost", timeout=120):  # waits out the silent holder's TTL
        assert fast.set("job/lost", Item(index=1, writer="fast"), SetBehavior.SKIP_IF_EXISTS)
    assert not slow.set("job/lost", Item(index=2, writer="slow"), SetBehavior.SKIP_IF_EXISTS)
    with pytest.raises(LockLostError, match="job/lost"):
        held.__exit__(None, None, None)
    assert slow.get("job/lost", Item).writer == "fast"


def test_heartbeat_keeps_a_long_holder(s3_server: S3Server) -> None:
    rm = open_store(s3_server.url(), lease_ttl=0.6)
    with rm.lock("job/long"):
        waiter = rm.lock("job/long", timeout=2.0)  # over three TTLs: beats kept it alive
        with pytest.raises(LockTimeoutError):
            waiter.__enter__()
