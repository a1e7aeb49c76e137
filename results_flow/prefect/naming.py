"""How a results_task call becomes a result ID.

The default ID is ``<flow name>/<task name>/<key>``: ``<key>`` hashes the canonical
JSON of the bound arguments (defaults applied, ``ignore`` left out), plus the
``version`` and the source hash when given. Outside a flow run the flow segment is
``no-flow``. An ``id`` template such as ``"scores/{item.id}"`` is filled from the
bound arguments and from ``{flow}``, ``{task}``, ``{key}`` and ``{version}``; a
version (or source hash) the template does not mention is appended to its last
segment as ``@<version>`` (``@<hash>``).
"""

from __future__ import annotations

import functools
import inspect
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prefect.context import FlowRunContext

from results_flow.errors import InvalidResultIdError, UnhashableParameterError
from results_flow.ids import canonical_value, digest_of, normalize_id, safe_segment

NO_FLOW = "no-flow"
"""The flow segment of IDs built outside a flow run."""


@dataclass(frozen=True)
class Call:
    """One call of a results_task: its result ID and what the ID was built from."""

    result_id: str
    flow_name: str
    task_name: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class IdRecipe:
    """The rules that turn a call's arguments into its result ID."""

    template: str | None = None
    version: str | None = None
    ignore: frozenset[str] = field(default_factory=frozenset)
    code_hash: str | None = None

    def call(
        self,
        fn: Callable[..., Any],
        task_name: str,
        arguments: Mapping[str, Any],
        flow_name: str | None = None,
    ) -> Call:
        """The call of ``fn`` (as task ``task_name``) with bound ``arguments``.

        Raises:
            UnhashableParameterError: an argument has no canonical JSON; names it.
            InvalidResultIdError: the template cannot be filled or gives a bad ID.
        """
        flow = current_flow_name() if flow_name is None else flow_name
        parameters = self.canonical_parameters(task_name, arguments)
        hashed: dict[str, Any] = {"parameters": parameters}
        if self.version is not None:
            hashed["version"] = self.version
        if self.code_hash is not None:
            hashed["code"] = self.code_hash
        if self.template is None:
            raw = f"{safe_segment(flow)}/{safe_segment(task_name)}/{digest_of(hashed)}"
        else:
            # Hashing is a third of building an ID; a template without {key} needs none.
            key = digest_of(hashed) if self._template_uses_key else ""
            raw = self._fill(task_name, arguments, flow, key)
        try:
            result_id = normalize_id(raw)
        except InvalidResultIdError as exc:
            raise InvalidResultIdError(f"task {task_name!r}: {exc}") from exc
        return Call(result_id, flow, task_name, parameters)

    @functools.cached_property
    def _template_uses_key(self) -> bool:
        return any(
            name is not None and name.split(".", 1)[0].split("[", 1)[0] == "key"
            for _, name, _, _ in string.Formatter().parse(self.template or "")
        )

    def canonical_parameters(self, task_name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The canonical JSON form of every argument not ignored.

        Raises:
            UnhashableParameterError: an argument has no canonical JSON; names it.
        """
        canonical = {}
        for name, value in arguments.items():
            if name in self.ignore:
                continue
            try:
                canonical[name] = canonical_value(value, name)
            except UnhashableParameterError as exc:
                raise UnhashableParameterError(
                    f"task {task_name!r}, parameter {name!r}: {exc}; pass "
                    f"ignore=[{name!r}] to leave it out of the result ID, or give an id= template"
                ) from exc
        return canonical

    def _fill(self, task_name: str, arguments: Mapping[str, Any], flow: str, key: str) -> str:
        template = self.template or ""
        fields = {"flow": flow, "task": task_name, "key": key, "version": self.version or ""}
        fields.update(arguments)
        try:
            text = string.Formatter().vformat(template, (), fields)
        except (KeyError, AttributeError, IndexError, ValueError, TypeError) as exc:
            raise InvalidResultIdError(
                f"task {task_name!r}: id template {template!r} cannot be filled from "
                f"the parameters {sorted(arguments)}: {exc!r}"
            ) from exc
        suffixes = []
        if self.version is not None and "{version" not in template:
            suffixes.append(self.version)
        if self.code_hash is not None:
            suffixes.append(self.code_hash[:12])
        return text + "".join(f"@{s}" for s in suffixes)


def bind_arguments(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """The arguments of a call by parameter name, defaults applied.

    Raises:
        TypeError: the arguments do not fit the signature.
    """
    bound = inspect.signature(fn).bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def current_flow_name() -> str:
    """The name of the flow whose run we are in, or ``NO_FLOW``."""
    context = FlowRunContext.get()
    if context is not None and context.flow is not None:
        return context.flow.name
    return NO_FLOW
