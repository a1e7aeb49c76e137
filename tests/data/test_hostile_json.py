"""A JSON input file that is hostile to a recursive parser fails the result with a
message naming the file, never a bare RecursionError or ValueError (issue 21 item 5)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from results_flow.data import schema
from tests.data.conftest import RunEtl


class Row(BaseModel):
    id: int
    name: str


ROWS_JSON = schema("rows", Row, format="json", primary_key="id")


@pytest.mark.parametrize(
    "content",
    [
        '[{"id": 1, "name": "a", "deep": ' + "[" * 5_000 + "]" * 5_000 + "}]",  # ~10 KB
        '[{"id": ' + "9" * 5_000 + ', "name": "a"}]',  # over int()'s 4,300 digits
        "[" * 100_000,
    ],
    ids=["nested 5000 levels", "integer of 5000 digits", "100000 open brackets"],
)
def test_a_hostile_json_input_is_a_message(run_etl: RunEtl, content: str) -> None:
    result = run_etl([ROWS_JSON], {"rows.json": content})
    assert result.status == "failed"
    [message] = result.validation_result.messages
    assert message.code == "malformed_json" and "rows.json" in message.message, message


def test_a_plain_json_input_still_loads(run_etl: RunEtl) -> None:
    result = run_etl([ROWS_JSON], {"rows.json": '\ufeff[{"id": 1, "name": "caf\\u00e9"}]'})
    assert result.status != "failed", result.validation_result.messages
