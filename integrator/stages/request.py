"""A stage's request to its connector, as configured: a URL or path template, headers, a body
template and its content type. query_check and write build theirs here, so both take the same
options and render them by the same rule (:mod:`integrator.mapping.expr`).

Options: ``body`` (a JSON template, or a text template such as an XML envelope; a write without
one sends the payload, ``${data}``), ``content_type`` (``json``, ``xml``, ``form``, or any media
type such as ``application/soap+xml``), ``headers`` (name → template, e.g. ``SOAPAction``).
Values are percent-encoded in the URL; in an XML template text is escaped and a mapping (the
payload a mapping built) is written as elements, the way answers are read. A payload that a
script made text is sent as it is; the script may name its type in attribute
``write.content_type``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from integrator.config.checks import Options, header_problem
from integrator.connectors.xmlbody import encode_body, is_xml_type, xml_text
from integrator.mapping.expr import (
    Scope,
    TemplateError,
    literal_text,
    render,
    render_value,
    url_escape,
)

__all__ = ["CONTENT_TYPES", "RequestTemplate", "header_value", "read_request"]

CONTENT_TYPES = {
    "json": "application/json",
    "xml": "application/xml",
    "form": "application/x-www-form-urlencoded",
}
_DATA = "${data}"


def header_value(name: str, value: str) -> str:
    """``value`` as header ``name`` can carry it; a TemplateError before anything is sent for
    text a header cannot carry (:func:`~integrator.config.checks.header_problem`: a line break
    from an order's or a script's text, a character beyond ISO-8859-1). The message names the
    header and the character, never the value (it may be a credential)."""
    problem = header_problem(value)
    if problem is None:
        return value
    raise TemplateError(
        f"header {name!r} would hold {problem}; nothing was sent. Fix the template, or clean "
        "the value in a mapping or script"
    )


def _media(value: str) -> str | None:
    if value in CONTENT_TYPES or "/" in value:
        return None
    return f"expected {', '.join(CONTENT_TYPES)} or a media type such as application/soap+xml"


@dataclass(frozen=True)
class RequestTemplate:
    """What a stage sends: method, URL template, headers, body template, content type."""

    method: str
    url: str
    body: Any = _DATA  # a JSON template (dict, list), a text template (str), or None
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()

    def render_url(self, scope: Scope) -> str:
        """The URL or path, each value percent-encoded."""
        return render(self.url, scope, escape=url_escape)

    def render_headers(self, scope: Scope) -> dict[str, str]:
        """The configured headers, rendered."""
        return {k: header_value(k, render(v, scope)) for k, v in self.headers}

    def value(self, scope: Scope) -> tuple[Any, str]:
        """The body as a value (not yet bytes) and its content type."""
        ctype = self.content_type
        if self.body == _DATA:  # the payload itself (the hot path: no template to walk)
            value = scope.roots.get("data")
            if isinstance(value, str):
                # A script made the payload text (an XML document): sent as it is, its type
                # from the script when it named one.
                named = scope.attributes.get("write.content_type")
                ctype = header_value("Content-Type", str(named)) if named else ctype
            return value, ctype
        if isinstance(self.body, str):
            as_text = xml_text if is_xml_type(ctype) else None
            return render(self.body, scope, as_text=as_text), ctype
        return render_value(self.body, scope), ctype

    def encoded(
        self, scope: Scope, what: str
    ) -> tuple[Callable[[], tuple[bytes, str]] | bytes | None, str]:
        """The body's bytes and the Content-Type to send; when the body reads the login's
        answer, a callable that renders both on each try (a new login, a new session)."""
        if _reads_login(self.body):

            def make() -> tuple[bytes, str]:
                value, ctype = self.value(scope.fresh())  # the login of this try
                return encode_body(value, ctype, what)

            return make, self.content_type
        value, ctype = self.value(scope)
        if value is None:
            return None, ctype
        return encode_body(value, ctype, what)


def _reads_login(template: Any) -> bool:
    if isinstance(template, str):
        return "login" in template and "${" in template
    if isinstance(template, dict):
        return any(_reads_login(v) for v in template.values())
    if isinstance(template, list):
        return any(_reads_login(v) for v in template)
    return False


def read_request(
    opts: Options,
    *,
    url_key: str,
    url_default: str | None,
    methods: set[str],
    method_default: str,
    body_default: Any,
) -> RequestTemplate:
    """The request options of a stage (their problems reported through ``opts``)."""
    headers = opts.get("headers", dict, {})
    for k, v in headers.items():
        if not isinstance(v, str | int | float) or isinstance(v, bool):
            opts.error("headers", f"header {k!r}: expected a text value (a template)")
            continue
        # The literal text is checked now; what the values add is checked per order.
        problem = header_problem(literal_text(str(v)))
        if problem is not None:
            opts.error("headers", f"header {k!r}: {problem}")
    body = opts.data.get("body", body_default)
    if body is not None and not isinstance(body, dict | list | str):
        opts.error("body", "expected a JSON template (a mapping or a list) or a text template")
    ctype = opts.get("content_type", str, "json", check=_media)
    return RequestTemplate(
        method=opts.get(
            "method",
            str,
            method_default,
            check=lambda m: (
                None if m.upper() in methods else f"expected one of {', '.join(sorted(methods))}"
            ),
        ).upper(),
        url=opts.get(url_key, str, url_default or "", required=url_default is None),
        body=body,
        content_type=CONTENT_TYPES.get(ctype, ctype),
        headers=tuple((str(k), str(v)) for k, v in headers.items()),
    )
