"""JSON text that shows as it is on a terminal, wherever results_flow writes JSON that
a person may read there: the CLI's ``--json`` views and export lines.

``json`` escapes C0 controls in strings itself; DEL, C1 controls (0x9B is an 8-bit CSI)
and the bidirectional controls that reorder what is shown are valid raw in a JSON
string, and are left raw by ``ensure_ascii=False``. They occur only inside strings, so
writing them as ``\\uXXXX`` anywhere in the text keeps the same JSON value.
"""

from __future__ import annotations

import re

_LEFT_RAW = re.compile(r"[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def escape_controls(text: str) -> str:
    """``text`` (JSON) with DEL, C1 and bidirectional controls written as ``\\uXXXX``."""
    return _LEFT_RAW.sub(lambda found: f"\\u{ord(found.group()):04x}", text)
