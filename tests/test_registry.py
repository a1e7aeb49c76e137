"""The namespaced model registry."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from results_flow import (
    DEFAULT_NAMESPACE,
    ModelRegistryError,
    ResultsManager,
    UnknownModelError,
    clear_registry,
    get_model_class,
    register_model,
)


def make_users() -> tuple[type[BaseModel], type[BaseModel]]:
    @register_model
    class User(BaseModel):
        name: str

    @register_model(namespace="analytics")
    class User(BaseModel):  # type: ignore[no-redef]  # noqa: F811 - same name, other namespace
        user_id: str
        visit_count: int

    return get_model_class("User"), get_model_class("User", namespace="analytics")


def test_same_class_name_in_two_namespaces_round_trips_to_the_right_class() -> None:
    plain, analytics = make_users()
    assert plain is not analytics
    rm = ResultsManager("memory://")
    rm.set("u/plain", plain(name="a"))
    rm.set("u/analytics", analytics(user_id="7", visit_count=3))
    assert type(rm.get("u/plain")) is plain
    assert type(rm.get("u/analytics")) is analytics
    assert rm.record("u/analytics").namespace == "analytics"
    assert rm.record("u/plain").namespace == DEFAULT_NAMESPACE


def test_register_model_call_forms() -> None:
    class A(BaseModel):
        x: int

    assert register_model(A) is A
    assert register_model(A, namespace="ns2") is A
    assert get_model_class("A") is A and get_model_class("A", "ns2") is A


def test_other_class_under_a_taken_name_is_refused() -> None:
    make_users()
    other_module = type(
        "User", (BaseModel,), {"__module__": "elsewhere", "__annotations__": {"z": int}}
    )
    with pytest.raises(ModelRegistryError, match="already taken"):
        register_model(other_module)


def test_not_a_model_is_refused() -> None:
    with pytest.raises(ModelRegistryError, match="BaseModel"):
        register_model(dict)  # type: ignore[type-var]


def test_unknown_name_names_name_and_namespace() -> None:
    with pytest.raises(UnknownModelError, match="'Nope'.*'nowhere'"):
        get_model_class("Nope", namespace="nowhere")


def test_clear_registry_by_namespace() -> None:
    make_users()
    clear_registry("analytics")
    assert get_model_class("User")
    with pytest.raises(UnknownModelError):
        get_model_class("User", namespace="analytics")
