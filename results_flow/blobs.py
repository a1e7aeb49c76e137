"""``PrefectResultBlob``: how ``ResultsStorage`` keeps a Prefect record it cannot show as
a readable document: a record kept pickled under ``allow_pickle=True``, a value with no
strict JSON form, and every record written before documents (which still read).

It lives below the Prefect layer, registered in namespace ``prefect`` on import, so that
``verify`` and ``get`` know these records without importing Prefect or ``--import``.
"""

from __future__ import annotations

import base64
from typing import Literal

from pydantic import BaseModel

from results_flow.registry import register_model

PREFECT_NAMESPACE = "prefect"


@register_model(namespace=PREFECT_NAMESPACE)
class PrefectResultBlob(BaseModel):
    """The bytes Prefect wrote for one result key, as text (or base64 when not UTF-8)."""

    content: str
    encoding: Literal["utf-8", "base64"] = "utf-8"

    @classmethod
    def of(cls, content: bytes) -> PrefectResultBlob:
        """The blob that keeps ``content`` exactly."""
        try:
            return cls(content=content.decode("utf-8"))
        except UnicodeDecodeError:
            return cls(content=base64.b64encode(content).decode("ascii"), encoding="base64")

    def to_bytes(self) -> bytes:
        """The bytes Prefect wrote."""
        if self.encoding == "base64":
            return base64.b64decode(self.content)
        return self.content.encode("utf-8")
