"""Path selectors: JMESPath, or JSONPath when prefixed with ``$``.

Templates (``${…}``) and the expression language are :mod:`integrator.mapping.expr`.
"""

from __future__ import annotations

import functools
from typing import Any

import jmespath
from jsonpath_ng.ext.parser import parse as jsonpath_parse

__all__ = ["ABSENT", "compile_path", "lookup", "path_problem", "select", "simple_steps"]


class _Absent:
    """The marker of a value that is not there (as opposed to an explicit null)."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


@functools.lru_cache(maxsize=256)
def compile_path(path: str) -> Any:
    """Compile a selector once; raises ValueError with the reason when it is invalid."""
    try:
        if path.startswith("$"):
            return ("jsonpath", jsonpath_parse(path))
        return ("jmespath", jmespath.compile(path))
    except Exception as exc:  # noqa: BLE001 - both libraries raise their own parse errors
        raise ValueError(f"invalid path {path!r}: {exc}") from None


def path_problem(path: str) -> str | None:
    """Why ``path`` is not a selector, or None: an option check (``Options.get(check=…)``)."""
    try:
        compile_path(path)
    except ValueError as exc:
        return str(exc)
    return None


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
