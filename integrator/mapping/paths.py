"""Path selectors (JMESPath, or JSONPath when prefixed with ``$``) and ``${...}`` templates.

Templates: ``${_order.PATH}`` takes a value from the order document, ``${name}`` an attribute.
A value that is not there fails the order (a :class:`TemplateError`, before anything is sent)
unless the placeholder gives a default after ``:-``:

=========================  ===============================  =================================
placeholder                the value is absent / null       the value is there
=========================  ===============================  =================================
``${_order.x}``            the order fails, naming ``x``    the value
``${_order.x:-}``          empty                            the value
``${_order.x:-N/A}``       ``N/A``                          the value
=========================  ===============================  =================================

"Absent" is a key that the document does not have, or an index past the end of a list; a
path that meets an explicit null on the way (``cargo.name`` with ``cargo: null``) is null.
Paths with functions, projections or ``||`` cannot tell absent from null: no value is null.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import jmespath
from jsonpath_ng.ext.parser import parse as jsonpath_parse

from integrator.errors import PermanentError

__all__ = [
    "ABSENT",
    "ORDER_PREFIX",
    "Placeholder",
    "TemplateError",
    "compile_path",
    "placeholders",
    "render",
    "render_json",
    "select",
    "simple_steps",
]

_PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")
ORDER_PREFIX = "_order."


class _Absent:
    """The marker of a value that is not there (as opposed to an explicit null)."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


class TemplateError(PermanentError):
    """A placeholder without a value and without a default: the order fails before anything
    is sent (a fixed flow or document is needed, so it backs off like a mapping error)."""


@functools.lru_cache(maxsize=256)
def compile_path(path: str) -> Any:
    """Compile a selector once; raises ValueError with the reason when it is invalid."""
    try:
        if path.startswith("$"):
            return ("jsonpath", jsonpath_parse(path))
        return ("jmespath", jmespath.compile(path))
    except Exception as exc:  # noqa: BLE001 - both libraries raise their own parse errors
        raise ValueError(f"invalid path {path!r}: {exc}") from None


def select(path: str, data: Any) -> Any:
    """The value at ``path``: JSONPath gives the first match (or None), JMESPath its result."""
    kind, compiled = compile_path(path)
    if kind == "jsonpath":
        matches = compiled.find(data)
        return matches[0].value if matches else None
    return compiled.search(data)


def _steps(node: dict[str, Any]) -> list[str | int] | None:
    kind, children = node.get("type"), node.get("children") or []
    if kind == "field":
        return [str(node["value"])]
    if kind == "index":
        return [int(node["value"])]
    if kind in ("subexpression", "index_expression"):
        out: list[str | int] = []
        for i, child in enumerate(children):
            if kind == "index_expression" and i > 0 and child.get("type") != "index":
                return None
            steps = _steps(child)
            if steps is None:
                return None
            out += steps
        return out
    return None


@functools.lru_cache(maxsize=256)
def simple_steps(path: str) -> tuple[str | int, ...] | None:
    """The keys and indexes of a plain JMESPath (``a.b[0].c``); None for anything else
    (functions, projections, ``||``, JSONPath). Raises ValueError when it does not compile."""
    kind, compiled = compile_path(path)
    if kind != "jmespath":
        return None
    steps = _steps(compiled.parsed)
    return None if steps is None else tuple(steps)


def lookup(path: str, data: Any) -> Any:
    """The value at ``path``, ABSENT when a key or index is not there, None when null."""
    steps = simple_steps(path)
    if steps is None:
        kind, compiled = compile_path(path)
        if kind == "jsonpath":
            matches = compiled.find(data)
            return matches[0].value if matches else ABSENT
        return compiled.search(data)
    for step in steps:
        if data is None:
            return None  # an explicit null on the way: null
        if isinstance(step, str):
            if not isinstance(data, dict) or step not in data:
                return ABSENT
            data = data[step]
        else:
            if not isinstance(data, list) or not -len(data) <= step < len(data):
                return ABSENT
            data = data[step]
    return data


class Placeholder:
    """One ``${...}``: its expression and its default (None: no ``:-``)."""

    __slots__ = ("default", "expr", "text")

    def __init__(self, inner: str) -> None:
        self.text = inner
        cut = _default_cut(inner)
        if cut is None:
            self.expr, self.default = inner.strip(), None
        else:
            self.expr, self.default = inner[:cut].strip(), inner[cut + 2 :]

    @property
    def order_path(self) -> str | None:
        """The path in the order document (``${_order.PATH}``), or None for an attribute."""
        return self.expr[len(ORDER_PREFIX) :] if self.expr.startswith(ORDER_PREFIX) else None

    def value(self, order: Any, attributes: Mapping[str, str]) -> Any:
        """The value, the default, or a TemplateError."""
        path = self.order_path
        if path is None:
            value = attributes.get(self.expr, ABSENT)
        else:
            try:
                value = lookup(path, order)
            except ValueError as exc:  # validate refuses it; a custom stage may not have
                raise TemplateError(f"${{{self.text}}}: {exc}") from None
        if value is ABSENT or value is None:
            if self.default is not None:
                return self.default
            what = "absent from the order" if path is not None else "not an attribute"
            if value is None:
                what = "null in the order"
            raise TemplateError(
                f"${{{self.text}}} is {what}, and the template gives no default; nothing "
                f"was sent. Fix the flow, or write ${{{self.expr}:-}} (empty) or "
                f"${{{self.expr}:-text}} for a default"
            )
        return value


def _default_cut(inner: str) -> int | None:
    """Where ``:-`` starts, outside brackets and quotes (``a[::-1]`` has none)."""
    depth, quote_char = 0, ""
    for i, ch in enumerate(inner):
        if quote_char:
            if ch == quote_char:
                quote_char = ""
        elif ch in "'\"`":
            quote_char = ch
        elif ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif depth == 0 and inner.startswith(":-", i):
            return i
    return None


def placeholders(template: str) -> list[Placeholder]:
    """Every ``${...}`` of ``template``, in order."""
    return [Placeholder(m.group(1)) for m in _PLACEHOLDER.finditer(template)]


def render(template: str, order: Any, attributes: Mapping[str, str], *, url: bool = False) -> str:
    """``${_order.number}`` from the order document, ``${name}`` from the attributes.

    ``url``: the template is a URL or a path, and each value is percent-encoded, so that a
    value holding ``&``, ``#``, ``+``, ``/`` or ``?`` stays one value (an order number
    ``A&part=2`` must not ask the ERP about order ``A``). A value that is absent or null
    without a default raises :class:`TemplateError`.
    """

    def sub(m: re.Match[str]) -> str:
        value = Placeholder(m.group(1)).value(order, attributes)
        text = value if isinstance(value, str) else json.dumps(value)
        return quote(text, safe="") if url else text

    return _PLACEHOLDER.sub(sub, template)


def render_json(template: Any, order: Any, attributes: Mapping[str, str]) -> Any:
    """Render every string in a JSON template; a string that is one placeholder keeps its type
    (its default is a string)."""
    if isinstance(template, dict):
        return {k: render_json(v, order, attributes) for k, v in template.items()}
    if isinstance(template, list):
        return [render_json(v, order, attributes) for v in template]
    if isinstance(template, str):
        m = _PLACEHOLDER.fullmatch(template)
        if m:
            return Placeholder(m.group(1)).value(order, attributes)
        return render(template, order, attributes)
    return template
