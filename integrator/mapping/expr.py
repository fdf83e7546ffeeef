"""The one expression language of flows and connectors: ``${…}`` holding JMESPath.

**When a ``${…}`` is resolved** (one rule for config.yaml and flow files alike):

* at load, from the environment (and ``.env``): ``${NAME}`` and ``${NAME:-default}`` where
  NAME is a plain name (letters, digits, ``_``) that is not a run-time root below, and
  ``${file:PATH}`` (:mod:`integrator.config.interpolate`);
* at run time, every other ``${…}``: an expression evaluated for each order (or login).

**Run-time expressions** are JMESPath (https://jmespath.org) over these roots:

==============  ===========================================================================
root            what it holds
==============  ===========================================================================
``_order``      the order document the source assembled
``vars``        the flow's constants (``vars:`` of the flow over those of config.yaml)
``login``       the connector's login answer (a ``TokenLogin``), as parsed (JSON or XML)
``connector``   the connector's fields: ``Name``, ``ConnectorId``, ``Host``, ``Username``,
                ``Password`` and its ``Properties`` by key
``data``        the payload the earlier stages built (a write's body: ``${data}``)
``attributes``  the order's attributes (``attributes."log.note"``)
==============  ===========================================================================

Any other name is an attribute: ``${query_check.found}`` is the attribute of that name. On
top of JMESPath's own functions (``join``, ``to_string``, ``length``…) there are
``base64(s)``, ``concat(a, b, …)`` (strings, numbers as text; null is an error), ``lower(s)``
and ``upper(s)``:
``Session ${base64(concat(connector.Username, ':', login.result[0], ':', login.result[1]))}``.

A value that is absent or null fails the order before anything is sent (a
:class:`TemplateError`) unless the placeholder gives a default after ``:-``
(``${_order.x:-}`` for empty, ``${_order.x:-N/A}``). "Absent" is a key the document does not
have, or an index past the end of a list; a path that meets an explicit null on the way is
null. Expressions with functions, projections or ``||`` cannot tell absent from null.

A JSON template keeps types: a string that is exactly one placeholder becomes the value
itself (a number, a list, the whole ``${data}``). In a URL each value is percent-encoded, in
an XML template it is XML-escaped (:func:`render` with ``escape``).
"""

from __future__ import annotations

import base64
import functools
import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

import jmespath
from jmespath import functions as jp_functions

from integrator.errors import PermanentError
from integrator.mapping.paths import ABSENT, compile_path, lookup, simple_steps

__all__ = [
    "ORDER_PREFIX",
    "ROOTS",
    "Expr",
    "Placeholder",
    "Scope",
    "TemplateError",
    "check_expression",
    "literal_text",
    "placeholders",
    "render",
    "render_value",
    "url_escape",
]

