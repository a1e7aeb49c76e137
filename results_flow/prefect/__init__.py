"""The Prefect layer: tasks whose validated results live in a results_flow store.

``results_task`` makes a Prefect task that stores its Pydantic result under an ID
built from flow, task and parameters and skips the call when that ID exists;
``results_map`` resumes a large fan-out with one store read; ``ResultsStorage``,
``PydanticSerializer`` and ``RESULT_ID`` put Prefect's own result persistence and
caching into the same store. Importing this module registers the block and the
serializer with Prefect (``prefect block register -m results_flow.prefect``).
"""

from results_flow.blobs import PrefectResultBlob
from results_flow.prefect.batch import aresults_map, results_map
from results_flow.prefect.cache import RESULT_ID, ResultIdPolicy
from results_flow.prefect.decorator import ResultsTask, result_id_for, results_task
from results_flow.prefect.locking import StoreLockManager
from results_flow.prefect.naming import NO_FLOW
from results_flow.prefect.progress import MapProgress
from results_flow.prefect.report import ResumeResults
from results_flow.prefect.runtime import CACHED_STATE_NAME
from results_flow.prefect.serializer import PydanticSerializer
from results_flow.prefect.storage import ResultsStorage
from results_flow.prefect.trust import SERIALIZER_TYPE

__all__ = [
    "CACHED_STATE_NAME",
    "NO_FLOW",
    "RESULT_ID",
    "SERIALIZER_TYPE",
    "MapProgress",
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
