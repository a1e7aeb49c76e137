"""Canonical JSON of task arguments: a lone surrogate (a file name that is not UTF-8,
as ``os.listdir`` gives it) is an ``UnhashableParameterError`` naming where it is, not
a ``UnicodeEncodeError`` (issue 21 item 6)."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path, PurePosixPath

import pytest
from pydantic import BaseModel

from results_flow.errors import UnhashableParameterError
from results_flow.hashing import canonical_json, canonical_value, stable_key

#: What Python makes of the file name b"caf\xe9.csv" (Latin-1) on a UTF-8 system.
NAME = os.fsdecode(b"caf\xe9.csv")


class Listing(BaseModel):
    name: str


class Kind(Enum):
    ODD = NAME


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (NAME, "value"),
        (Path("in") / NAME, "value"),
        (PurePosixPath(NAME), "value"),
        ({"files": [NAME]}, "value['files'][0]"),
        ({NAME: 1}, "value key"),
        ({NAME}, "value{...}"),
        (Listing.model_construct(name=NAME), "value"),
        (Kind.ODD, "value.value"),
    ],
    ids=["str", "path", "pure path", "nested", "dict key", "set", "model", "enum"],
)
def test_a_lone_surrogate_is_a_named_error(value: object, where: str) -> None:
    for hashing in (canonical_value, canonical_json, stable_key):
        with pytest.raises(UnhashableParameterError, match="lone surrogate") as raised:
            hashing(value)
        assert str(raised.value).startswith(where), raised.value
        assert "os.fsencode" in str(raised.value)


def test_its_bytes_hash_and_other_text_keeps_its_key() -> None:
    assert stable_key(os.fsencode(NAME)) == stable_key(b"caf\xe9.csv")
    assert canonical_json({"café": Path("é/ü.csv")}) == '{"café":{"$path":"é/ü.csv"}}'
