"""The public names of results_flow.prefect, pinned."""

from __future__ import annotations

import results_flow.prefect as rfp


def test_public_api_is_pinned() -> None:
    assert sorted(rfp.__all__) == sorted(
        [
            "CACHED_STATE_NAME",
            "MapProgress",
            "NO_FLOW",
            "RESULT_ID",
            "SERIALIZER_TYPE",
            "PrefectResultBlob",
            "PydanticSerializer",
            "ResultIdPolicy",
            "ResultsStorage",
            "ResultsTask",
            "ResumeResults",
            "StoreLockManager",
            "aresults_map",
            "result_id_for",
            "results_map",
            "results_task",
        ]
    )
    assert all(hasattr(rfp, name) for name in rfp.__all__)
