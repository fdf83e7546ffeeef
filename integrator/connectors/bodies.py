"""JSON bodies, both ways: an answer's body read as JSON (``parse_json``), and a value made a
request body (``json_bytes``), each refusing what JSON cannot carry with a message that says
where; an answer read by its content type (``parse_answer``: XML through ``xmlbody``, safely,
else JSON). Apart from ``http`` so that the stages can import them without requests (``validate``
and ``test-script`` start without it); ``http`` exports them too."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from integrator.errors import PermanentError, UnreadableAnswer

if TYPE_CHECKING:
    import requests

__all__ = ["answer_of", "json_bytes", "parse_answer", "parse_json"]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    """A JSON number as a float; one too large for a float (1e999999) is refused, not inf."""
    value = float(text)
    if value in (_INF, -_INF):
        raise ValueError("a number too large for a float")
    return value


_INF = float("inf")
_ANSWER = "_integrator_answer"  # where a response keeps its parsed answer
# A ``\\uD800``-``\\uDFFF`` escape: half of a surrogate pair, or a lone surrogate
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def parse_json(resp: requests.Response, what: str, connector: str = "") -> Any:
    """The JSON body of ``resp``; an UnreadableAnswer (a retriable failure of the server,
    tagged with ``connector`` for the circuit breaker) when the transport could not read it
    (too large, cut short, past the deadline, a broken gzip), or it is not UTF-8, not JSON
    (NaN and Infinity included), has a number too large (1e999999, a 5000-digit integer), or
    is nested too deep."""
    why = getattr(resp, "unreadable", "")
    if not why:
        if not resp.content:
            return None
        try:
            found = json.loads(
                resp.content.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite
            )
            if _SURROGATE_ESCAPE.search(resp.content):
                # An escaped lone surrogate is valid JSON but not text: no log file, store or
                # ERP body can hold it. Pairs (an emoji, escaped) pass.
                json.dumps(found, ensure_ascii=False).encode("utf-8")
            return found
        except UnicodeEncodeError:
            why = "a body that is not UTF-8: a lone surrogate escaped (\\ud800-\\udfff)"
        except UnicodeDecodeError:
            why = "a body that is not UTF-8"
        except RecursionError:
            why = "JSON nested too deep to read"
        except ValueError as error:  # not JSON, NaN/Infinity, a number too long to convert
            ctype = resp.headers.get("Content-Type", "unknown content type")
            text = str(error)
            if "digits" in text or "too large" in text:
                why = f"a body that is not JSON it can use: a number too large ({ctype})"
            elif "is not JSON" in text:
                why = f"a body that is not JSON: {text.split(' is not')[0]} ({ctype})"
            else:
                why = f"a body that is not JSON ({ctype})"
    exc = UnreadableAnswer(
        f"{what} answered {resp.status_code} with {why}", status=resp.status_code
    )
    exc.connector, exc.failure = connector, "unreadable answer"
    raise exc


def parse_answer(resp: requests.Response, what: str, connector: str = "") -> Any:
    """The body of ``resp`` by its Content-Type: ``*/xml`` and ``*+xml`` (SOAP 1.2's
    ``application/soap+xml``) read safely as XML into the shape ``xmlbody`` describes
    (``Envelope.Body.CreateOrderResponse.OrderId``); anything else as ``parse_json`` reads
    it. Either way an UnreadableAnswer (tagged with ``connector``) when it cannot be used."""
    ctype = resp.headers.get("Content-Type")
    if not ctype or "xml" not in ctype.lower():  # the hot path: one lookup, one test
        return parse_json(resp, what, connector)
    from integrator.connectors.xmlbody import XmlRefused, is_xml_type, xml_value

    if not is_xml_type(ctype) or getattr(resp, "unreadable", None):
        return parse_json(resp, what, connector)  # the transport's reason, or JSON's
    if not resp.content:
        return None
    try:
        return xml_value(resp.content)
    except XmlRefused as why:
        exc = UnreadableAnswer(
            f"{what} answered {resp.status_code} with {why}", status=resp.status_code
        )
        exc.connector, exc.failure = connector, "unreadable answer"
        raise exc from None


def answer_of(resp: requests.Response, what: str, connector: str = "") -> Any:
    """The parsed answer of ``resp`` (:func:`parse_answer`), read once: the connector's answer
    rules and the stage that called it share it."""
    found = getattr(resp, _ANSWER, _ANSWER)
    if found is _ANSWER:
        found = parse_answer(resp, what, connector)
        setattr(resp, _ANSWER, found)
    return found


def json_bytes(value: Any, what: str) -> bytes:
    """``value`` as a JSON request body; a PermanentError naming ``what`` and the first key
    path that JSON cannot carry (NaN, Infinity, a set, bytes, any other object), before
    anything is sent."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (ValueError, TypeError, RecursionError):
        found = _not_json(value, "$", 0)
        where, why = found if found is not None else ("$", "a value JSON cannot carry")
        raise PermanentError(
            f"{what}: the request body is not JSON: {why} at {where}; fix the mapping or "
            "script that builds it. Nothing was sent"
        ) from None


_MAX_DEPTH = 500


def _not_json(value: Any, path: str, depth: int) -> tuple[str, str] | None:
    """(key path, what is wrong) of the first value in ``value`` that JSON cannot carry."""
    if depth > _MAX_DEPTH:
        return path, f"nesting deeper than {_MAX_DEPTH} levels (or a circular reference)"
    if value is None or isinstance(value, bool | int):
        return None
    if isinstance(value, float):
        if value != value:
            return path, "NaN (JSON has no NaN)"
        if value in (_INF, -_INF):
            return path, "Infinity (JSON has no Infinity)"
        return None
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path, "a string with a lone surrogate (not UTF-8)"
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str | int | float | bool) and k is not None:
                return path, f"a key of type {type(k).__name__} ({str(k)[:40]!r})"
            key = str(k)
            sub = f"{path}.{key}" if key.isidentifier() else f"{path}[{key!r}]"
            if isinstance(k, float) and (k != k or k in (_INF, -_INF)):
                return sub, "a NaN or Infinity key"
            found = _not_json(v, sub, depth + 1)
            if found is not None:
                return found
        return None
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            found = _not_json(v, f"{path}[{i}]", depth + 1)
            if found is not None:
                return found
        return None
    return path, f"a {type(value).__name__}, which JSON cannot carry"
