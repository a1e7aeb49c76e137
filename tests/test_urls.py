"""Store URLs: one registry of schemes, entry points, bare ``.db`` paths, and no
password in any message (issue 8 item 4, issue 10 item 1, issue 13 item 6)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

import results_flow
from results_flow import (
    FileBackend,
    MemoryBackend,
    ResultsManager,
    SqlBackend,
    SqliteBackend,
    StoreUnavailableError,
    UnsupportedStoreUrlError,
    mask_url,
)
from results_flow.aio import AsyncResultsManager
from results_flow.backends import registry as urls
from results_flow.backends.registry import (
    ENTRY_POINT_GROUP,
    backend_from_url,
    check_store_url,
    register_backend,
    registered_schemes,
)

SECRET = "S3cretPW"

#: The five URLs that leaked their password before (issue 8 item 4).
LEAKY_URLS = {
    "scheme typo": f"postgressql://app:{SECRET}@127.0.0.1/results",
    "unparseable driver": f"postgresql+psycopg-3://app:{SECRET}@127.0.0.1/results",
    "unescaped @ in the password": f"postgresql://app:{SECRET[:3]}@{SECRET[3:]}@127.0.0.1/results",
    "non-numeric port": f"postgresql://app:{SECRET}@127.0.0.1:five432/results",
    "unknown scheme with a query secret": f"s4://bucket/x?secret_access_key={SECRET}",
}


def _leaks(text: str) -> bool:
    return SECRET in text or SECRET[3:] in text


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scheme table as it is now, restored after the test."""
    monkeypatch.setattr(urls, "_factories", dict(urls._factories))
    monkeypatch.setattr(urls, "_extras", dict(urls._extras))


