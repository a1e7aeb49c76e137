"""How a results_task call becomes a result ID.

The default ID is ``<flow name>/<task name>/<key>``: ``<key>`` hashes the canonical
JSON of the bound arguments (defaults applied, ``ignore`` left out), plus the
``version`` and the source hash when given. Outside a flow run the flow segment is
``no-flow``. With the ``task`` ID scope (``results_task(scope="task")`` or
``RESULTS_FLOW_ID_SCOPE=task``) the default ID is ``<task name>/<key>``, the same in
every flow; its flow-scoped ID of the running flow is its ``former_id``, where a store
written before keeps the result. An ``id`` template such as ``"scores/{item.id}"``
is filled from the bound arguments and from ``{flow}``, ``{task}``, ``{key}`` and ``{version}``; a
version (or source hash) the template does not mention is appended to its last
segment as ``@<version>`` (``@<hash>``).
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prefect import State
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture
from prefect.utilities.collections import visit_collection

from results_flow.errors import InvalidResultIdError, UnhashableParameterError
from results_flow.hashing import canonical_value, digest_of
from results_flow.ids import SEPARATOR, normalize_id, safe_segment, split_id
from results_flow.settings import IdScope, id_scope

NO_FLOW = "no-flow"
"""The flow segment of IDs built outside a flow run."""


@dataclass(frozen=True)
class Call:
    """One call of a results_task: its result ID and what the ID was built from."""

    result_id: str
    flow_name: str
    task_name: str
    parameters: dict[str, Any]
    #: The flow-scoped ID this call had before its task's IDs became task-scoped (None
    #: for flow-scoped IDs and templates): a result stored there is taken over.
    former_id: str | None = None
    #: The result IDs this call's arguments came from, by parameter (``results_map`` over
    #: upstream results): kept in the stored record's metadata as its lineage.
    inputs: dict[str, list[str]] | None = None


@dataclass(frozen=True)
class IdRecipe:
    """The rules that turn a call's arguments into its result ID."""

    template: str | None = None
    version: str | None = None
    ignore: frozenset[str] = field(default_factory=frozenset)
    code_hash: str | None = None
    #: ``"flow"`` or ``"task"``; None: the project-wide ``RESULTS_FLOW_ID_SCOPE``.
    scope: IdScope | None = None

    def task_scoped(self) -> bool:
        """Whether this call's default IDs leave the flow out (read at each call, so
        the setting may change between runs)."""
        return self.template is None and (self.scope or id_scope()) == "task"

    def former_id(self, result_id: str, flow_name: str) -> str | None:
        """The flow-scoped ID of a task-scoped default ID, in flow ``flow_name``."""
        return _with_flow(result_id, flow_name) if self.task_scoped() else None

    def call(
        self,
        task_name: str,
        arguments: Mapping[str, Any],
        flow_name: str | None = None,
    ) -> Call:
        """The call of task ``task_name`` with bound ``arguments``.

        Raises:
            UnhashableParameterError: an argument has no canonical JSON; names it.
            InvalidResultIdError: the template cannot be filled or gives a bad ID.
            ValueError: ``RESULTS_FLOW_ID_SCOPE`` is neither ``flow`` nor ``task``.
        """
        flow = current_flow_name() if flow_name is None else flow_name
        task_scoped = self.task_scoped()
        parameters = self.canonical_parameters(task_name, arguments)
        hashed: dict[str, Any] = {"parameters": parameters}
        if self.version is not None:
            hashed["version"] = self.version
        if self.code_hash is not None:
            hashed["code"] = self.code_hash
        # Hashing is a third of building an ID; a template without {key} needs none.
        key = digest_of(hashed) if self.template is None or self._template_uses_key else ""
        try:
            if self.template is not None:
                result_id = self._fill(task_name, arguments, flow, key)
            elif task_scoped:
                result_id = normalize_id(f"{_segment(task_name)}/{key}")
            else:
                result_id = normalize_id(f"{_segment(flow)}/{_segment(task_name)}/{key}")
        except InvalidResultIdError as exc:
            raise InvalidResultIdError(f"task {task_name!r}: {exc}") from exc
        former = _with_flow(result_id, flow) if task_scoped else None
        return Call(result_id, flow, task_name, parameters, former)

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
                if _holds_future(value):
                    # ignore= would give every call the same ID: never the advice here.
                    raise UnhashableParameterError(
                        f"task {task_name!r}, parameter {name!r}: {exc}; it holds a Prefect "
                        "future or state, whose result is not known yet: pass the result "
                        "(future.result()), or give the futures to results_map, which "
                        "resolves them before building the IDs"
                    ) from exc
                raise UnhashableParameterError(
                    f"task {task_name!r}, parameter {name!r}: {exc}; pass "
                    f"ignore=[{name!r}] to leave it out of the result ID, or give an id= template"
                ) from exc
        return canonical

    def _fill(self, task_name: str, arguments: Mapping[str, Any], flow: str, key: str) -> str:
        """The template's ID, suffixes added, normalized."""
        template = self.template or ""
        fields: dict[str, Any] = {
            "flow": _segment(flow),
            "task": _segment(task_name),
            "key": key,
            "version": self.version or "",
        }
        fields.update(arguments)
        try:
            text = fill_template(template, fields)
        except InvalidResultIdError:
            raise  # call() names the task
        except (KeyError, AttributeError, IndexError, ValueError, TypeError) as exc:
            raise InvalidResultIdError(
                f"id template {template!r} cannot be filled from "
                f"the parameters {sorted(arguments)}: {exc!r}"
            ) from exc
        suffixes = []
        if self.version is not None and "{version" not in template:
            suffixes.append(self.version)
        if self.code_hash is not None:
            suffixes.append(self.code_hash[:12])
        suffix = "".join(f"@{s}" for s in suffixes)
        if SEPARATOR in suffix:
            raise InvalidResultIdError(
                f"version {self.version!r} holds {SEPARATOR!r}, which "
                f"would add a segment to the ID of template {template!r}"
            )
        # fill_template's text is a valid ID already: one check fewer per ID without a suffix.
        return normalize_id(text + suffix) if suffix else text