ORDER_PREFIX = "_order."
ROOTS = ("_order", "vars", "login", "connector", "data", "attributes")
_HEAD = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(\()?")


class TemplateError(PermanentError):
    """A placeholder without a value and without a default, or an expression that fails on
    this order: the order fails before anything is sent (a fixed flow or document is needed,
    so it backs off like a mapping error)."""


class _Functions(jp_functions.Functions):
    """JMESPath's functions, and the ones logins and bodies need."""

    @jp_functions.signature({"types": ["string"]})
    def _func_base64(self, text: str) -> str:
        return base64.b64encode(text.encode("utf-8")).decode("ascii")

    @jp_functions.signature({"types": [], "variadic": True})
    def _func_concat(self, *parts: Any) -> str:
        out = []
        for i, part in enumerate(parts, 1):
            if part is None:
                raise ValueError(f"concat(): argument {i} is null")
            out.append(part if isinstance(part, str) else json.dumps(part))
        return "".join(out)

    @jp_functions.signature({"types": ["string"]})
    def _func_lower(self, text: str) -> str:
        return text.lower()

    @jp_functions.signature({"types": ["string"]})
    def _func_upper(self, text: str) -> str:
        return text.upper()


_OPTIONS = jmespath.Options(custom_functions=_Functions())
FUNCTIONS = frozenset(_Functions.FUNCTION_TABLE)


def url_escape(text: str) -> str:
    """Percent-encode one value of a URL: ``&``, ``#``, ``+``, ``/``, ``?`` stay in it."""
    return quote(text, safe="")


class Scope:
    """What run-time expressions read for one order (or one login).

    ``roots``: the roots beyond the order and its attributes (``vars``, ``connector``,
    ``data``, ``login``); a callable is called on first use (a login happens only when an
    expression needs its answer). :data:`PLANNED` as a root's value: a dry run or trace, where
    that root does not exist yet; its expressions render as a note of what they would be.
    """

    __slots__ = ("_resolved", "attributes", "order", "roots")

    def __init__(
        self,
        order: Any = None,
        attributes: Mapping[str, str] | None = None,
        roots: Mapping[str, Any] | None = None,
    ) -> None:
        self.order = order
        self.attributes = attributes if attributes is not None else {}
        self.roots = roots or {}
        self._resolved: dict[str, Any] | None = None

    def document(self, names: frozenset[str]) -> dict[str, Any]:
        """The document JMESPath runs over, with the roots in ``names`` resolved."""
        doc = self._resolved
        if doc is None:
            doc = self._resolved = {"_order": self.order, "attributes": dict(self.attributes)}
        for name in names:
            if name not in doc and name in self.roots:
                value = self.roots[name]
                doc[name] = value() if callable(value) else value
        return doc

    def fresh(self) -> Scope:
        """The same scope with nothing resolved yet (a new login's answer is read again)."""
        return Scope(self.order, self.attributes, self.roots)

    def planned(self, names: frozenset[str]) -> str | None:
        """The root among ``names`` that a dry run cannot know, if any."""
        return next((n for n in names if self.roots.get(n) is PLANNED), None)


PLANNED: Any = type("Planned", (), {"__repr__": lambda self: "PLANNED"})()


def _names(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if node.get("type") == "field":
            yield str(node["value"])
        for child in node.get("children") or []:
            yield from _names(child)
        if isinstance(node.get("value"), dict):
            yield from _names(node["value"])


def _functions(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if node.get("type") == "function_expression":
            yield str(node["value"])
        for child in node.get("children") or []:
            yield from _functions(child)
        if isinstance(node.get("value"), dict):
            yield from _functions(node["value"])


class Expr:
    """One run-time expression: an attribute's name, or JMESPath over the roots."""

    __slots__ = ("attribute", "compiled", "root", "roots", "steps", "text")

    def __init__(self, text: str) -> None:
        self.text = text.strip()
        head = _HEAD.match(self.text)
        name = head.group(1) if head else ""
        self.attribute = bool(head) and name not in ROOTS and not head.group(2)  # type: ignore[union-attr]
        self.root = name if name in ROOTS else ("" if self.attribute else "function")
        self.compiled: Any = None
        self.steps: tuple[str | int, ...] | None = None
        self.roots: frozenset[str] = frozenset()
        if not self.attribute:
            self.compiled = _compile(self.text)
            self.steps = simple_steps(self.text)
            self.roots = frozenset(_names(self.compiled.parsed)) & frozenset(ROOTS)

    @property
    def order_path(self) -> str | None:
        """The path in the order document (``_order.PATH``), or None."""
        if self.text.startswith(ORDER_PREFIX):
            return self.text[len(ORDER_PREFIX) :]
        return None

    def functions(self) -> set[str]:
        """The function names the expression calls."""
        return set() if self.compiled is None else set(_functions(self.compiled.parsed))

    def value(self, scope: Scope) -> Any:
        """The value, :data:`ABSENT`, or None (null); a TemplateError when it cannot run."""
        if self.attribute:
            return scope.attributes.get(self.text, ABSENT)
        if self.steps and self.steps[0] == "_order":  # the hot path: no document to build
            if len(self.steps) == 1:
                return scope.order
            return lookup(self.text[len(ORDER_PREFIX) :], scope.order)
        doc = scope.document(self.roots)
        try:
            if self.steps is not None:
                return lookup(self.text, doc)
            return self.compiled.search(doc, options=_OPTIONS)
        except (jmespath.exceptions.JMESPathError, ValueError, TypeError) as exc:
            raise TemplateError(f"${{{self.text}}}: {exc}") from None


@functools.lru_cache(maxsize=512)
def _compile(text: str) -> Any:
    try:
        return jmespath.compile(text)
    except jmespath.exceptions.ParseError as exc:
        where = f" at character {exc.lex_position + 1}" if exc.lex_position is not None else ""
        parts = [p.strip() for p in str(exc).splitlines()[0].split(":") if p.strip()]
        reason = parts[1].lower() if len(parts) > 1 else "not JMESPath"
        raise ValueError(f"invalid expression {text!r}: {reason}{where}") from None
    except jmespath.exceptions.JMESPathError as exc:
        raise ValueError(f"invalid expression {text!r}: {exc}") from None


@functools.lru_cache(maxsize=1024)
def _expr(text: str) -> Expr:
    return Expr(text)


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
        """The path in the order document (``${_order.PATH}``), or None for anything else."""
        return self.expr[len(ORDER_PREFIX) :] if self.expr.startswith(ORDER_PREFIX) else None

    def compiled(self) -> Expr:
        """The expression, compiled once (ValueError when it is not valid JMESPath)."""
        return _expr(self.expr)

    def value(self, scope: Scope) -> Any:
        """The value, the default, or a TemplateError."""
        try:
            expr = _expr(self.expr)
        except ValueError as exc:  # validate refuses it; a custom stage may not have
            raise TemplateError(f"${{{self.text}}}: {exc}") from None
        planned = scope.planned(expr.roots)
        if planned is not None:
            return f"<{self.expr}: from the {planned} answer at run time>"
        value = expr.value(scope)
        if value is ABSENT or value is None:
            if self.default is not None:
                return self.default
            if expr.attribute:
                what = "not an attribute"
            elif expr.root == "_order":
                what = "null in the order" if value is None else "absent from the order"
            elif expr.root in ROOTS:
                what = f"{'null' if value is None else 'absent'} in {expr.root}"
            else:
                what = "null"
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


def _spans(template: str) -> list[tuple[int, int, str]]:
    """Where each ``${…}`` of ``template`` starts and ends, and what it holds: braces inside it
    pair up (a JMESPath multiselect ``{a: b}``), and quotes hide them (``'}'``). An unclosed
    ``${`` is left as text."""
    out: list[tuple[int, int, str]] = []
    i = template.find("${")
    while i >= 0:
        depth, quote_char, j = 1, "", i + 2
        while j < len(template) and depth:
            ch = template[j]
            if quote_char:
                if ch == quote_char:
                    quote_char = ""
            elif ch in "'\"`":
                quote_char = ch
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            j += 1
        if depth:
            break
        if j - 1 > i + 2:
            out.append((i, j, template[i + 2 : j - 1]))
        i = template.find("${", j)
    return out


def literal_text(template: str) -> str:
    """``template`` without its placeholders: the text it holds whatever the values."""
    out, last = [], 0
    for start, end, _inner in _spans(template):
        out.append(template[last:start])
        last = end
    return "".join(out) + template[last:]


def placeholders(template: str) -> list[Placeholder]:
    """Every ``${...}`` of ``template``, in order."""
    return [Placeholder(inner) for _s, _e, inner in _spans(template)]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def render(
    template: str,
    scope: Scope,
    *,
    escape: Callable[[str], str] | None = None,
    as_text: Callable[[Any], str] | None = None,
) -> str:
    """``template`` with each ``${…}`` replaced by its value as text (non-strings as JSON).

    ``escape``: applied to each value's text (:func:`url_escape` for URLs and paths, so an
    order number ``A&part=2`` stays one value). ``as_text``: makes each value text instead
    (an XML template's: a mapping becomes elements, text is escaped).
    """
    if "${" not in template:
        return template

    def sub(inner: str) -> str:
        value = Placeholder(inner).value(scope)
        if as_text is not None:
            return as_text(value)
        text = _text(value)
        return escape(text) if escape is not None else text

    out, last = [], 0
    for start, end, inner in _spans(template):
        out += [template[last:start], sub(inner)]
        last = end
    return "".join(out) + template[last:]


def render_value(template: Any, scope: Scope, *, escape: Callable[[str], str] | None = None) -> Any:
    """Render every string in a JSON template; a string that is exactly one placeholder keeps
    its value's type (its default is a string)."""
    if isinstance(template, dict):
        return {k: render_value(v, scope, escape=escape) for k, v in template.items()}
    if isinstance(template, list):
        return [render_value(v, scope, escape=escape) for v in template]
    if isinstance(template, str):
        spans = _spans(template) if template.startswith("${") else []
        if len(spans) == 1 and spans[0][0] == 0 and spans[0][1] == len(template):
            return Placeholder(spans[0][2]).value(scope)
        return render(template, scope, escape=escape)
    return template


def check_expression(
    inner: str, *, known_vars: Mapping[str, Any] | None = None, login: bool = True
) -> str | None:
    """What is wrong with the run-time placeholder ``${inner}`` as written, or None: it does
    not compile, calls a function that does not exist, names a constant that is not declared,
    or reads ``login`` where the connector has no login answer."""
    ph = Placeholder(inner)
    try:
        expr = ph.compiled()
        if expr.order_path is not None:
            compile_path(expr.order_path)
    except ValueError as exc:
        return str(exc)
    unknown = sorted(expr.functions() - FUNCTIONS)
    if unknown:
        return f"unknown function {unknown[0]}(); the functions are {', '.join(sorted(FUNCTIONS))}"
    if "login" in expr.roots and not login:
        return "reads login, but this connector has no login answer (only a TokenLogin has one)"
    if known_vars is not None and expr.steps and expr.steps[0] == "vars" and len(expr.steps) > 1:
        name = expr.steps[1]
        if name not in known_vars and ph.default is None:
            declared = ", ".join(sorted(known_vars)) or "none"
            return (
                f"no constant {name!r} in vars (declared: {declared}); add it to the flow's "
                "vars: or to config.yaml's vars:"
            )
    return None
