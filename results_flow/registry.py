"""The model registry: which Pydantic class a stored type tag means, per namespace.

A record keeps its model's class name and namespace; ``get`` without a class looks
both up here. The same class name may live in two namespaces. Registering another
class under a taken (namespace, name) is refused unless it is the same class
re-imported (same module and qualified name), as happens on reload.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import TypeVar, overload

from pydantic import BaseModel

from results_flow.errors import ModelRegistryError, UnknownModelError

DEFAULT_NAMESPACE = "default"

ModelT = TypeVar("ModelT", bound=type[BaseModel])

_lock = threading.Lock()
_models: dict[tuple[str, str], type[BaseModel]] = {}
_namespaces: dict[type[BaseModel], str] = {}


@overload
def register_model(model_class: ModelT, *, namespace: str = DEFAULT_NAMESPACE) -> ModelT: ...
@overload
def register_model(
    model_class: None = None, *, namespace: str = DEFAULT_NAMESPACE
) -> Callable[[ModelT], ModelT]: ...
def register_model(
    model_class: ModelT | None = None, *, namespace: str = DEFAULT_NAMESPACE
) -> ModelT | Callable[[ModelT], ModelT]:
    """Register a Pydantic model so stored records of it can be read back without a class.

    Usable as ``@register_model``, ``@register_model(namespace="x")`` or
    ``register_model(Model, namespace="x")``.

    Raises:
        ModelRegistryError: not a Pydantic model, or another class holds the name.
    """

    def register(cls: ModelT) -> ModelT:
        _register(cls, namespace)
        return cls

    return register if model_class is None else register(model_class)


def ensure_registered(cls: type[BaseModel], namespace: str) -> None:
    """Register ``cls`` under ``namespace`` too, unless it already is; the namespace its
    instances are stored under by default changes only if it had none.

    Raises:
        ModelRegistryError: not a Pydantic model, or another class holds the name.
    """
    with _lock:
        if _models.get((namespace, cls.__name__)) is cls:
            return
    _register(cls, namespace, primary=False)


def _register(cls: type[BaseModel], namespace: str, *, primary: bool = True) -> None:
    if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
        raise ModelRegistryError(f"register_model needs a pydantic BaseModel subclass, got {cls!r}")
    if not namespace:
        raise ModelRegistryError(f"empty namespace when registering {cls.__name__}")
    key = (namespace, cls.__name__)
    with _lock:
        taken = _models.get(key)
        if taken is not None and taken is not cls and not _same_definition(taken, cls):
            raise ModelRegistryError(
                f"model name {cls.__name__!r} in namespace {namespace!r} is already taken by "
                f"{_origin(taken)}; register {_origin(cls)} in another namespace"
            )
        _models[key] = cls
        if primary or cls not in _namespaces:
            _namespaces[cls] = namespace


def get_model_class(name: str, namespace: str = DEFAULT_NAMESPACE) -> type[BaseModel]:
    """Return the model registered under ``name`` in ``namespace``.

    Raises:
        UnknownModelError: nothing is registered under that name and namespace.
    """
    with _lock:
        cls = _models.get((namespace, name))
    if cls is None:
        raise UnknownModelError(
            f"no model {name!r} is registered in namespace {namespace!r}; "
            f"decorate the class with @register_model(namespace={namespace!r})"
        )
    return cls


def namespace_of(cls: type[BaseModel]) -> str:
    """The namespace a class was last registered in, or ``DEFAULT_NAMESPACE``."""
    with _lock:
        return _namespaces.get(cls, DEFAULT_NAMESPACE)


def clear_registry(namespace: str | None = None) -> None:
    """Forget every registered model, or only those of one namespace."""
    with _lock:
        for key in [k for k in _models if namespace is None or k[0] == namespace]:
            cls = _models.pop(key)
            if _namespaces.get(cls) == key[0]:
                del _namespaces[cls]


def _origin(cls: type[BaseModel]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _same_definition(a: type[BaseModel], b: type[BaseModel]) -> bool:
    """The same class imported again: by the same name (a reload), or from the same file
    under two module names (a script run as ``__main__`` and imported by name)."""
    if _origin(a) == _origin(b):
        return True
    return a.__qualname__ == b.__qualname__ and _module_file(a) == _module_file(b) is not None


def _module_file(cls: type[BaseModel]) -> str | None:
    module = sys.modules.get(cls.__module__)
    path = getattr(module, "__file__", None)
    return os.path.realpath(path) if isinstance(path, str) else None
