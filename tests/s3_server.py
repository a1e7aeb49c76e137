"""A local S3 server for the test session: moto's ``ThreadedMotoServer`` on 127.0.0.1.

MinIO and Docker are not available here; moto's server speaks enough S3 (conditional
puts with ``If-None-Match: *`` and ``If-Match``, paginated listing, bulk delete) for
every object store test. It runs in the pytest process on a free port; worker
processes reach it over HTTP like any client.

moto checks a put's condition and stores the object in two steps, so two threads of
its server can both pass ``If-None-Match: *``; real S3 settles that on the server.
``_serialize_puts`` makes moto's puts one critical section, as S3's are.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

BUCKET = "results-flow-test"
#: Credentials moto accepts; set in the environment so every process finds them as a
#: real deployment would (the standard chain), never in a URL.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@dataclass(frozen=True)
class S3Server:
    """A running local S3 endpoint with one bucket."""

    endpoint: str
    bucket: str

    def url(self, prefix: str | None = None) -> str:
        """A fresh store URL: its own prefix in the session bucket."""
        prefix = prefix or f"t-{uuid.uuid4().hex[:12]}"
        return f"s3://{self.bucket}/{prefix}?endpoint={self.endpoint}"

    def client(self) -> Any:
        """A boto3 client on the server (for checks that look at the raw objects)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")


_put_lock = threading.Lock()


def _serialize_puts() -> None:
    from moto.s3.responses import S3Response

    original = S3Response.put_object
    if getattr(original, "__results_flow_serialized__", False):
        return

    def put_object(self: S3Response) -> Any:
        with _put_lock:
            return original(self)

    put_object.__results_flow_serialized__ = True  # type: ignore[attr-defined]
    S3Response.put_object = put_object  # type: ignore[method-assign]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server() -> tuple[Any, S3Server]:
    """Start a moto server with the test bucket; returns (server, S3Server)."""
    from moto.server import ThreadedMotoServer

    _serialize_puts()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    s3 = S3Server(endpoint=f"http://{host}:{port}", bucket=BUCKET)
    s3.client().create_bucket(Bucket=BUCKET)
    return server, s3


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """The session's local S3 server; credentials go into the environment, so worker
    processes inherit them. A missing moto fails under CI and skips elsewhere."""
    try:
        import moto.server  # noqa: F401
        import obstore  # noqa: F401
    except ImportError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI requires the s3 and dev extras (obstore, moto[server]): {exc}")
        pytest.skip(f"obstore or moto[server] is not installed: {exc}")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in CREDENTIALS.items():
            patch.setenv(name, value)
        server, s3 = start_server()
        try:
            yield s3
        finally:
            server.stop()


@pytest.fixture
def s3_url(s3_server: S3Server) -> str:
    """A store URL on its own prefix in the session bucket."""
    return s3_server.url()
