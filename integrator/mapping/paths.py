"""Path selectors (JMESPath, or JSONPath when prefixed with ``$``) and ``${...}`` templates."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import jmespath
from jsonpath_ng.ext.parser import parse as jsonpath_parse

__all__ = ["compile_path", "render", "render_json", "select"]

_PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")


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


def _lookup(expr: str, order: Any, attributes: Mapping[str, str]) -> Any:
    if expr.startswith("_order."):
        return select(expr[len("_order.") :], order)
    return attributes.get(expr)


def render(template: str, order: Any, attributes: Mapping[str, str], *, url: bool = False) -> str:
    """``${_order.number}`` from the order document, ``${name}`` from the attributes.

    ``url``: the template is a URL or a path, and each value is percent-encoded, so that a
    value holding ``&``, ``#``, ``+``, ``/`` or ``?`` stays one value (an order number
    ``A&part=2`` must not ask the ERP about order ``A``).
    """

    def sub(m: re.Match[str]) -> str:
        value = _lookup(m.group(1).strip(), order, attributes)
        if value is None:
            return ""
        text = value if isinstance(value, str) else json.dumps(value)
        return quote(text, safe="") if url else text

    return _PLACEHOLDER.sub(sub, template)


def render_json(template: Any, order: Any, attributes: Mapping[str, str]) -> Any:
    """Render every string in a JSON template; a string that is one placeholder keeps its type."""
    if isinstance(template, dict):
        return {k: render_json(v, order, attributes) for k, v in template.items()}
    if isinstance(template, list):
        return [render_json(v, order, attributes) for v in template]
    if isinstance(template, str):
        m = _PLACEHOLDER.fullmatch(template)
        if m:
            return _lookup(m.group(1).strip(), order, attributes)
        return render(template, order, attributes)
    return template
