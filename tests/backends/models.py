"""Models the store tests share; importable by worker processes."""

from __future__ import annotations

import enum
from datetime import date, datetime
from decimal import Decimal
from typing import Optional
from uuid import UUID

from pydantic import BaseModel

from results_flow import register_model


@register_model
class Person(BaseModel):
    name: str
    age: int
    email: Optional[str] = None  # noqa: UP045 - the documented example's spelling


@register_model
class Team(BaseModel):
    name: str
    members: list[Person]


@register_model
class Item(BaseModel):
    index: int
    writer: str = ""


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@register_model
class Everything(BaseModel):
    when: datetime
    day: date
    uid: UUID
    amount: Decimal
    color: Color
    team: Team
    maybe: Optional[int] = None  # noqa: UP045
    tags: list[str]
    scores: dict[str, float]
