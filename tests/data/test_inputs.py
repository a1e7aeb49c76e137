"""Files and what can go wrong with them: bad content fails the result with messages,
an ETL that cannot be built raises ETLConstructionError; nothing else escapes."""

from __future__ import annotations

import base64
import importlib.util
import os
from pathlib import Path

import pytest
from pydantic import BaseModel

from results_flow.data import File, FileFormat, SimpleETLFactory, schema
from results_flow.errors import CsvOptionsError, ETLConstructionError, SchemaDefinitionError
from tests.data.conftest import RunEtl


class Row(BaseModel):
    id: int
    name: str


ROWS = schema("rows", Row, primary_key="id")
ROWS_JSON = schema("rows", Row, format="json", primary_key="id")


def codes(result) -> set[str]:  # type: ignore[no-untyped-def]
    return set(result.validation_result.codes())


def test_csv_with_a_row_of_the_wrong_width(run_etl: RunEtl) -> None:
    result = run_etl([ROWS], {"rows.csv": "id,name\n1,a\n2,b,extra\n3,c\n"})
    assert result.status == "failed"
    [message] = [m for m in result.validation_result.messages if m.code == "malformed_row"]
    assert message.row == 2 and "3 fields where the header has 2" in message.message
    assert "line 3" in message.message


def test_row_numbers_stay_those_of_the_file_after_a_skipped_row(run_etl: RunEtl) -> None:
    result = run_etl([ROWS], {"rows.csv": "id,name\n1,a\n2\n3,c\nx,d\n"})
    [bad] = [m for m in result.validation_result.messages if m.code == "invalid_value"]
    assert bad.row == 4


def test_csv_with_an_unclosed_quote(run_etl: RunEtl) -> None:
    result = run_etl([ROWS], {"rows.csv": 'id,name\n1,"a\n'})
    assert result.status == "failed"
    assert "malformed_csv" in codes(result)


def test_csv_in_the_wrong_encoding(run_etl: RunEtl) -> None:
    result = run_etl([ROWS], {"rows.csv": "id,name\n1,Zoë\n".encode("latin-1")})
    assert result.status == "failed"
    [message] = result.validation_result.messages
    assert (message.code, message.severity.value) == ("encoding_error", "CRITICAL")
    assert "rows.csv" in message.message


