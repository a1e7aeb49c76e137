"""A choice a caller makes by enum member or by its value as a string.

The package compares members by identity (``behavior is SetBehavior.OVERWRITE``), so
a plain string given where a member is expected matched none of them and quietly took
the last branch. Every public entry that takes such a choice turns it into its member
here, once, and refuses anything else by name.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

E = TypeVar("E", bound=StrEnum)


def member(enum: type[E], value: E | str, what: str) -> E:
    """``value`` as a member of ``enum``: a member, or a member's value as a string.

    Raises:
        ValueError: ``value`` is no member's value; the message names ``what`` and
            lists the values there are.
    """
    try:
        return enum(value)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in enum)
        message = f"{what} must be a {enum.__name__} or one of {choices}, not {value!r}"
        raise ValueError(message) from None
