"""``ResultIdPolicy``: Prefect cache keys that are readable results_flow result IDs.

With ``@task(cache_policy=RESULT_ID, result_storage=<ResultsStorage>)`` Prefect keeps
each cached result under ``<prefix>/<flow>/<task>/<key>`` in the store, where
``<key>`` hashes the canonical JSON of the inputs, exactly as ``results_task`` does,
instead of under an opaque md5. Unlike Prefect's ``INPUTS`` alone, the key names the
flow and the task, so two tasks called with the same inputs never share a result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext

from results_flow.prefect.naming import IdRecipe


@dataclass
class ResultIdPolicy(CachePolicy):
    """Cache keys built like results_task IDs: ``<flow>/<task>/<key>`` or a template."""

    id: str | None = None
    version: str | None = None
    ignore: list[str] = field(default_factory=list)

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """The result ID of this task run's inputs.

        Raises:
            UnhashableParameterError: an input has no canonical JSON; names it.
        """
        # Flow-scoped whatever RESULTS_FLOW_ID_SCOPE says: the keys Prefect stored stay
        # valid (results_task's take-over of former IDs does not reach Prefect's cache).
        recipe = IdRecipe(
            template=self.id, version=self.version, ignore=frozenset(self.ignore), scope="flow"
        )
        return recipe.call(task_ctx.task.name, inputs or {}).result_id


RESULT_ID = ResultIdPolicy()
"""Cache by results_flow result ID of all inputs."""
