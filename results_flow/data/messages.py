"""Validation messages: what an ETL run found, how bad it is, and where.

Every message has a severity, a short machine-readable code, a sentence for people,
and the file, table, column and row it is about (rows count from 1, the first data
row of a table; a CSV header is not a row). Messages are Pydantic models, so an ETL
stage's findings are stored with its output.
"""

from __future__ import annotations

from collections import Counter
from enum import StrEnum

from pydantic import BaseModel, Field


class Severity(StrEnum):
    """How bad a finding is; by default an ERROR or worse fails the load."""

    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"

    @property
    def rank(self) -> int:
        """0 for INFO up to 3 for CRITICAL."""
        return _RANKS[self]

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank >= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank > other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank <= other.rank

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank < other.rank


_RANKS = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2, Severity.CRITICAL: 3}


class ValidationMessage(BaseModel):
    """One finding of an ETL run."""

    severity: Severity
    code: str = Field(description="Short machine-readable kind, e.g. 'duplicate_primary_key'.")
    message: str = Field(description="One sentence naming what is wrong and where.")
    file: str | None = None
    table: str | None = None
    column: str | None = None
    row: int | None = Field(default=None, description="1-based data row within the table.")

    def __str__(self) -> str:
        return f"{self.severity.value} [{self.code}] {self.message}"


class ValidationResult(BaseModel):
    """All findings of an ETL run, in the order they were made."""

    messages: list[ValidationMessage] = Field(default_factory=list)

    def add(
        self,
        severity: Severity,
        code: str,
        message: str,
        *,
        file: str | None = None,
        table: str | None = None,
        column: str | None = None,
        row: int | None = None,
    ) -> ValidationMessage:
        """Record a finding and return it."""
        found = ValidationMessage(
            severity=severity,
            code=code,
            message=message,
            file=file,
            table=table,
            column=column,
            row=row,
        )
        self.messages.append(found)
        return found

    def extend(self, other: ValidationResult) -> None:
        """Append another result's messages."""
        self.messages.extend(other.messages)

    def at_least(self, severity: Severity) -> list[ValidationMessage]:
        """The messages of ``severity`` or worse."""
        return [m for m in self.messages if m.severity >= severity]

    @property
    def errors(self) -> list[ValidationMessage]:
        """ERROR and CRITICAL messages."""
        return self.at_least(Severity.ERROR)

    @property
    def worst(self) -> Severity | None:
        """The highest severity found, or None when there are no messages."""
        return max((m.severity for m in self.messages), key=lambda s: s.rank, default=None)

    def fails(self, threshold: Severity) -> bool:
        """Whether any message is at ``threshold`` or worse (CRITICAL always fails)."""
        worst = self.worst
        return worst is not None and (worst >= threshold or worst is Severity.CRITICAL)

    def codes(self) -> Counter[str]:
        """How often each code occurs."""
        return Counter(m.code for m in self.messages)

    def summary(self) -> str:
        """One line per severity present, worst first, e.g. ``ERROR: 2``."""
        counts = Counter(m.severity for m in self.messages)
        ordered = sorted(counts, key=lambda s: s.rank, reverse=True)
        return ", ".join(f"{s.value}: {counts[s]}" for s in ordered) or "no messages"
