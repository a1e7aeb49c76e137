"""Fixtures of the data tests: an ETL run helper over files written by the test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from results_flow.data import ETLResult, File, FileSchema, SimpleETLFactory

RunEtl = Callable[..., ETLResult]


@pytest.fixture
def run_etl(tmp_path: Path) -> RunEtl:
    """``run_etl(schemas, {"name.csv": "text" | b"bytes"}, **factory_options)``: write the
    files into a temporary folder and run a SimpleETLFactory pipeline on them."""

    def run(
        schemas: list[FileSchema], contents: dict[str, str | bytes], **options: Any
    ) -> ETLResult:
        files = []
        for name, content in contents.items():
            path = tmp_path / name
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
            files.append(File.from_path(path))
        factory = SimpleETLFactory(schemas, **options)
        return factory.build_pipeline(files, "test").run()

    return run
