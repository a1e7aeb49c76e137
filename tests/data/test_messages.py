"""Message style (issue 13 item 11): every message names its file, counts agree with
their nouns, a decode error says how to give the encoding, bad CSV options fail when
the File is built, and a long CSV cell loads."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from results_flow.data import File, ForeignKey, SimpleETLFactory, schema
from results_flow.errors import CsvOptionsError, ETLConstructionError
from tests.data.conftest import RunEtl


class Parent(BaseModel):
    id: int
    email: str


class Child(BaseModel):
    id: int
    parent_id: int


SCHEMAS = [
    schema("parents", Parent, primary_key="id", unique=["email"]),
    schema(
        "children", Child, primary_key="id", foreign_keys=[ForeignKey("parent_id", "parents", "id")]
    ),
]


def test_every_message_names_its_file_key_and_foreign_key_ones_too(run_etl: RunEtl) -> None:
    result = run_etl(
        SCHEMAS,
        {
            "parents.csv": "id,email\n1,a@x\n1,b@x\n2,a@x\n",
            "children.csv": "id,parent_id\n1,1\n2,9\n2,1\n",
        },
        message_limit=1,
    )
    messages = result.validation_result.messages
    assert {m.code for m in messages} >= {
        "duplicate_primary_key",
        "duplicate_value",
        "foreign_key_violation",
    }
    for message in messages:
        assert message.table is not None
        assert f"{message.table}.csv" in message.message, message
        assert message.file is not None and message.file.endswith(f"{message.table}.csv")


def test_a_short_row_says_1_field(run_etl: RunEtl) -> None:
    result = run_etl(SCHEMAS[:1], {"parents.csv": "id,email\n1\n2,b@x\n"})
    [short] = [m for m in result.validation_result.messages if m.code == "malformed_row"]
    assert "1 field where the header has 2 fields" in short.message


def test_a_decode_error_says_how_to_give_the_encoding(run_etl: RunEtl) -> None:
    result = run_etl(SCHEMAS[:1], {"parents.csv": "id,email\n1,zoë@x\n".encode("latin-1")})
    [message] = result.validation_result.messages
    assert message.code == "encoding_error"
    assert "encoding=" in message.message


@pytest.mark.parametrize(
    "options",
    [
        {"delimiter": ""},
        {"delimiter": ";;"},
        {"quotechar": ""},
        {"delimiter": "\n"},
        {"delimiter": "'", "quotechar": "'"},
        {"encoding": "no-such-encoding"},
    ],
)
def test_unusable_csv_options_fail_when_the_file_is_built(
    tmp_path: Path, options: dict[str, str]
) -> None:
    path = tmp_path / "parents.csv"
    path.write_text("id,email\n1,a@x\n")
    with pytest.raises(CsvOptionsError, match=next(iter(options))) as caught:
        File.from_path(path, **options)
    assert isinstance(caught.value, ETLConstructionError)
    with pytest.raises(CsvOptionsError):
        File.from_bytes(b"id,email\n", name="parents.csv", **options)


def test_a_csv_cell_longer_than_the_csv_modules_default_limit_loads(tmp_path: Path) -> None:
    long = "x" * 200_000
    path = tmp_path / "parents.csv"
    path.write_text(f'id,email\n1,"{long}"\n')
    result = SimpleETLFactory(SCHEMAS[:1]).build_pipeline([File.from_path(path)], "t").run()
    assert result.status == "success", result.validation_result.summary()
    assert result.data_source is not None
    assert result.data_source.rows("parents", Parent)[0].email == long
