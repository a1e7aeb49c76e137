"""settings.py is the one table of defaults: every module takes its defaults from it,
and no module keeps a copy of a value under another name."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

from results_flow import settings
from results_flow.aio import AsyncResultsManager  # noqa: F401 - imports every backend twin
from results_flow.backends.file import FileBackend
from results_flow.backends.memory import MemoryBackend
from results_flow.backends.sql import SqlBackend
from results_flow.backends.sql_async import AsyncSqlBackend
from results_flow.data.database import DatabaseDataManager
from results_flow.maintenance import delete_planned, iter_records, scan
from results_flow.prefect.decorator import results_task
from results_flow.transfer import export_jsonl, migrate

PACKAGE = Path(settings.__file__).parent


def default(function: Any, name: str) -> Any:
    return inspect.signature(function).parameters[name].default


def test_defaults_come_from_settings() -> None:
    assert default(SqlBackend.__init__, "busy_timeout") == settings.SQLITE_BUSY_TIMEOUT
    assert default(AsyncSqlBackend.__init__, "busy_timeout") == settings.SQLITE_BUSY_TIMEOUT
    assert default(DatabaseDataManager.__init__, "busy_timeout") == settings.SQLITE_BUSY_TIMEOUT
    assert default(SqlBackend.__init__, "lock_timeout") == settings.STORE_LOCK_TIMEOUT
    assert default(AsyncSqlBackend.__init__, "lock_timeout") == settings.STORE_LOCK_TIMEOUT
    assert default(MemoryBackend.__init__, "lock_timeout") == settings.STORE_LOCK_TIMEOUT
    assert default(FileBackend.__init__, "lock_timeout") == settings.FILE_LOCK_TIMEOUT
    assert default(results_task, "lock_timeout") == settings.COMPUTE_LOCK_TIMEOUT
    for function in (scan, iter_records, delete_planned, export_jsonl, migrate):
        assert default(function, "batch_size") == settings.RECORDS_PER_STEP, function


def test_no_module_but_settings_defines_a_default_constant() -> None:
    pattern = re.compile(
        r"^(DEFAULT_\w*TIMEOUT|BATCH_SIZE|COMPUTE_LOCK_TIMEOUT|DEFAULT_LEASE_TTL)\s*=", re.M
    )
    offenders = [
        f"{path.relative_to(PACKAGE)}: {match.group(0)}"
        for path in PACKAGE.rglob("*.py")
        if path.name != "settings.py"
        for match in pattern.finditer(path.read_text())
    ]
    assert offenders == []


def test_every_default_has_a_line_of_why() -> None:
    text = Path(settings.__file__).read_text()
    table = text[text.index("# --- The table of defaults") :]
    lines = table.splitlines()
    for number, line in enumerate(lines):
        if re.match(r"^[A-Z_]+ = ", line):
            assert lines[number - 1].startswith("#:"), line
