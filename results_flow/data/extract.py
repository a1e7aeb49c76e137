"""Extraction: file bytes to raw tables of rows (column name -> value), nothing typed yet.

Extractors never raise for bad content: an unreadable file, a broken encoding or
malformed CSV/JSON becomes a CRITICAL message, a row with the wrong number of fields
an ERROR, and extraction goes on with what it can read. Empty CSV cells become None.
"""

from __future__ import annotations

import csv
import io
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import IO, Any

from pydantic import BaseModel, Field

from results_flow.data.files import File
from results_flow.data.messages import Severity, ValidationResult
from results_flow.data.schemas import FileFormat, FileSchema
from results_flow.errors import ETLConstructionError
from results_flow.records import load_json


class RawTable(BaseModel):
    """One table as read from its file: column names in file order and rows of values."""

    name: str
    file: str
    columns: list[str]
    rows: list[dict[str, Any]] = Field(default_factory=list)
    row_numbers: list[int] | None = Field(
        default=None, description="Each row's number in the file when rows were skipped."
    )

    def row_number(self, index: int) -> int:
        """The 1-based number in the file of the row at ``index``."""
        return self.row_numbers[index] if self.row_numbers is not None else index + 1


class ExtractedData(BaseModel):
    """The output of extraction: raw tables by name and what extraction found."""

    tables: dict[str, RawTable] = Field(default_factory=dict)
    validation: ValidationResult = Field(default_factory=ValidationResult)


class Extractor(ABC):
    """Reads one file into the raw tables its schema declares."""

    def __init__(self, file: File, schema: FileSchema) -> None:
        self.file = file
        self.schema = schema

    @abstractmethod
    def extract(self, result: ValidationResult) -> list[RawTable]:
        """The tables read from the file; problems go into ``result``, never raised."""

    def chunks(self, result: ValidationResult, size: int) -> Iterator[RawTable]:
        """The tables in pieces of at most ``size`` rows, as the file is read; a format
        that cannot be read in pieces gives each table whole."""
        yield from self.extract(result)

    def _read(self, result: ValidationResult) -> bytes | None:
        try:
            return self.file.read_bytes()
        except OSError as exc:
            result.add(
                Severity.CRITICAL,
                "unreadable_file",
                f"file {self.file.source}: cannot be read: {exc}",
                file=self.file.source,
            )
            return None

    def _decode(self, content: bytes, encoding: str, result: ValidationResult) -> str | None:
        try:
            return content.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            if self.file.format is FileFormat.CSV or self.schema.format is FileFormat.CSV:
                hint = (
                    "; give its encoding, e.g. File.from_path(path, encoding='cp1252') "
                    "or encoding='latin-1'"
                )
            else:
                hint = "; JSON files must be UTF-8"
            result.add(
                Severity.CRITICAL,
                "encoding_error",
                f"file {self.file.source}: not valid {encoding}: {exc}{hint}",
                file=self.file.source,
            )
            return None


