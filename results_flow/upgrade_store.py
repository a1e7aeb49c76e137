"""Upgrade a whole store (or the IDs under a prefix) to the current models, in bulk.

``upgrade_store`` reads every record in batches, decides for each what ``get(id,
on_invalid="migrate")`` decides (``codec.decode_or_upgrade``: valid as it is, upgraded
by the registered upgrades of its model, or not upgradable), and writes each batch's
upgraded records back with ``write_policy.write_back``: a record written again since it
was read is left as written and counted as ``changed``. The ``results-flow upgrade``
command is a thin layer over it.
"""

from __future__ import annotations

from typing import Literal

from results_flow.blobs import PREFECT_NAMESPACE, PrefectResultBlob
from results_flow.codec import decode_or_upgrade
from results_flow.errors import (
    CorruptRecordError,
    ResultValidationError,
    UnknownModelError,
    UpgradeFailedError,
)
from results_flow.maintenance import (
    ProgressSink,
    Report,
    Store,
    backend_of,
    normalized_prefix,
    scan,
)
from results_flow.records import Record
from results_flow.registry import ensure_registered
from results_flow.settings import RECORDS_PER_STEP
from results_flow.write_policy import write_back

UpgradeFailureKind = Literal["corrupt", "unknown_model", "invalid", "upgrade_failed"]


class UpgradeFailure(Report):
    """A record that could not be brought to its model."""

    id: str
    kind: UpgradeFailureKind
    """``corrupt``: cannot be decoded; ``unknown_model``: its model is not registered
    (import its module); ``invalid``: it does not validate and its model has no upgrades;
    ``upgrade_failed``: no upgrade accepts it, or one raised."""
    model: str | None
    """``namespace:ModelName`` as stored; None when the record cannot be decoded."""
    message: str


class UpgradeReport(Report):
    """What ``upgrade_store`` did (or, with ``dry_run``, would do)."""

    location: str
    prefix: str | None
    dry_run: bool
    checked: int
    converted: list[str]
    """IDs upgraded and written back (in a dry run: that would be)."""
    untouched: int
    """Records valid as they are."""
    failed: list[UpgradeFailure]
    changed: list[str]
    """IDs upgraded but written again by someone else since they were read: left as
    written (run the upgrade again to check them)."""

    @property
    def ok(self) -> bool:
        """True when no record failed."""
        return not self.failed


def upgrade_store(
    store: Store,
    prefix: str | None = None,
    *,
    dry_run: bool = False,
    batch_size: int = RECORDS_PER_STEP,
    progress: ProgressSink | None = None,
) -> UpgradeReport:
    """Bring every record under ``prefix`` (all if None) to its registered model through
    the model's upgrades (``results_flow.upgrades``), writing upgraded records back.

    Import the modules that register the models and their upgrades first. A record's
    target is the model registered for its stored tag and namespace; results_flow's own
    Prefect records are always known.

    Raises:
        InvalidResultIdError: the prefix breaks the ID grammar.
    """
    ensure_registered(PrefectResultBlob, PREFECT_NAMESPACE)  # even after clear_registry()
    backend = backend_of(store)
    checked = untouched = 0
    converted: list[str] = []
    changed: list[str] = []
    failed: list[UpgradeFailure] = []
    rewrites: dict[str, tuple[Record, Record]] = {}

    def flush() -> None:
        if not dry_run:
            written = write_back(backend, rewrites)
            changed.extend(rid for rid in rewrites if rid not in written)
            converted.extend(rid for rid in rewrites if rid in written)
        else:
            converted.extend(rewrites)
        rewrites.clear()

    for result_id, item in scan(store, prefix, batch_size=batch_size, progress=progress):
        checked += 1
        if isinstance(item, CorruptRecordError):
            failed.append(
                UpgradeFailure(id=result_id, kind="corrupt", model=None, message=str(item))
            )
            continue
        model = f"{item.namespace}:{item.model_type}"
        try:
            decoded = decode_or_upgrade(result_id, item, None)
        except UnknownModelError as exc:
            failed.append(_failure(result_id, "unknown_model", model, exc))
            continue
        except UpgradeFailedError as exc:
            failed.append(_failure(result_id, "upgrade_failed", model, exc))
            continue
        except ResultValidationError as exc:
            failed.append(_failure(result_id, "invalid", model, exc))
            continue
        if decoded.rewrite is None:
            untouched += 1
            continue
        rewrites[result_id] = (item, decoded.rewrite)
        if len(rewrites) >= batch_size:
            flush()
    flush()
    return UpgradeReport(
        location=backend.location,
        prefix=normalized_prefix(prefix),
        dry_run=dry_run,
        checked=checked,
        converted=converted,
        untouched=untouched,
        failed=failed,
        changed=changed,
    )


def _failure(
    result_id: str, kind: UpgradeFailureKind, model: str, exc: Exception
) -> UpgradeFailure:
    return UpgradeFailure(id=result_id, kind=kind, model=model, message=str(exc))
