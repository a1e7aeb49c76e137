"""Regression: dead code removed by issue 11 item 6 stays gone."""

from __future__ import annotations

import inspect

from results_flow.prefect import naming


def test_naming_has_no_unused_bind_arguments() -> None:
    assert not hasattr(naming, "bind_arguments")


def test_id_recipe_call_takes_no_unused_function() -> None:
    assert "fn" not in inspect.signature(naming.IdRecipe.call).parameters
