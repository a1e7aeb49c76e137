"""Each validator's failure and its message; the failure threshold; message limits."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, model_validator

from results_flow.data import (
    FileSchema,
    ForeignKey,
    MissingValuesValidator,
    PrimaryKeyValidator,
    Severity,
    TableSchema,
    ValidationMessage,
    schema,
)
from tests.data.conftest import RunEtl


class Item(BaseModel):
    id: int
    name: str
    price: float
    note: str | None = None
    stock: int = 0


class Line(BaseModel):
    id: int
    item_id: int
    qty: int


ITEMS = schema("items", Item, primary_key="id", unique=["name"])
LINES = schema("lines", Line, primary_key="id", foreign_keys=[ForeignKey("item_id", "items", "id")])


def only(messages: list[ValidationMessage], code: str) -> ValidationMessage:
    found = [m for m in messages if m.code == code]
    assert len(found) == 1, [str(m) for m in messages]
    return found[0]


def test_clean_files_load_with_defaults_and_no_errors(run_etl: RunEtl) -> None:
    result = run_etl([ITEMS], {"items.csv": "id,name,price,note,stock\n1,a,1.5,,\n2,b,2,x,7\n"})
    assert result.status == "success"
    assert result.validation_result.errors == []
    assert result.data_source is not None
    rows = result.data_source.rows("items")
    assert rows == [
        Item(id=1, name="a", price=1.5, note=None, stock=0),
        Item(id=2, name="b", price=2.0, note="x", stock=7),
    ]


def test_missing_required_column_fails_with_a_message_naming_it(run_etl: RunEtl) -> None:
    result = run_etl([ITEMS], {"items.csv": "id,name\n1,a\n"})
    assert result.status == "failed"
    assert result.data_source is None
    message = only(result.validation_result.messages, "missing_column")
    assert (message.severity, message.table, message.column) == (Severity.ERROR, "items", "price")
    assert "items.csv" in message.message and "'price'" in message.message
    assert "invalid_value" not in result.validation_result.codes()  # no flood of row errors


def test_wrong_type_names_row_column_and_value(run_etl: RunEtl) -> None:
    result = run_etl([ITEMS], {"items.csv": "id,name,price\n1,a,1.5\n2,b,cheap\n"})
    assert result.status == "failed"
    message = only(result.validation_result.messages, "invalid_value")
    assert (message.severity, message.row, message.column) == (Severity.ERROR, 2, "price")
    assert "'cheap'" in message.message and "row 2" in message.message


def test_missing_value_in_required_column(run_etl: RunEtl) -> None:
    result = run_etl([ITEMS], {"items.csv": "id,name,price\n1,,1.5\n"})
    message = only(result.validation_result.messages, "missing_value")
    assert (message.row, message.column, message.severity) == (1, "name", Severity.ERROR)
    assert result.status == "failed"


def test_empty_optional_values_are_counted_at_info(run_etl: RunEtl) -> None:
    result = run_etl([ITEMS], {"items.csv": "id,name,price,note\n1,a,1,\n2,b,2,\n3,c,3,x\n"})
    assert result.status == "success"
    message = only(result.validation_result.messages, "empty_values")
    assert message.severity is Severity.INFO
    assert "2 of 3 rows" in message.message


def test_missing_values_severity_is_configurable(run_etl: RunEtl) -> None:
    result = run_etl(
        [ITEMS],
        {"items.csv": "id,name,price,note\n1,a,1,\n"},
        validators=[MissingValuesValidator(optional_severity=Severity.ERROR)],
    )
    assert result.status == "failed"
    assert only(result.validation_result.messages, "empty_values").column == "note"


def test_duplicate_primary_key(run_etl: RunEtl) -> None:
    result = run_etl(
        [schema("items", Item, format="json", primary_key="id")],
        {"items.json": '[{"id": 1, "name": "a", "price": 1}, {"id": 1, "name": "b", "price": 2}]'},
    )
    message = only(result.validation_result.messages, "duplicate_primary_key")
    assert (message.row, message.column) == (2, "id")
    assert "repeats row 1" in message.message
    assert result.status == "failed"


def test_null_in_composite_primary_key(run_etl: RunEtl) -> None:
    class Pair(BaseModel):
        a: int
        b: int | None

    result = run_etl(
        [schema("pairs", Pair, primary_key=("a", "b"))], {"pairs.csv": "a,b\n1,2\n1,\n"}
    )
    message = only(result.validation_result.messages, "null_primary_key")
    assert (message.row, message.column) == (2, "a,b")


def test_unique_columns(run_etl: RunEtl) -> None:
    result = run_etl([ITEMS], {"items.csv": "id,name,price\n1,a,1\n2,b,2\n3,a,3\n"})
    message = only(result.validation_result.messages, "duplicate_value")
    assert (message.row, message.column, message.table) == (3, "name", "items")
    assert result.status == "failed"


def test_foreign_key_violation(run_etl: RunEtl) -> None:
    result = run_etl(
        [ITEMS, LINES],
        {
            "items.csv": "id,name,price\n1,a,1\n",
            "lines.csv": "id,item_id,qty\n10,1,2\n11,9,1\n",
        },
    )
    message = only(result.validation_result.messages, "foreign_key_violation")
    assert (message.table, message.row, message.column) == ("lines", 2, "item_id")
    assert "9" in message.message and "'items'" in message.message
    assert result.status == "failed"


def test_error_threshold_is_configurable_and_bad_rows_are_left_out(run_etl: RunEtl) -> None:
    result = run_etl(
        [ITEMS, LINES],
        {
            "items.csv": "id,name,price\n1,a,1\n1,b,2\n2,c,x\n",
            "lines.csv": "id,item_id,qty\n10,1,2\n11,2,1\n",
        },
        fail_on=Severity.CRITICAL,
    )
    assert result.status == "success"
    assert result.data_source is not None
    assert [r.id for r in result.data_source.rows("items", Item)] == [1]
    assert [r.id for r in result.data_source.rows("lines", Line)] == [10]  # item 2 was invalid
    assert set(result.validation_result.codes()) >= {
        "duplicate_primary_key",
        "invalid_value",
        "foreign_key_violation",
    }


def test_warning_threshold_fails_on_warnings(run_etl: RunEtl) -> None:
    result = run_etl(
        [ITEMS], {"items.csv": "id,name,price,colour\n1,a,1,red\n"}, fail_on=Severity.INFO
    )
    assert result.status == "failed"
    assert only(result.validation_result.messages, "unknown_column").column == "colour"


def test_thresholds_given_as_strings_act_as_their_severity(run_etl: RunEtl) -> None:
    """A plain "INFO" once compared as text ("ERROR" < "INFO" < "WARNING")."""
    warned = {"items.csv": "id,name,price,colour\n1,a,1,red\n"}
    assert run_etl([ITEMS], warned, fail_on="INFO").status == "failed"
    assert run_etl([ITEMS], warned, fail_on="ERROR").status == "success"
    with pytest.raises(ValueError, match="fail_on must be a Severity or one of 'INFO'"):
        run_etl([ITEMS], warned, fail_on="info!")


def test_custom_validator_list_still_validates_types(run_etl: RunEtl) -> None:
    result = run_etl(
        [ITEMS], {"items.csv": "id,name,price\n1,a,x\n"}, validators=[PrimaryKeyValidator()]
    )
    assert result.status == "failed"
    assert "invalid_value" in result.validation_result.codes()


def test_messages_past_the_limit_are_summarized(run_etl: RunEtl) -> None:
    body = "".join(f"{i},n{i},bad\n" for i in range(50))
    result = run_etl([ITEMS], {"items.csv": "id,name,price\n" + body}, message_limit=10)
    codes = result.validation_result.codes()
    assert codes["invalid_value"] == 10
    summary = only(result.validation_result.messages, "messages_truncated")
    assert "40 more 'invalid_value'" in summary.message


def test_multi_table_json_with_foreign_key_inside_the_file(run_etl: RunEtl) -> None:
    both = FileSchema(
        "shop",
        "json",
        [
            TableSchema("items", Item, primary_key="id"),
            TableSchema(
                "lines", Line, primary_key="id", foreign_keys=[ForeignKey("item_id", "items", "id")]
            ),
        ],
    )
    result = run_etl(
        [both],
        {
            "shop.json": '{"items": [{"id": 1, "name": "a", "price": 2}],'
            ' "lines": [{"id": 5, "item_id": 1, "qty": 3}, {"id": 6, "item_id": 2, "qty": 1}]}'
        },
    )
    assert only(result.validation_result.messages, "foreign_key_violation").row == 2


@pytest.mark.parametrize("severity", list(Severity))
def test_severity_order(severity: Severity) -> None:
    assert Severity.INFO <= severity <= Severity.CRITICAL


def test_model_level_check_fails_the_row_without_a_column(run_etl: RunEtl) -> None:
    class Span(BaseModel):
        start: int
        end: int

        @model_validator(mode="after")
        def ordered(self) -> Span:
            if self.end < self.start:
                raise ValueError("end before start")
            return self

    result = run_etl([schema("spans", Span)], {"spans.csv": "start,end\n1,2\n5,3\n"})
    message = only(result.validation_result.messages, "invalid_value")
    assert (message.row, message.column) == (2, None)
    assert "end before start" in message.message
