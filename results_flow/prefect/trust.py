"""The trust gate of the Prefect layer: what a stored Prefect record may make this process load.

Prefect loads a result record with the serializer the record itself names, not the one
the task set, and its serializers import whatever a record names: ``pickle`` runs its
payload, ``picklelib`` and ``compressionlib`` are imported, Prefect's ``json`` decoder
imports the module of every ``__class__`` and ``__exc_type__`` and validates with that
class, and a record that names no serializer is unpickled. Every decision on what may be
loaded is made here, once, and used by ``ResultsStorage`` (reads and writes) and by
``PydanticSerializer`` (the types it rebuilds, its ``model=``).

Trusted, by construction (nothing is imported or found by name in ``sys.modules``
unless it is one of these):

* serializers: ``json`` with Prefect's defaults (standard ``json``, Prefect's own
  object decoder, no ``loads_kwargs``) and ``results_flow_pydantic``, named explicitly
  in a whole Prefect record (``{"metadata": {"serializer": ...}, "result": "..."}``);
* types: models registered with ``register_model``, the plain types in ``PLAIN_TYPES``,
  the standard containers, and, for ``json`` records, builtin exceptions.
"""

from __future__ import annotations

import builtins
import datetime as dt
import json
import pathlib
import sys
import types
from decimal import Decimal
from typing import Any
from uuid import UUID

# ResultRecord is what Prefect validates a stored record as; prefect.results is where
# Prefect's documentation imports it from, without listing it in an __all__.
from prefect.results import ResultRecord  # type: ignore[attr-defined]
from pydantic import BaseModel, ValidationError

from results_flow.errors import UnknownModelError
from results_flow.registry import get_model_class, namespace_of

SERIALIZER_TYPE = "results_flow_pydantic"
#: Serializers whose records are read and written without ``allow_pickle``.
TRUSTED_SERIALIZERS = ("json", SERIALIZER_TYPE)
#: Classes besides registered models that a stored type may name.
PLAIN_TYPES: frozenset[type] = frozenset(
    {
        int,
        float,
        str,
        bool,
        bytes,
        type(None),
        dt.datetime,
        dt.date,
        dt.time,
        dt.timedelta,
        UUID,
        Decimal,
        pathlib.Path,
        pathlib.PurePath,
        pathlib.PosixPath,
        pathlib.PurePosixPath,
        pathlib.WindowsPath,
        pathlib.PureWindowsPath,
    }
)
_PLAIN_BY_NAME = {f"{cls.__module__}.{cls.__qualname__}": cls for cls in PLAIN_TYPES}

_JSON_DEFAULTS: dict[str, Any] = {
    "jsonlib": "json",
    "object_decoder": "prefect.serializers.prefect_json_object_decoder",
    "loads_kwargs": {},
}
# Fields that only matter when writing; any value is harmless on load.
_JSON_WRITE_FIELDS = frozenset({"type", "object_encoder", "dumps_kwargs"})
_PYDANTIC_FIELDS = frozenset({"type", "model"})


def record_refusal(content: bytes, *, reading: bool) -> str | None:
    """Why a Prefect record may not be kept or loaded (naming what it names), or None.

    A record is trusted when it is a whole Prefect record that names a trusted
    serializer explicitly and validates as Prefect's ``ResultRecord`` (else Prefect
    would load it with its fallback serializer, pickle by default). When ``reading``,
    a ``json`` record's result may also name only trusted classes under ``__class__``
    and builtin exceptions under ``__exc_type__``; a ``results_flow_pydantic`` result
    is checked by ``PydanticSerializer.loads`` through ``trusted_class``.
    """
    try:
        doc = json.loads(content, object_pairs_hook=_no_duplicate_keys)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return "no serializer (its content is not a JSON record)"
    if not isinstance(doc, dict) or set(doc) != {"metadata", "result"}:
        return "no serializer (it is not a Prefect record of 'metadata' and 'result')"
    metadata, result = doc["metadata"], doc["result"]
    serializer = metadata.get("serializer") if isinstance(metadata, dict) else None
    if not isinstance(serializer, dict):
        return "no serializer (Prefect would unpickle it)"
    reason = serializer_refusal(serializer)
    if reason is None and not isinstance(result, str):
        reason = f"a result that is no serializer's text (a {type(result).__name__})"
    if reason is None:
        try:
            ResultRecord.model_validate_json(content)
        except ValidationError:
            reason = (
                "no serializer Prefect can read (its metadata does not validate, so "
                "Prefect would load it with its fallback serializer, pickle by default)"
            )
    if reason is None and reading and serializer["type"] == "json":
        reason = _json_result_refusal(result)
    return reason