def test_csv_delimiter_and_encoding_options(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes("id;name\n1;Zoë\n".encode("latin-1"))
    file = File.from_path(path, delimiter=";", encoding="latin-1")
    result = SimpleETLFactory([ROWS]).build_pipeline([file], "t").run()
    assert result.status == "success"
    assert result.data_source is not None
    assert result.data_source.rows("rows") == [Row(id=1, name="Zoë")]


def test_empty_csv(run_etl: RunEtl) -> None:
    result = run_etl([ROWS], {"rows.csv": ""})
    assert result.status == "failed" and codes(result) == {"empty_file"}


def test_header_only_csv_loads_an_empty_table(run_etl: RunEtl) -> None:
    result = run_etl([ROWS], {"rows.csv": "id,name\n"})
    assert result.status == "success"
    assert result.data_source is not None and result.data_source.rows("rows") == []


def test_duplicate_header_column(run_etl: RunEtl) -> None:
    result = run_etl([ROWS], {"rows.csv": "id,name,name\n1,a,b\n"})
    assert "duplicate_column" in codes(result) and result.status == "failed"


def test_malformed_json(run_etl: RunEtl) -> None:
    result = run_etl([ROWS_JSON], {"rows.json": '[{"id": 1, "name": "a"'})
    assert result.status == "failed"
    [message] = result.validation_result.messages
    assert message.code == "malformed_json" and "line 1" in message.message


@pytest.mark.parametrize(
    ("content", "code"),
    [
        ('"just a string"', "unexpected_structure"),
        ('{"other": []}', "missing_table"),
        ('{"rows": {"id": 1}}', "unexpected_structure"),
        ('[{"id": 1, "name": "a"}, 7]', "malformed_row"),
        ('[{"id": 1}]', "missing_column"),
        ('[{"id": 1, "name": "a"}, {"id": 2}]', "missing_value"),
    ],
)
def test_json_of_the_wrong_shape(run_etl: RunEtl, content: str, code: str) -> None:
    result = run_etl([ROWS_JSON], {"rows.json": content})
    assert result.status == "failed"
    assert code in codes(result)


def test_random_bytes_never_raise(run_etl: RunEtl) -> None:
    noise = os.urandom(4096)
    assert run_etl([ROWS], {"rows.csv": noise}).status == "failed"
    assert run_etl([ROWS_JSON], {"rows.json": noise}).status == "failed"


def test_file_without_a_schema_cannot_be_built(tmp_path: Path) -> None:
    (tmp_path / "other.csv").write_text("id\n1\n")
    with pytest.raises(ETLConstructionError, match="no schema for file.*'other'"):
        SimpleETLFactory([ROWS]).build_pipeline([File.from_path(tmp_path / "other.csv")], "t")


def test_missing_file_cannot_be_built(tmp_path: Path) -> None:
    with pytest.raises(ETLConstructionError, match=r"rows\.csv does not exist"):
        SimpleETLFactory([ROWS]).build_pipeline([File.from_path(tmp_path / "rows.csv")], "t")


def test_declared_file_not_given_cannot_be_built(tmp_path: Path) -> None:
    other = schema("other", Row)
    (tmp_path / "rows.csv").write_text("id,name\n1,a\n")
    factory = SimpleETLFactory([ROWS, other])
    with pytest.raises(ETLConstructionError, match="'other' not given"):
        factory.build_pipeline([File.from_path(tmp_path / "rows.csv")], "t")
    partial = SimpleETLFactory([ROWS, other], require_all_files=False)
    assert partial.build_pipeline([File.from_path(tmp_path / "rows.csv")], "t").run().succeeded


def test_format_mismatch_cannot_be_built(tmp_path: Path) -> None:
    (tmp_path / "rows.json").write_text("[]")
    with pytest.raises(ETLConstructionError, match="is JSON but schema 'rows' expects CSV"):
        SimpleETLFactory([ROWS]).build_pipeline([File.from_path(tmp_path / "rows.json")], "t")


@pytest.mark.skipif(
    importlib.util.find_spec("openpyxl") is not None, reason="openpyxl is installed"
)
def test_xlsx_without_openpyxl_cannot_be_built(tmp_path: Path) -> None:
    (tmp_path / "rows.xlsx").write_bytes(b"PK")
    with pytest.raises(ETLConstructionError, match=r"results-flow\[xlsx\]"):
        SimpleETLFactory([schema("rows", Row, format="xlsx")]).build_pipeline(
            [File.from_path(tmp_path / "rows.xlsx")], "t"
        )


def test_data_uri_upload() -> None:
    payload = base64.b64encode("id,name\n1,Zoë\n".encode("latin-1")).decode()
    file = File.from_data_uri(f"data:text/csv;charset=latin-1;base64,{payload}", name="rows")
    assert (file.name, file.format, file.csv.encoding) == ("rows", FileFormat.CSV, "latin-1")
    result = SimpleETLFactory([ROWS]).build_pipeline({"rows": file}, "t").run()
    assert result.succeeded and result.data_source is not None
    assert result.data_source.rows("rows") == [Row(id=1, name="Zoë")]


def test_data_uri_json_named_with_suffix() -> None:
    payload = base64.b64encode(b'[{"id": 2, "name": "b"}]').decode()
    file = File.from_data_uri(f"data:application/octet-stream;base64,{payload}", name="rows.json")
    assert (file.name, file.format) == ("rows", FileFormat.JSON)
    assert SimpleETLFactory([ROWS_JSON]).build_pipeline([file], "t").run().succeeded


@pytest.mark.parametrize(
    ("uri", "match"),
    [("data:text/csv;base64,@@@", "broken base64"), ("https://x/rows.csv", "not a data URI")],
)
def test_bad_data_uri(uri: str, match: str) -> None:
    with pytest.raises(ETLConstructionError, match=match):
        File.from_data_uri(uri, name="rows")


@pytest.mark.parametrize(
    "codec", ["zlib_codec", "hex_codec", "rot13", "base64_codec", "bz2_codec", "uu_codec"]
)
def test_a_data_uri_with_a_non_text_charset_is_refused_when_the_file_is_built(
    tmp_path: Path, codec: str
) -> None:
    """Regression (issue 21 #7): these passed File and raised a bare LookupError in etl_data."""
    payload = base64.b64encode(b"id,name\n1,a\n").decode()
    with pytest.raises(CsvOptionsError, match=f"encoding='{codec}': not a text encoding"):
        File.from_data_uri(f"data:text/csv;charset={codec};base64,{payload}", name="rows")
    with pytest.raises(CsvOptionsError, match="not a text encoding"):
        File.from_bytes(b"id,name\n", name="rows.csv", encoding=codec)
    (tmp_path / "rows.csv").write_text("id,name\n1,a\n")
    with pytest.raises(CsvOptionsError, match="not a text encoding"):
        File.from_path(tmp_path / "rows.csv", encoding=codec)


def test_schema_declaring_unknown_fields_is_refused() -> None:
    with pytest.raises(SchemaDefinitionError, match="Row has no field.*nope"):
        schema("rows", Row, primary_key="nope")


def test_unknown_format_is_refused() -> None:
    with pytest.raises(SchemaDefinitionError, match="unknown file format 'parquet'"):
        schema("rows", Row, format="parquet")


def test_csv_file_schema_holds_one_table() -> None:
    from results_flow.data import FileSchema, TableSchema

    with pytest.raises(SchemaDefinitionError, match="use JSON for several"):
        FileSchema("f", "csv", [TableSchema("a", Row), TableSchema("b", Row)])


def test_foreign_key_to_an_undeclared_table_is_refused() -> None:
    from results_flow.data import ForeignKey

    bad = schema("rows", Row, foreign_keys=[ForeignKey("id", "ghosts", "id")])
    with pytest.raises(SchemaDefinitionError, match="unknown table 'ghosts'"):
        SimpleETLFactory([bad])


def test_in_memory_file_names_lose_only_a_format_suffix() -> None:
    assert File.from_bytes(b"", name="orders.csv").name == "orders"
    assert File.from_bytes(b"", name="report.2024", format="csv").name == "report.2024"


def test_whole_csv_extraction_is_the_stream_read_to_its_end(tmp_path: Path) -> None:
    """The whole-file reader and the streamed one are one reader: same rows, numbers and
    messages, and a file cut short by a CRITICAL fault gives no table."""
    from results_flow.data.extract import CsvExtractor
    from results_flow.data.messages import ValidationResult
    from results_flow.data.schemas import FileSchema

    class Row(BaseModel):
        a: int
        b: str | None = None

    file_schema: FileSchema = schema("rows", Row)
    path = tmp_path / "rows.csv"
    path.write_text("a,b\n1,x\n2\n\n3,\n4,y\n")
    extractor = CsvExtractor(File.from_path(path), file_schema)

    whole_found, streamed_found = ValidationResult(), ValidationResult()
    [whole] = extractor.extract(whole_found)
    pieces = list(extractor.chunks(streamed_found, 2))

    assert whole.rows == [r for p in pieces for r in p.rows]
    assert whole.rows == [{"a": "1", "b": "x"}, {"a": "3", "b": None}, {"a": "4", "b": "y"}]
    assert whole.row_numbers == [n for p in pieces for n in p.row_numbers or ()] == [1, 3, 4]
    assert whole_found.messages == streamed_found.messages
    assert [m.row for m in whole_found.messages] == [2]

    path.write_bytes(b"a,b\n1,x\n2,\xff\n")  # not UTF-8 in the second row
    cut = ValidationResult()
    assert extractor.extract(cut) == []
    assert [m.code for m in cut.messages] == ["encoding_error"]