# --- masking ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://app:pw@host:5432/db", "postgresql://app:***@host:5432/db"),
        ("postgresql://app@host/db", "postgresql://app@host/db"),
        ("postgresql://app:p@w/x#y@host/db", "postgresql://app:***@host/db"),
        ("postgresql+psycopg-3://app:pw@host/db", "postgresql+psycopg-3://app:***@host/db"),
        (
            "s3://bucket/p?region=eu&secret_access_key=abc",
            "s3://bucket/p?region=eu&secret_access_key=***",
        ),
        ("file:///data/a@b/store", "file:///data/a@b/store"),
        ("sqlite:////data/me:x@home/results.db", "sqlite:////data/me:x@home/results.db"),
        ("./results_store", "./results_store"),
    ],
)
def test_mask_url_hides_passwords_and_nothing_else(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_mask_url_takes_a_sqlalchemy_url() -> None:
    from sqlalchemy.engine import make_url

    assert mask_url(make_url(f"postgresql://app:{SECRET}@h/db")) == "postgresql://app:***@h/db"


# --- passwords never leak (issue 8 item 4) ----------------------------------------------


@pytest.mark.parametrize("url", LEAKY_URLS.values(), ids=LEAKY_URLS.keys())
def test_a_bad_url_is_a_named_error_without_the_password(url: str) -> None:
    with pytest.raises(UnsupportedStoreUrlError) as raised:
        ResultsManager.from_url(url)
    assert not _leaks(str(raised.value)), raised.value
    with pytest.raises(UnsupportedStoreUrlError) as raised:
        ResultsManager(url)
    assert not _leaks(str(raised.value)), raised.value
    with pytest.raises(UnsupportedStoreUrlError) as raised:
        check_store_url(url)
    assert not _leaks(str(raised.value)), raised.value


def test_a_non_numeric_port_is_named_in_one_line() -> None:
    with pytest.raises(UnsupportedStoreUrlError, match="port must be a number") as raised:
        ResultsManager.from_url(LEAKY_URLS["non-numeric port"])
    assert "\n" not in str(raised.value)
    assert raised.value.__cause__ is None  # not a chained raw ValueError


def test_an_unescaped_at_in_the_password_says_how_to_escape_it() -> None:
    with pytest.raises(UnsupportedStoreUrlError, match="%40"):
        ResultsManager.from_url(LEAKY_URLS["unescaped @ in the password"])


@pytest.mark.parametrize("url", LEAKY_URLS.values(), ids=LEAKY_URLS.keys())
def test_the_cli_names_a_bad_url_in_one_line_without_the_password(url: str) -> None:
    command = Path(sys.executable).parent / "results-flow"
    done = subprocess.run(
        [str(command), "ls", "--store", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr  # one line, no traceback
    assert "Traceback" not in done.stderr
    assert not _leaks(done.stdout + done.stderr), done.stderr


@pytest.mark.parametrize("url", LEAKY_URLS.values(), ids=LEAKY_URLS.keys())
def test_the_storage_block_refuses_a_bad_url_without_the_password(url: str) -> None:
    from results_flow.prefect import ResultsStorage

    with pytest.raises(ValidationError) as raised:
        ResultsStorage(store_url=url)
    assert not _leaks(str(raised.value)), raised.value
    block = ResultsStorage(store_url="results.db")
    with pytest.raises(ValidationError) as raised:
        block.store_url = url  # type: ignore[assignment]
    assert not _leaks(str(raised.value)), raised.value


def test_a_reachable_store_with_a_password_shows_it_nowhere(postgres_url: str) -> None:
    # The test server trusts every local login, so any password connects.
    url = postgres_url.replace("postgresql://postgres@", f"postgresql://postgres:{SECRET}@")
    with ResultsManager.from_url(url) as manager:
        assert SECRET not in manager.backend.location
        assert SECRET not in repr(manager)
        assert isinstance(manager.backend, SqlBackend)
        assert SECRET in manager.backend.database_url  # reopening needs it
        assert manager.backend.url == manager.backend.database_url


# --- each backend: from_url and url -----------------------------------------------------


def test_each_backend_opens_from_its_url_and_gives_a_url_that_reopens_it(tmp_path: Path) -> None:
    folder = FileBackend.from_url(f"file://{tmp_path / 'files'}")
    assert folder.url == f"file://{tmp_path / 'files'}"
    assert isinstance(backend_from_url(folder.url), FileBackend)

    sqlite = SqliteBackend.from_url(f"sqlite:///{tmp_path / 'r.db'}")
    assert sqlite.url is not None
    again = backend_from_url(sqlite.url)
    assert isinstance(again, SqliteBackend) and again.path == sqlite.path
    assert sqlite.database_url.startswith("sqlite:///")
    sqlite.close()
    again.close()

    custom_table = SqlBackend(f"sqlite:///{tmp_path / 'r.db'}", table="other")
    assert custom_table.url is None  # a URL cannot say which table
    custom_table.close()

    memory = MemoryBackend.from_url("memory://scratch")
    assert memory.url is None and memory.location == "memory://scratch"


def test_postgres_and_its_alias_open_from_urls(postgres_url: str) -> None:
    alias = "postgres://" + postgres_url.partition("://")[2]
    for url in (postgres_url, alias):
        backend = backend_from_url(url)
        assert backend.url is not None and backend.url.startswith("postgresql+psycopg://")
        backend.close()


# --- the registry and entry points ------------------------------------------------------


class Recording(MemoryBackend):
    """A memory backend that remembers the URL it was opened from."""

    @classmethod
    def from_url(cls, url: str) -> Recording:
        backend = cls()
        backend.location = url
        return backend


def test_register_backend_with_a_class_a_callable_or_several_schemes(registry: None) -> None:
    register_backend("rec", Recording)
    opened = backend_from_url("rec://a/b")
    assert isinstance(opened, Recording) and opened.location == "rec://a/b"
    register_backend(("one", "two"), lambda url: Recording.from_url("called:" + url))
    assert backend_from_url("two+driver://x").location == "called:two+driver://x"
    assert {"rec", "one", "two", "file", "sqlite", "postgresql", "memory"} <= set(
        registered_schemes()
    )
    with ResultsManager("rec://z") as manager:  # the manager takes any registered scheme
        assert isinstance(manager.backend, Recording)


def test_a_lazy_factory_is_imported_only_when_its_scheme_is_used(
    registry: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "rf_lazy_backend.py").write_text(
        "from results_flow import MemoryBackend\n"
        "class LazyBackend(MemoryBackend):\n"
        "    @classmethod\n"
        "    def from_url(cls, url):\n"
        "        return cls('lazy')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    register_backend("lazy", "rf_lazy_backend:LazyBackend", extra="lazy")
    assert "rf_lazy_backend" not in sys.modules
    opened = backend_from_url("lazy://anything")
    assert type(opened).__name__ == "LazyBackend"
    assert "rf_lazy_backend" in sys.modules
    monkeypatch.delitem(sys.modules, "rf_lazy_backend")


def test_a_missing_optional_dependency_names_its_extra(registry: None) -> None:
    register_backend(("s9", "g9"), "rf_not_installed_anywhere.store:Backend", extra="s9")
    with pytest.raises(StoreUnavailableError, match=r"results-flow\[s9\]") as raised:
        ResultsManager.from_url(f"g9://bucket/prefix?secret_access_key={SECRET}")
    assert "rf_not_installed_anywhere" in str(raised.value)
    assert not _leaks(str(raised.value))


def test_an_unknown_scheme_lists_the_known_ones(registry: None) -> None:
    register_backend("rec", Recording)
    with pytest.raises(UnsupportedStoreUrlError, match=r"rec://.*sqlite://"):
        ResultsManager.from_url("nope://x")


def test_another_package_adds_a_scheme_through_an_entry_point(
    registry: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real installed distribution (a dist-info on sys.path), no mocks."""
    (tmp_path / "rf_plugin_store.py").write_text(
        "from results_flow import MemoryBackend\n"
        "class PluginBackend(MemoryBackend):\n"
        "    @classmethod\n"
        "    def from_url(cls, url):\n"
        "        return cls(url.partition('://')[2])\n"
    )
    info = tmp_path / "rf_plugin_store-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rf-plugin-store\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nplug = rf_plugin_store:PluginBackend\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "plug" in registered_schemes()
    with ResultsManager.from_url("plug://shelf") as manager:
        assert type(manager.backend).__name__ == "PluginBackend"
        assert manager.backend.location == "memory://shelf"
    assert check_store_url("plug://shelf") == "plug://shelf"
    monkeypatch.delitem(sys.modules, "rf_plugin_store", raising=False)


# --- bare .db paths open SQLite (issue 13 item 6) ---------------------------------------


class Note(BaseModel):
    text: str


@pytest.mark.parametrize("name", ["results.db", "results.sqlite", "results.SQLITE3"])
def test_a_bare_db_path_opens_sqlite(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    for location in (str(path), path):
        with ResultsManager(location) as manager:
            assert isinstance(manager.backend, SqliteBackend)
            assert manager.backend.path == path.resolve()
    assert path.is_file()


def test_a_folder_named_like_a_database_stays_a_folder_store(tmp_path: Path) -> None:
    folder = tmp_path / "archive.db"
    folder.mkdir()
    with ResultsManager(str(folder)) as manager:
        assert isinstance(manager.backend, FileBackend)


async def test_the_async_manager_reads_a_db_path_the_same_way(tmp_path: Path) -> None:
    manager = AsyncResultsManager(str(tmp_path / "a.db"))
    try:
        assert manager.backend.location.startswith("sqlite")
    finally:
        await manager.close()


def test_results_flow_store_may_name_a_db_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "x" / "a.db"
    monkeypatch.setenv("RESULTS_FLOW_STORE", str(path))
    with ResultsManager() as manager:
        assert isinstance(manager.backend, SqliteBackend)
        manager.set("notes/1", Note(text="hi"))
    assert path.is_file()


def test_the_cli_opens_a_db_path_as_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    with ResultsManager(f"sqlite:///{path}") as manager:
        manager.set("notes/1", Note(text="hi"))
    command = Path(sys.executable).parent / "results-flow"
    listed = subprocess.run(
        [str(command), "ls", "--json", "--store", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert '"notes/1"' in listed.stdout
    missing = subprocess.run(
        [str(command), "ls", "--store", str(tmp_path / "typo.db")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert missing.returncode == 1
    assert "no results_flow store" in missing.stderr
    assert not (tmp_path / "typo.db").exists()  # a read command creates nothing


def test_mask_url_is_public() -> None:
    assert results_flow.mask_url is mask_url


@pytest.mark.parametrize(
    "url",
    ["sqlite://u:Secr3tPW@/x.db", "file://u:Secr3tPW@host/tmp/x", "file://otherhost/tmp/x"],
)
def test_a_local_store_url_with_a_user_password_or_host_is_refused(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The password became a folder name (and was printed); another host was ignored."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnsupportedStoreUrlError, match="takes no user, password or host") as info:
        ResultsManager(url)
    assert "Secr3tPW" not in str(info.value) and list(tmp_path.iterdir()) == []