def serializer_refusal(config: dict[str, Any]) -> str | None:
    """Why a serializer's config (a record's ``metadata.serializer``) is not trusted,
    or None."""
    name = config.get("type")
    if name == "json":
        custom = [
            key
            for key, value in config.items()
            if key not in _JSON_WRITE_FIELDS
            and (key not in _JSON_DEFAULTS or value != _JSON_DEFAULTS[key])
            and not (key == "object_decoder" and value is None)
        ]
        return f"a 'json' serializer with its own {', '.join(custom)}" if custom else None
    if name == SERIALIZER_TYPE:
        extra = sorted(set(config) - _PYDANTIC_FIELDS)
        if extra:
            return f"a {SERIALIZER_TYPE} serializer with unknown fields {extra}"
        model = config.get("model")
        if model is None:
            return None
        try:
            trusted_model(model)
        except UnknownModelError:
            return f"a {SERIALIZER_TYPE} serializer whose model {model!r} is not a registered model"
        return None
    return f"the serializer {name!r}"


def trusted_class(name: object) -> type:
    """The class a stored type name means: a plain type or a registered model.

    ``name`` is ``module:qualname`` (a recorded type tree) or ``module.qualname``. The
    class is found among modules already imported, without importing anything or
    calling a module's ``__getattr__``, and must be registered or plain.

    Raises:
        UnknownModelError: the name means no plain type and no registered model.
    """
    if not isinstance(name, str):
        raise UnknownModelError(f"a stored type name must be text, not {name!r}")
    dotted = name.replace(":", ".", 1)
    plain = _PLAIN_BY_NAME.get(dotted)
    if plain is not None:
        return plain
    found = _imported(name)
    if isinstance(found, type) and _registered(found):
        return found
    raise UnknownModelError(
        f"a stored result names the type {dotted!r}, which is not a model registered with "
        "register_model or a plain type; results_flow never imports or trusts a class a "
        "stored record names: register it, or annotate the task's return type"
    )


def trusted_model(name: object) -> type[BaseModel]:
    """The registered model a ``PydanticSerializer(model=...)`` names.

    Raises:
        UnknownModelError: it names no registered model.
    """
    try:
        cls = trusted_class(name)
    except UnknownModelError:
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
        raise UnknownModelError(
            f"PydanticSerializer(model={name!r}) names no model registered with "
            "register_model; register the class (a serializer's model is never imported)"
        )
    return cls


def _imported(name: str) -> object:
    """The object ``name`` means in a module already imported, or None."""
    module_name, colon, qualname = name.partition(":")
    if colon:
        splits = [(module_name, qualname)]
    else:
        parts = name.split(".")
        splits = [(".".join(parts[:i]), ".".join(parts[i:])) for i in range(len(parts) - 1, 0, -1)]
    for module_name, qualname in splits:
        found: object = sys.modules.get(module_name)
        for part in qualname.split(".") if found is not None else []:
            # vars(), not getattr: a module's __getattr__ may import (lazy attributes).
            found = vars(found).get(part) if isinstance(found, types.ModuleType | type) else None
        if found is not None:
            return found
    return None


def _registered(cls: object) -> bool:
    if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
        return False
    try:
        return get_model_class(cls.__name__, namespace_of(cls)) is cls
    except UnknownModelError:
        return False


def _json_result_refusal(result: str) -> str | None:
    """Why Prefect's json decoder may not read ``result`` (a class or exception it names
    that is not trusted), or None."""
    try:
        parsed = json.loads(result)
    except (ValueError, RecursionError):
        return "a 'json' result that is not JSON"
    pending = [parsed]
    while pending:
        value = pending.pop()
        if isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, dict):
            pending.extend(value.values())
            if "__class__" in value:
                if not _trusted_json_class(value["__class__"]):
                    return f"the class {value['__class__']!r} in a 'json' result"
            elif "__exc_type__" in value and not _builtin_exception(value["__exc_type__"]):
                return f"the exception type {value['__exc_type__']!r} in a 'json' result"
    return None


def _trusted_json_class(name: object) -> bool:
    # Prefect imports a dotted name; a ':' would mean something else to trusted_class.
    if not isinstance(name, str) or ":" in name:
        return False
    try:
        trusted_class(name)
    except UnknownModelError:
        return False
    return True


def _builtin_exception(name: object) -> bool:
    if not isinstance(name, str) or not name.startswith("builtins."):
        return False
    found = vars(builtins).get(name.removeprefix("builtins."))
    return isinstance(found, type) and issubclass(found, BaseException)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers could keep different duplicates; a record with any is refused.
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate keys")
    return dict(pairs)