class CsvExtractor(Extractor):
    """Reads a CSV file (header row first) into its one table."""

    def extract(self, result: ValidationResult) -> list[RawTable]:
        """The whole table: the stream of ``chunks`` read to its end in one piece.

        A file the stream gave up on (a CRITICAL message) gives no table, as rows read
        before the fault would be a table cut short.
        """
        before = len(result.messages)
        pieces = list(self.chunks(result, sys.maxsize))
        if not pieces or any(m.severity is Severity.CRITICAL for m in result.messages[before:]):
            return []
        table = pieces[0]
        numbers = table.row_numbers or []
        if not numbers or numbers[-1] == len(numbers):
            table.row_numbers = None  # numbered 1, 2, ...: no row was skipped
        return [table]

    def chunks(self, result: ValidationResult, size: int) -> Iterator[RawTable]:
        """The table in pieces of at most ``size`` rows, read as the file streams by.

        Each piece carries the file row number of every row. Problems go into
        ``result`` as in ``extract``; an unreadable, undecodable or malformed file
        ends the stream after a CRITICAL message.
        """
        table = self.schema.tables[0].name
        source = self.file.source
        options = self.file.csv
        try:
            binary: IO[bytes] = (
                self.file.path.open("rb")
                if self.file.content is None and self.file.path is not None
                else io.BytesIO(self.file.read_bytes())
            )
        except OSError as exc:
            result.add(
                Severity.CRITICAL,
                "unreadable_file",
                f"file {source}: cannot be read: {exc}",
                file=source,
            )
            return
        with binary, io.TextIOWrapper(binary, encoding=options.encoding, newline="") as text:
            _allow_cells_of(
                len(self.file.content)
                if self.file.content is not None
                else (self.file.path.stat().st_size if self.file.path is not None else 0)
            )
            reader = csv.reader(
                text, delimiter=options.delimiter, quotechar=options.quotechar, strict=True
            )
            try:
                header = next((r for r in reader if r), None)
                if header is None:
                    result.add(
                        Severity.CRITICAL,
                        "empty_file",
                        f"file {source}: no header row; the file is empty",
                        file=source,
                        table=table,
                    )
                    return
                header = [h.strip() for h in header]
                _check_header(header, source, table, result)
                width = len(header)
                rows: list[dict[str, Any]] = []
                numbers: list[int] | None = None  # kept only once a row was skipped
                number = first = 0
                sent = False
                for values in reader:
                    if not values:
                        continue
                    number += 1
                    if len(values) != width:
                        result.add(
                            Severity.ERROR,
                            "malformed_row",
                            f"file {source}, table {table!r}, row {number} "
                            f"(line {reader.line_num}): {_fields(len(values))} where the "
                            f"header has {_fields(width)}; row skipped",
                            file=source,
                            table=table,
                            row=number,
                        )
                        if numbers is None:
                            numbers = list(range(first + 1, first + len(rows) + 1))
                        continue
                    if numbers is not None:
                        numbers.append(number)
                    if "" in values:
                        rows.append({h: (v or None) for h, v in zip(header, values, strict=True)})
                    else:
                        rows.append(dict(zip(header, values, strict=True)))
                    if len(rows) >= size:
                        yield _chunk(table, source, header, rows, numbers, first)
                        sent = True
                        rows, numbers, first = [], None, number
                if rows or not sent:
                    yield _chunk(table, source, header, rows, numbers, first)
            except csv.Error as exc:
                result.add(
                    Severity.CRITICAL,
                    "malformed_csv",
                    f"file {source}, line {reader.line_num}: malformed CSV: {exc}",
                    file=source,
                    table=table,
                )
            except (UnicodeDecodeError, LookupError) as exc:
                result.add(
                    Severity.CRITICAL,
                    "encoding_error",
                    f"file {source}: not valid {options.encoding}: {exc}; give its encoding, "
                    "e.g. File.from_path(path, encoding='cp1252') or encoding='latin-1'",
                    file=source,
                )


class JsonExtractor(Extractor):
    """Reads a JSON file: a list of rows (one table) or an object of table name -> rows."""

    def extract(self, result: ValidationResult) -> list[RawTable]:
        source = self.file.source
        content = self._read(result)
        text = None if content is None else self._decode(content, "utf-8-sig", result)
        if text is None:
            return []
        try:
            document = load_json(text)  # the store's bounded reader: no RecursionError
        except ValueError as exc:  # also nested too deep, or an integer over 4,300 digits
            result.add(
                Severity.CRITICAL,
                "malformed_json",
                f"file {source}: malformed JSON: {exc}",
                file=source,
            )
            return []
        tables = self.schema.tables
        if isinstance(document, list) and len(tables) == 1:
            document = {tables[0].name: document}
        if not isinstance(document, dict):
            names = ", ".join(repr(t.name) for t in tables)
            result.add(
                Severity.CRITICAL,
                "unexpected_structure",
                f"file {source}: expected an object holding tables {names}, "
                f"found {type(document).__name__}",
                file=source,
            )
            return []
        extracted = []
        for table in tables:
            if table.name not in document:
                result.add(
                    Severity.ERROR,
                    "missing_table",
                    f"file {source}: no table {table.name!r} in the JSON object",
                    file=source,
                    table=table.name,
                )
                continue
            raw = _json_table(document[table.name], table.name, source, result)
            if raw is not None:
                extracted.append(raw)
        return extracted