def _with_flow(result_id: str, flow_name: str) -> str:
    """A task-scoped default ID as it reads in flow scope: the flow's segment in front."""
    return f"{_segment(flow_name)}{SEPARATOR}{result_id}"


def fill_template(template: str, fields: Mapping[str, Any]) -> str:
    """``template`` with its ``{field}`` parts filled from ``fields``.

    Each filled value must stay inside its segment: one holding ``/`` would add a segment
    and an empty one could remove one, and either lets two different calls share an ID
    (``runs/{a}/{b}`` with ``("x/y", "z")`` and ``("x", "y/z")``). Such values are
    refused, not escaped, so an ID always reads as the values that built it.

    Raises:
        InvalidResultIdError: a value is empty, holds ``/``, or makes a bad segment;
            names the parameter.
        KeyError, AttributeError, IndexError, ValueError, TypeError: a field cannot be
            looked up or formatted (``string.Formatter``'s own errors).
    """
    formatter = _FORMATTER
    pieces: list[tuple[str, str | None]] = []  # (text, the field that filled it)
    for literal, field_name, spec, conversion, plain in _parsed(template):
        pieces.append((literal, None))
        if field_name is None:
            continue
        if plain:  # what the formatter does for "{name}", at a third of the cost
            filled = format(fields[field_name])
        else:
            value, _ = formatter.get_field(field_name, (), fields)
            if conversion:
                value = formatter.convert_field(value, conversion)
            if spec and "{" in spec:
                spec = formatter.vformat(spec, (), fields)
            filled = formatter.format_field(value, spec or "")
        if filled == "" or SEPARATOR in filled:
            where = f"id template {template!r}: {{{field_name}}} of parameter {_root(field_name)!r}"
            if filled == "":
                raise InvalidResultIdError(
                    f"{where} is empty, which would remove a segment or merge two values; "
                    "template values may not be empty"
                )
            raise InvalidResultIdError(
                f"{where} is {filled!r}, whose {SEPARATOR!r} would add a segment; template "
                f"values may not hold {SEPARATOR!r} (use the default ID or a parameter without it)"
            )
        pieces.append((filled, field_name))
    text = "".join(text for text, _ in pieces)
    try:
        normalize_id(text)
    except InvalidResultIdError as exc:
        raise _bad_segment(template, pieces, exc) from exc
    return text


_FORMATTER = string.Formatter()
#: ``safe_segment`` of the flow and task names, which are the same for every call.
_segment = functools.lru_cache(maxsize=256)(safe_segment)


@functools.lru_cache(maxsize=1024)
def _parsed(template: str) -> tuple[tuple[str, str | None, str | None, str | None, bool], ...]:
    """The template's parts, each marked plain when it is a bare ``{name}``."""
    return tuple(
        (
            literal,
            name,
            spec,
            conversion,
            bool(name and name.isidentifier()) and not (spec or conversion),
        )
        for literal, name, spec, conversion in _FORMATTER.parse(template)
    )


def _bad_segment(
    template: str, pieces: list[tuple[str, str | None]], error: InvalidResultIdError
) -> Exception:
    """The error naming the parameters of the first bad segment that values filled, or
    ``error`` itself when the template's own text is at fault."""
    segment, names = "", []
    segments: list[tuple[str, list[str]]] = []
    for part, name in pieces:
        if name is not None:
            segment += part
            names.append(name)
            continue
        first, *rest = part.split(SEPARATOR)
        segment += first
        for piece in rest:
            segments.append((segment, names))
            segment, names = piece, []
    segments.append((segment, names))
    for segment, used in segments:
        if not used:
            continue
        try:
            split_id([segment])
        except InvalidResultIdError as exc:
            params = ", ".join(repr(_root(name)) for name in used)
            return InvalidResultIdError(
                f"id template {template!r}: the segment filled from parameter {params} "
                f"is not a valid ID segment: {exc}"
            )
    return error


def _root(field_name: str) -> str:
    """The parameter a template field reads (``item`` of ``item.id`` or ``item[0]``)."""
    return re.split(r"[.\[]", field_name, maxsplit=1)[0]


def _holds_future(value: Any) -> bool:
    found: list[Any] = []

    def spot(expr: Any) -> Any:
        if isinstance(expr, PrefectFuture | State):
            found.append(expr)
        return expr

    visit_collection(value, spot, return_data=False)
    return bool(found)


def current_flow_name() -> str:
    """The name of the flow whose run we are in, or ``NO_FLOW``."""
    context = FlowRunContext.get()
    if context is not None and context.flow is not None:
        return context.flow.name
    return NO_FLOW
