"""Reading the stored document: the data is kept as written, never dumped back, and
every other layout or damage reads as before (issue 12 item 3)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from results_flow import Record, ResultsManager
from results_flow.errors import CorruptRecordError
from tests.backends.models import Person
from tests.test_maintenance import as_tuple

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
#: Data as PostgreSQL's jsonb gives it back, with a nested "data" key, and metadata
#: with one too: neither may be taken for the record's own data.
NESTED = '{"list": [1, 2], "data": {"x": 1}, "text": "a, \\"data\\": b"}'
RECORD = Record("Person", "people", NESTED, WHEN, WHEN, {"run": "r1", "data": {"y": 2}})


def test_a_written_document_reads_back_with_its_data_text_unchanged() -> None:
    document = RECORD.to_document()
    assert document.count(', "data": ') == 3
    for text in (document, document.encode("utf-8"), document + "\n"):
        assert Record.from_document(text, "r.json") == RECORD


def test_other_layouts_read_the_same_record() -> None:
    doc = json.loads(RECORD.to_document())
    data_first = {"data": doc["data"], **{k: v for k, v in doc.items() if k != "data"}}
    metadata_last = {**{k: v for k, v in doc.items() if k != "metadata"}, "metadata": {}}
    layouts = [
        json.dumps(doc, indent=2),
        json.dumps(doc, separators=(",", ":")),
        json.dumps(data_first),
        json.dumps(doc).encode("utf-16"),
    ]
    for text in layouts:
        assert as_tuple(Record.from_document(text, "r.json")) == as_tuple(RECORD)
    after = Record.from_document(json.dumps(metadata_last), "r.json")
    assert as_tuple(after) == (*as_tuple(RECORD)[:-1], {})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # cut inside the data, yet ending in a brace
        (RECORD.to_document()[:-2] + "}", "is not valid JSON"),
        (RECORD.to_document()[:-1] + "} x", "is not valid JSON"),
        (RECORD.to_document().replace(NESTED, "{nope}"), "is not valid JSON"),
        (
            RECORD.to_document().replace(', "data": ' + NESTED, ""),
            "is a damaged results_flow record",
        ),
        (
            RECORD.to_document().replace('"results_flow/1"', '"other/1"'),
            "is not a results_flow record",
        ),
        ('[1, 2, {"data": 3}]', "is not a results_flow record"),
        (b"\xff\xfe{", "is not valid JSON"),
    ],
)
def test_damaged_or_foreign_documents_are_named(text: str | bytes, message: str) -> None:
    with pytest.raises(CorruptRecordError, match=f"r.json {message}"):
        Record.from_document(text, "r.json")


def test_the_file_store_reads_a_record_in_another_layout(tmp_path: Path) -> None:
    rm = ResultsManager(tmp_path)
    rm.set("a/b", Person(name="Ann", age=3))
    path = tmp_path / "a" / "b.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({"data": doc.pop("data"), **doc}, indent=1))
    assert rm.get("a/b", Person) == Person(name="Ann", age=3)
    path.write_text(path.read_text()[:-3] + "}")
    with pytest.raises(CorruptRecordError, match=f"{path} is not valid JSON"):
        rm.get("a/b", Person)