class XlsxExtractor(Extractor):
    """Reads the sheet named like the table (else the first sheet) of an XLSX workbook."""

    def extract(self, result: ValidationResult) -> list[RawTable]:
        import openpyxl  # the optional xlsx extra; checked when the pipeline is built

        table = self.schema.tables[0].name
        source = self.file.source
        content = self._read(result)
        if content is None:
            return []
        try:
            book = openpyxl.load_workbook(io.BytesIO(content), read_only=True, data_only=True)
        except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds for a bad file
            result.add(
                Severity.CRITICAL,
                "malformed_xlsx",
                f"file {source}: not a readable XLSX workbook: {exc}",
                file=source,
                table=table,
            )
            return []
        sheet = book[table] if table in book.sheetnames else book.worksheets[0]
        values = [list(r) for r in sheet.iter_rows(values_only=True)]
        book.close()
        values = [r for r in values if any(v is not None and v != "" for v in r)]
        if not values:
            result.add(
                Severity.CRITICAL,
                "empty_file",
                f"file {source}: sheet {sheet.title!r} is empty",
                file=source,
                table=table,
            )
            return []
        header = [str(h).strip() if h is not None else "" for h in values[0]]
        _check_header(header, source, table, result)
        rows = [
            {h: (None if v == "" else v) for h, v in zip(header, r, strict=False) if h}
            for r in values[1:]
        ]
        return [RawTable(name=table, file=source, columns=[h for h in header if h], rows=rows)]


def extractor_for(file: File, schema: FileSchema) -> Extractor:
    """The extractor for ``file`` in the format its schema declares.

    Raises:
        ETLConstructionError: the file's own format differs from the schema's, or XLSX
            is asked for without openpyxl installed.
    """
    if file.format is not None and file.format is not schema.format:
        raise ETLConstructionError(
            f"file {file.source}: is {file.format.value.upper()} but schema "
            f"{schema.file_name!r} expects {schema.format.value.upper()}"
        )
    if schema.format is FileFormat.CSV:
        return CsvExtractor(file, schema)
    if schema.format is FileFormat.JSON:
        return JsonExtractor(file, schema)
    try:
        import openpyxl  # noqa: F401
    except ImportError as exc:
        raise ETLConstructionError(
            f"file {file.source}: reading XLSX needs openpyxl; install results-flow[xlsx]"
        ) from exc
    return XlsxExtractor(file, schema)


def _chunk(
    table: str,
    source: str,
    header: list[str],
    rows: list[dict[str, Any]],
    numbers: list[int] | None,
    before: int,
) -> RawTable:
    """One streamed piece; its rows are numbered from ``before + 1`` unless some were
    skipped, when ``numbers`` holds each row's number."""
    if numbers is None:
        numbers = list(range(before + 1, before + len(rows) + 1))
    return RawTable.model_construct(
        name=table, file=source, columns=header, rows=rows, row_numbers=numbers
    )


def _check_header(header: list[str], source: str, table: str, result: ValidationResult) -> None:
    seen: set[str] = set()
    for name in header:
        if name in seen:
            result.add(
                Severity.ERROR,
                "duplicate_column",
                f"file {source}, table {table!r}: column {name!r} appears twice in the header",
                file=source,
                table=table,
                column=name,
            )
        seen.add(name)


def _json_table(rows: Any, table: str, source: str, result: ValidationResult) -> RawTable | None:
    if not isinstance(rows, list):
        result.add(
            Severity.CRITICAL,
            "unexpected_structure",
            f"file {source}: table {table!r} must be a list of objects, "
            f"found {type(rows).__name__}",
            file=source,
            table=table,
        )
        return None
    columns: dict[str, None] = {}
    kept: list[dict[str, Any]] = []
    numbers: list[int] = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            result.add(
                Severity.ERROR,
                "malformed_row",
                f"file {source}, table {table!r}, row {number}: expected an object, "
                f"found {type(row).__name__}; row skipped",
                file=source,
                table=table,
                row=number,
            )
            continue
        columns.update(dict.fromkeys(row))
        kept.append(row)
        numbers.append(number)
    skipped = numbers if len(numbers) != len(rows) else None
    return RawTable(name=table, file=source, columns=list(columns), rows=kept, row_numbers=skipped)


_FIELD_LIMIT_LOCK = threading.Lock()


def _allow_cells_of(length: int) -> None:
    """Let the csv module read a cell as long as ``length`` characters.

    Its field size limit (131,072 characters by default) is process-wide; it is only
    ever raised here, never lowered, so a cell may be as long as its file.
    """
    with _FIELD_LIMIT_LOCK:
        if csv.field_size_limit() < length:
            csv.field_size_limit(length)


def _fields(count: int) -> str:
    return f"{count} field" if count == 1 else f"{count} fields"
