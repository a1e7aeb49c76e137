"""settings.py is the one table of defaults: every module takes its defaults from it,
and no module keeps a copy of a value under another name."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from typing import Any

from results_flow import settings
from results_flow.aio import AsyncResultsManager  # noqa: F401 - imports every backend twin
from results_flow.backends.file.store import FileBackend
from results_flow.backends.memory import MemoryBackend
from results_flow.backends.sql.async_store import AsyncSqlBackend
from results_flow.backends.sql.store import SqlBackend
from results_flow.cleanup import delete_planned
from results_flow.data.database import DatabaseDataManager
from results_flow.maintenance import iter_records, scan
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


# --- issue 20 item 13: no numeric default outside settings.py --------------------------

#: Module-level numeric constants outside settings.py that are not defaults: facts of a
#: format, a protocol or an engine, which no caller should tune. A new entry needs a reason.
NOT_DEFAULTS = {
    "ids.py": {"MAX_SEGMENT_BYTES", "MAX_ID_BYTES"},  # the ID contract (a column's width)
    "hashing.py": {"KEY_HEX_DIGITS"},  # part of every stored ID: changing it moves them all
    "records.py": {"_DATA_KEY_TRIES"},  # how the document parser looks for its data key
    "backends/sql/statements.py": {"CREATE_LOCK_KEY"},  # an advisory-lock key, not a size
    "data/flow.py": {"STAGE_FORMAT"},  # the layout version of stage records
    "data/sql_rows.py": {"SQLITE_VARIABLES"},  # SQLite's lowest build limit
    "data/sql_tables.py": {"MAX_IDENTIFIER"},  # PostgreSQL's identifier length
    # the range of a 64-bit column, and PostgreSQL numeric's digits before and after the point
    "data/storable.py": {
        "INT64_MIN",
        "INT64_MAX",
        "NUMERIC_INTEGRAL_DIGITS",
        "NUMERIC_SCALE_DIGITS",
    },
    "backends/object_store/store.py": {"MAX_KEY_BYTES"},  # S3's longest object key
    "legacy.py": {"_STEPS_PER_CALL"},  # how often the guard looks, not what it allows
    "backends/sql/pg_lock.py": {"_MAX_LOCK_MS"},  # PostgreSQL's largest lock_timeout
    "cli_docs.py": {"WIDTH"},  # the CLI reference page's fixed width, not a store default
}


def _numeric(node: ast.expr) -> bool:
    """A number, or arithmetic of numbers (``64 * 1024``, ``-2**63``)."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, int | float) and not isinstance(node.value, bool)
    if isinstance(node, ast.UnaryOp):
        return _numeric(node.operand)
    if isinstance(node, ast.BinOp):
        return _numeric(node.left) and _numeric(node.right)
    return False


def module_numeric_constants() -> dict[str, set[str]]:
    """Per module of the package (but settings.py), the names its top level binds to a
    number."""
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "settings.py":
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and _numeric(node.value):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif (
                isinstance(node, ast.AnnAssign)
                and node.value is not None
                and _numeric(node.value)
                and isinstance(node.target, ast.Name)
            ):
                names = [node.target.id]
            else:
                continue
            found.setdefault(path.relative_to(PACKAGE).as_posix(), set()).update(names)
    return found


def test_numeric_defaults_live_in_settings_only() -> None:
    """Every tunable number is a settings.py entry with its line of why; elsewhere only
    the listed facts (``NOT_DEFAULTS``) may be module-level numbers."""
    offenders = {
        module: sorted(names - NOT_DEFAULTS.get(module, set()))
        for module, names in module_numeric_constants().items()
        if names - NOT_DEFAULTS.get(module, set())
    }
    assert offenders == {}, "move these defaults into results_flow/settings.py"
