"""No secret query value of a store URL is shown: ``mask_url`` shows the values of a
short list of harmless keys only (issue 21 item 3: ``aws_secret_access_key``,
``client_secret`` and the other obstore credential keys were printed in clear)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from pydantic import BaseModel
from rich.console import Console

from results_flow import ResultNotFoundError, ResultsManager, StoreUnavailableError, mask_url
from results_flow.backends.object_store.store import ObjectStoreBackend
from results_flow.cli import app
from tests.s3_server import S3Server

SECRET = "Zq8SeKrEtVaLuE"

#: obstore's credential settings, and the short forms a URL may use.
CREDENTIAL_KEYS = [
    "aws_secret_access_key",
    "aws_session_token",
    "aws_token",
    "azure_storage_account_key",
    "azure_storage_access_key",
    "azure_storage_master_key",
    "azure_storage_sas_key",
    "azure_storage_sas_token",
    "azure_storage_token",
    "azure_client_secret",
    "azure_storage_client_secret",
    "client_secret",
    "google_service_account_key",
    "google_application_credentials",
    "secret_access_key",
    "session_token",
    "sas_token",
    "bearer_token",
    "password",
    "AWS_SECRET_ACCESS_KEY",
    "aws%5Fsecret%5Faccess%5Fkey",
    "a_key_never_seen_before",
]


class Note(BaseModel):
    text: str


@pytest.mark.parametrize("key", CREDENTIAL_KEYS)
@pytest.mark.parametrize("scheme", ["s3", "gs", "az", "postgresql"])
def test_every_query_value_but_harmless_settings_is_masked(scheme: str, key: str) -> None:
    url = f"{scheme}://bucket/p?region=eu-west-1&{key}={SECRET}&endpoint=http://127.0.0.1:9000"
    assert mask_url(url) == (
        f"{scheme}://bucket/p?region=eu-west-1&{key}=***&endpoint=http://127.0.0.1:9000"
    )


@pytest.mark.parametrize(
    "url",
    [
        f"s3://bucket/p?region=eu;client_secret={SECRET}",  # ";" separates too
        f"s3://bucket/p?aws_secret_access_key={SECRET}?x=1",  # a "?" in the value
        f"s3://bucket/p?aws_secret_access_key=a@{SECRET}",  # an "@" in the value
        f"s3://bucket/p?endpoint=http://user:{SECRET}@host:9000",  # a user in a shown value
        f"s3://bucket/p?endpoint=http://h%40{SECRET}",  # an escaped "@" in a shown value
        f"s3://bucket/p#token={SECRET}",  # a fragment is never shown
        f"postgresql://app:pw@host/db?sslmode=require&password={SECRET}",
    ],
)
def test_no_spelling_of_a_query_shows_the_secret(url: str) -> None:
    assert SECRET not in mask_url(url), mask_url(url)


def _url(s3_server: S3Server, bucket: str | None = None) -> str:
    """A store URL that carries its credentials in the query (moto takes any)."""
    return (
        f"s3://{bucket or s3_server.bucket}/secrets?endpoint={s3_server.endpoint}"
        f"&aws_access_key_id=AKIDTEST&aws_secret_access_key={SECRET}"
        f"&aws_session_token={SECRET}"
    )


def _cli(*tokens: str) -> tuple[int, str]:
    out = Console(file=io.StringIO(), width=300)
    err = Console(file=io.StringIO(), width=300)
    try:
        code: Any = app(list(tokens), console=out, error_console=err, result_action="return_value")
    except SystemExit as exc:
        code = exc.code
    return int(code or 0), out.file.getvalue() + err.file.getvalue()  # type: ignore[attr-defined]


def test_reprs_and_errors_of_an_object_store_hide_the_secret(s3_server: S3Server) -> None:
    with ResultsManager(backend=ObjectStoreBackend(_url(s3_server))) as store:
        store.set("notes/n1", Note(text="hello"))
        assert SECRET not in repr(store) and SECRET not in repr(store.backend)
        with pytest.raises(ResultNotFoundError) as missing:
            store.get("notes/none")
        assert SECRET not in str(missing.value), missing.value
    with pytest.raises(StoreUnavailableError, match="no bucket") as no_bucket:
        ObjectStoreBackend(_url(s3_server, bucket="no-such-bucket-21"))
    assert SECRET not in str(no_bucket.value), no_bucket.value


def test_the_cli_hides_the_secret_in_errors_and_stats(s3_server: S3Server) -> None:
    code, text = _cli("ls", "--store", _url(s3_server, bucket="no-such-bucket-21"))
    assert code == 1 and "no bucket" in text, text
    assert SECRET not in text, text
    with ResultsManager(backend=ObjectStoreBackend(_url(s3_server))) as store:
        store.set("notes/n2", Note(text="hello"), behavior="skip_if_exists")
    code, text = _cli("stats", "--store", _url(s3_server))
    assert code == 0 and "results" in text, text
    assert SECRET not in text, text
    code, text = _cli("show", "notes/none", "--store", _url(s3_server))
    assert code == 1 and SECRET not in text, text
