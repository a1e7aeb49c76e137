"""Files handed to an ETL run: from a path on disk or from uploaded content.

``File.from_path("orders.csv")`` reads lazily, when the pipeline extracts it;
``File.from_data_uri("data:text/csv;base64,...", name="orders")`` takes what a web
upload gives. CSV options (delimiter, quote character, encoding) travel with the file.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote_to_bytes

from results_flow.data.schemas import FileFormat
from results_flow.errors import CsvOptionsError, ETLConstructionError

_MIME_FORMATS = {
    "text/csv": FileFormat.CSV,
    "application/csv": FileFormat.CSV,
    "text/plain": FileFormat.CSV,
    "application/json": FileFormat.JSON,
    "text/json": FileFormat.JSON,
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": FileFormat.XLSX,
}


@dataclass(frozen=True)
class CsvOptions:
    """How a CSV file is written: delimiter, quote character and text encoding."""

    delimiter: str = ","
    quotechar: str = '"'
    encoding: str = "utf-8-sig"
    """The default reads UTF-8 with or without a byte-order mark."""

    def __post_init__(self) -> None:
        for option, value in (("delimiter", self.delimiter), ("quotechar", self.quotechar)):
            if not isinstance(value, str) or len(value) != 1 or value in "\r\n":
                raise CsvOptionsError(
                    f"CSV {option}={value!r}: give exactly one character, not a line break"
                )
        if self.delimiter == self.quotechar:
            raise CsvOptionsError(
                f"CSV delimiter and quotechar are both {self.delimiter!r}; they must differ"
            )
        try:
            codec = codecs.lookup(self.encoding)
        except (LookupError, TypeError) as exc:
            raise CsvOptionsError(f"CSV encoding={self.encoding!r}: unknown encoding") from exc
        # zlib_codec, hex_codec, rot13...: codecs that str.decode refuses with a LookupError.
        if not getattr(codec, "_is_text_encoding", True):
            raise CsvOptionsError(
                f"CSV encoding={self.encoding!r}: not a text encoding (give one such as "
                "'utf-8' or 'latin-1')"
            )


@dataclass(frozen=True)
class File:
    """A file to extract: a name, its format, and a path or its content.

    Build it with ``from_path``, ``from_data_uri`` or ``from_bytes``.
    """

    name: str
    format: FileFormat | None = None
    path: Path | None = None
    content: bytes | None = field(default=None, repr=False)
    csv: CsvOptions = field(default_factory=CsvOptions)

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        format: str | FileFormat | None = None,
        delimiter: str = ",",
        quotechar: str = '"',
        encoding: str = "utf-8-sig",
    ) -> File:
        """A file on disk, named by its stem unless ``name`` is given; read at extraction."""
        where = Path(path)
        fmt = FileFormat.parse(format) if format else _format_of(where.suffix)
        return cls(
            name=name or where.stem,
            format=fmt,
            path=where,
            csv=CsvOptions(delimiter, quotechar, encoding),
        )

    @classmethod
    def from_bytes(
        cls,
        content: bytes,
        *,
        name: str,
        format: str | FileFormat | None = None,
        delimiter: str = ",",
        quotechar: str = '"',
        encoding: str = "utf-8-sig",
    ) -> File:
        """A file held in memory, named ``name`` without a format suffix (``orders.csv``
        becomes ``orders``); the format comes from ``format`` or that suffix."""
        named = _format_of(Path(name).suffix)
        fmt = FileFormat.parse(format) if format else named
        return cls(
            name=Path(name).stem if named else name,  # "orders.csv" -> "orders"
            format=fmt,
            content=content,
            csv=CsvOptions(delimiter, quotechar, encoding),
        )

    @classmethod
    def from_data_uri(
        cls,
        uri: str,
        *,
        name: str,
        format: str | FileFormat | None = None,
        delimiter: str = ",",
        quotechar: str = '"',
        encoding: str | None = None,
    ) -> File:
        """A file from a ``data:`` URI (``data:text/csv;base64,...``), as uploads give it.

        The format comes from ``format``, else the MIME type, else the suffix of
        ``name``; the encoding from ``encoding``, else the URI's ``charset``.

        Raises:
            ETLConstructionError: not a data URI, or its base64 content is broken.
            CsvOptionsError: its ``charset`` (or ``encoding``) is unknown or not a text
                encoding.
        """
        if not uri.startswith("data:") or "," not in uri:
            raise ETLConstructionError(f"file {name!r}: not a data URI (data:<type>;base64,<data>)")
        header, _, payload = uri[5:].partition(",")
        params = header.split(";")
        mime = params[0].strip().lower()
        charset = next((p[8:] for p in params[1:] if p.lower().startswith("charset=")), None)
        if "base64" in (p.strip().lower() for p in params[1:]):
            try:
                content = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ETLConstructionError(f"file {name!r}: broken base64 content: {exc}") from exc
        else:
            content = unquote_to_bytes(payload)
        fmt = FileFormat.parse(format) if format else _MIME_FORMATS.get(mime)
        file = cls.from_bytes(
            content,
            name=name,
            format=fmt,
            delimiter=delimiter,
            quotechar=quotechar,
            encoding=encoding or charset or "utf-8-sig",
        )
        return file

    @property
    def source(self) -> str:
        """What messages call this file: its path, or its name for in-memory content."""
        return str(self.path) if self.path is not None else self.name

    def check_readable(self) -> None:
        """Raise unless the content is in memory or the path is a readable file.

        Raises:
            ETLConstructionError: the path does not exist or is not a file.
        """
        if self.content is not None:
            return
        if self.path is None:
            raise ETLConstructionError(f"file {self.name!r} has neither a path nor content")
        if not self.path.is_file():
            raise ETLConstructionError(
                f"file {self.name!r}: {self.path} does not exist or is not a file"
            )

    def read_bytes(self) -> bytes:
        """The file's bytes.

        Raises:
            OSError: the path cannot be read (the pipeline turns it into a message).
        """
        if self.content is not None:
            return self.content
        if self.path is None:
            raise ETLConstructionError(f"file {self.name!r} has neither a path nor content")
        return self.path.read_bytes()

    def digest(self) -> str:
        """SHA-256 of the content and read options: the same input gives the same key."""
        sha = hashlib.sha256(self.read_bytes())
        sha.update(f"|{self.name}|{self.format}|{self.csv}".encode())
        return sha.hexdigest()


def _format_of(suffix: str) -> FileFormat | None:
    try:
        return FileFormat(suffix.lower().lstrip(".")) if suffix else None
    except ValueError:
        return None
