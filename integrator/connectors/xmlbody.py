"""XML bodies, both ways: an answer read safely into the JSON-like shape that answer paths are
written against (``parse_xml``), a SOAP Fault recognised in it (``soap_fault``), and what goes
out: values escaped for XML templates (``xml_escape``), form bodies (``form_bytes``) and one
helper that encodes a body for its content type (``encode_body``).

Reading is defusedxml's expat parser, refusing any DTD (so no entity of any kind: billion
laughs, quadratic blow-up, parameter and external entities, an external DTD: nothing is ever
fetched), with the parser's events turned into values here under two bounds: nesting depth
(``MAX_DEPTH``) and the number of elements and attributes (``MAX_NODES``). The byte size is
already bounded by the connector's MaxAnswerBytes.

The shape (what users write paths against), as xmltodict's convention with namespaces dropped:

- the document is ``{root: value}``; names are local names (prefixes and namespace URIs
  dropped): ``Envelope.Body.CreateOrderResponse.OrderId``;
- an element with only text is that text (a string: XML has no numbers), whitespace around it
  stripped; an empty element (or only whitespace) is ``None``;
- an element with attributes or children is an object: attributes as ``@name``, children by
  name, its text (stripped, when not only whitespace) as ``#text``;
- siblings of the same name are a list, in document order; the object's keys keep the order
  in which each name first appeared. Two namespaces' elements of one local name are one list;
- comments and processing instructions are dropped; CDATA is text.

Apart from ``http`` (no requests): the stages import it, and ``validate`` starts without it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from integrator.errors import PermanentError, UnreadableAnswer

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "SoapFault",
    "encode_body",
    "fault_text",
    "form_bytes",
    "is_xml_type",
    "parse_xml",
    "soap_fault",
    "xml_escape",
    "xml_value",
]

MAX_DEPTH = 64  # nesting levels of elements an answer may have
MAX_NODES = 100_000  # elements and attributes an answer may have
FORM_TYPE = "application/x-www-form-urlencoded"
JSON_TYPE = "application/json"
MAX_FAULT_MESSAGE = 500  # characters of a Fault's text kept as its message


class XmlRefused(ValueError):
    """Why a document cannot be used: a short text that never quotes the document."""


def media_type(content_type: str) -> str:
    """``text/xml; charset=utf-8`` → ``text/xml``."""
    return content_type.split(";", 1)[0].strip().lower()


def is_xml_type(content_type: str) -> bool:
    """``*/xml`` or ``*+xml`` (SOAP 1.2's ``application/soap+xml``)."""
    media = media_type(content_type)
    return media.endswith(("/xml", "+xml"))


def is_json_type(content_type: str) -> bool:
    """``application/json`` or ``*+json``; an empty type counts as JSON (the default)."""
    media = media_type(content_type)
    return not media or media.endswith(("/json", "+json"))


# ---------------------------------------------------------------------------------- reading
class _Builder:
    """An ElementTree parser target that builds the JSON-like value as elements end."""

    def __init__(self) -> None:
        # one frame per open element: [name, object (attributes and children), text parts]
        self.stack: list[tuple[str, dict[str, Any], list[str]]] = []
        self.nodes = 0
        self.root: dict[str, Any] | None = None

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        if len(self.stack) >= MAX_DEPTH:
            raise XmlRefused(f"XML nested deeper than {MAX_DEPTH} levels (refused)")
        self.nodes += 1 + len(attrib)
        if self.nodes > MAX_NODES:
            raise XmlRefused(f"XML with more than {MAX_NODES:,} elements and attributes (refused)")
        obj: dict[str, Any] = {}
        for name, value in attrib.items():
            obj.setdefault("@" + _local(name), value)
        self.stack.append((_local(tag), obj, []))

    def data(self, text: str) -> None:
        self.stack[-1][2].append(text)

    def end(self, tag: str) -> None:
        name, obj, parts = self.stack.pop()
        text = "".join(parts).strip() if parts else ""
        value: Any
        if obj:
            if text:
                obj["#text"] = text
            value = obj
        else:
            value = text or None
        parent = self.stack[-1][1] if self.stack else None
        if parent is None:
            self.root = {name: value}
            return
        if name not in parent:
            parent[name] = value
        elif isinstance(held := parent[name], list):  # a value is never a list: siblings
            held.append(value)
        else:
            parent[name] = [held, value]

    def close(self) -> dict[str, Any] | None:
        return self.root


def _local(name: str) -> str:
    """``{urn:x}Body`` → ``Body``."""
    return name.rsplit("}", 1)[-1] if name.startswith("{") else name


def xml_value(data: bytes) -> Any:
    """The JSON-like value of an XML document; XmlRefused (why) when it cannot be used."""
    from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden
    from defusedxml.ElementTree import DefusedXMLParser, ParseError

    builder = _Builder()
    parser = DefusedXMLParser(target=builder, forbid_dtd=True)
    try:
        parser.feed(data)  # at once: expat re-scans a token cut across feeds (quadratic)
        return parser.close()
    except XmlRefused:
        raise
    except DTDForbidden:
        raise XmlRefused(
            "XML that declares a DTD (a DOCTYPE): refused, as are entities and anything "
            "external; nothing was fetched"
        ) from None
    except EntitiesForbidden:
        raise XmlRefused("XML that declares an entity: refused") from None
    except DefusedXmlException:
        raise XmlRefused("XML that refers to something external: refused, not fetched") from None
    except ParseError as exc:
        line, column = getattr(exc, "position", (0, 0))
        reason = str(exc).split(":", 1)[0]  # expat's reason, without the position
        if "undefined entity" in reason:
            reason += " (entities are refused)"
        elif "encoding" in reason or "invalid token" in reason:
            reason += "; is its declared encoding the one it is in?"
        raise XmlRefused(
            f"XML that is not well-formed at line {line}, column {column + 1}: {reason}"
        ) from None
    except LookupError:  # an encoding Python does not know
        raise XmlRefused("XML in an encoding that is unknown (its declaration)") from None
    except RecursionError:
        raise XmlRefused("XML nested too deep to read") from None
    except MemoryError:
        raise XmlRefused("XML too large to hold in memory") from None


def parse_xml(data: bytes, what: str) -> Any:
    """``data`` (an XML document) as the JSON-like value described in the module's docstring;
    an UnreadableAnswer naming ``what`` and why (a DTD or entity refused, too deep, too many
    elements, not well-formed at line N) when it cannot be used. The message never quotes
    the document."""
    try:
        return xml_value(data)
    except XmlRefused as exc:
        raise UnreadableAnswer(f"{what} answered with {exc}") from None


def xml_problem(data: bytes) -> str:
    """Why ``data`` cannot be read as XML; "" when it can."""
    try:
        xml_value(data)
    except XmlRefused as exc:
        return str(exc)
    return ""


# ------------------------------------------------------------------------------ SOAP Faults
@dataclass(frozen=True)
class SoapFault:
    """A SOAP Fault found in an answer.

    ``version``: "1.1" or "1.2". ``code``: the fault code's local name (Client, Server,
    Sender, Receiver, VersionMismatch, MustUnderstand, or a dotted 1.1 code such as
    ``Client.Authentication``); ``subcode``: a 1.2 Subcode's local name, or "". ``message``:
    faultstring / Reason's text, as plain text (markup such as an HTML page inside is reduced
    to its text, whitespace collapsed, at most MAX_FAULT_MESSAGE characters). ``detail``: the
    converted detail / Detail, or None. ``sender_side``: the code is Client (1.1) or Sender
    (1.2): the request was refused and nothing was processed.
    """

    version: str
    code: str
    message: str
    detail: Any
    subcode: str = ""

    @property
    def sender_side(self) -> bool:
        """Client or Sender: the request was refused as sent; nothing was processed."""
        return self.code in ("Client", "Sender") or self.code.startswith("Client.")


def soap_fault(doc: Any) -> SoapFault | None:
    """The SOAP Fault in ``doc`` (a value from ``parse_xml``), 1.1 or 1.2; None when ``doc``
    is not a SOAP envelope whose Body holds a Fault."""
    fault = _at(doc, "Envelope", "Body", "Fault")
    if not isinstance(fault, dict):
        return None
    if "Code" in fault or "Reason" in fault:  # SOAP 1.2
        code = _first(fault.get("Code"))
        sub = _first(code.get("Subcode")) if isinstance(code, dict) else None
        reason = _first(fault.get("Reason"))
        texts = reason.get("Text") if isinstance(reason, dict) else reason
        return SoapFault(
            version="1.2",
            code=_qname(_at(code, "Value") if isinstance(code, dict) else code),
            message=_message(_english(texts)),
            detail=fault.get("Detail"),
            subcode=_qname(_at(sub, "Value") if isinstance(sub, dict) else sub),
        )
    return SoapFault(
        version="1.1",
        code=_qname(fault.get("faultcode")),
        message=_message(fault.get("faultstring")),
        detail=fault.get("detail"),
    )


def fault_text(data: bytes) -> str:
    """``SOAP Fault Server: the message`` for an XML answer holding a SOAP Fault (what an
    error message shows of it instead of the envelope's markup); "" for anything else
    (refused, not well-formed, no Fault)."""
    try:
        fault = soap_fault(xml_value(data))
    except XmlRefused:
        return ""
    if fault is None:
        return ""
    return f"SOAP Fault {fault.code or '(no code)'}: {fault.message or '(no message)'}"


def _at(value: Any, *names: str) -> Any:
    for name in names:
        value = _first(value)
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    return _first(value)


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def _english(texts: Any) -> Any:
    """Of several Reason/Text (one per language), the English one, else the first."""
    if isinstance(texts, list):
        for t in texts:
            if isinstance(t, dict) and str(t.get("@lang", "")).lower().startswith("en"):
                return t
        return _first(texts)
    return texts


def _qname(value: Any) -> str:
    """``soap:Client`` → ``Client``; the text of an element with attributes."""
    text = _text(value).strip()
    return text.rsplit(":", 1)[-1]


def _text(value: Any) -> str:
    """All the text in ``value`` (attributes left out): children in order, then ``#text``
    (the shape keeps no order between an element's text and its children)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(_text(v) for v in value)
    if isinstance(value, dict):
        parts = (_text(v) for k, v in value.items() if not k.startswith("@"))
        return " ".join(p for p in parts if p)  # children, then their parent's own text
    return str(value)


_MARKUP = re.compile(
    r"<(script|style)\b[^<>]{0,500}>.{0,100000}?</\1\s*>|<[!?/]?[A-Za-z][^<>]{0,500}>|<!--.{0,2000}?-->",
    re.S | re.I,
)
_SPACE = re.compile(r"\s+")


def _message(value: Any) -> str:
    """A Fault's text as a short plain message: an HTML page (escaped or as elements) is
    reduced to its words."""
    text = _text(value)
    if "<" in text:  # markup inside (an escaped HTML page): its words, entities resolved
        import html

        text = html.unescape(_MARKUP.sub(" ", text))
    text = _SPACE.sub(" ", text).strip()
    if len(text) > MAX_FAULT_MESSAGE:
        text = text[: MAX_FAULT_MESSAGE - 1].rstrip() + "…"
    return text


# ---------------------------------------------------------------------------------- writing
# What XML 1.0 can carry (its production Char); anything else cannot be escaped either.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ESCAPES = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;",
     "\t": "&#9;", "\n": "&#10;", "\r": "&#13;"}
)  # fmt: skip


def xml_escape(value: Any, what: str = "a value") -> str:
    """``value`` as text safe inside an XML element or attribute (either quote): ``& < > " '``
    escaped, and tab, newline and carriage return as character references (an attribute
    would turn them into spaces, a parser a CR into LF). None is ""; booleans are
    ``true``/``false``. A PermanentError naming ``what`` for a character XML 1.0 cannot
    carry (a control character, a lone surrogate), NaN, Infinity or a value that is not a
    scalar."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        raise PermanentError(f"{what}: {value} cannot be placed in XML; fix the mapping or data")
    if isinstance(value, int | float):
        return str(value)
    if not isinstance(value, str):
        raise PermanentError(
            f"{what}: a {type(value).__name__} cannot be placed in XML as text; pick one of "
            "its fields in the template"
        )
    bad = _NOT_XML.search(value)
    if bad is not None:
        raise PermanentError(
            f"{what}: character U+{ord(bad.group()):04X} at position {bad.start()} cannot be "
            "carried by XML 1.0 (not even escaped); clean the value in a mapping or script"
        )
    return value.translate(_ESCAPES)


_NAME = re.compile(r"[A-Za-z_][\w.\-]*(:[A-Za-z_][\w.\-]*)?\Z")


def xml_text(value: Any, what: str = "a value") -> str:
    """``value`` as it goes into an XML template: a scalar as escaped text
    (:func:`xml_escape`); a mapping as elements, written the way answers are read (keys are
    element names, ``@name`` an attribute, ``#text`` the element's own text, a list repeats
    its element, null an empty element): ``{"Line": [{"Sku": "A"}, {"Sku": "B"}]}`` is
    ``<Line><Sku>A</Sku></Line><Line><Sku>B</Sku></Line>``. A PermanentError naming the key
    for a name XML cannot have."""
    if not isinstance(value, dict):
        if isinstance(value, list):
            if any(not isinstance(v, dict) for v in value):
                raise PermanentError(
                    f"{what}: a list of values has no element names to be written as XML; "
                    'name them in the mapping ({"Sku": ["A", "B"]} is <Sku>A</Sku><Sku>B</Sku>)'
                    ". Nothing was sent"
                )
            return "".join(xml_text(v, what) for v in value)
        return xml_escape(value, what)
    out: list[str] = []
    for key, item in value.items():
        name = str(key)
        if name == "#text" or name.startswith("@"):
            continue
        if not _NAME.match(name):
            raise PermanentError(
                f"{what}: {name!r} cannot be an XML element name; rename it in the mapping"
            )
        for one in item if isinstance(item, list) else [item]:
            attrs = ""
            inner = ""
            if isinstance(one, dict):
                for k, v in one.items():
                    if str(k).startswith("@"):
                        if not _NAME.match(str(k)[1:]):
                            raise PermanentError(
                                f"{what}: {k!r} cannot be an XML attribute name; rename it"
                            )
                        attrs += f' {str(k)[1:]}="{xml_escape(v, what)}"'
                inner = xml_escape(one.get("#text"), what) + xml_text(one, what)
            elif one is not None:
                inner = xml_escape(one, what)
            out.append(f"<{name}{attrs}>{inner}</{name}>" if inner else f"<{name}{attrs}/>")
    return "".join(out)


def form_bytes(data: Any, what: str = "the request") -> bytes:
    """``data`` (a flat mapping of scalars) as an ``application/x-www-form-urlencoded`` body
    (UTF-8, ``+`` for spaces). None is an empty value, booleans ``true``/``false``. A
    PermanentError naming the key for a nested value (an object or a list), NaN or Infinity,
    or text that is not UTF-8, before anything is sent."""
    if not isinstance(data, dict):
        raise PermanentError(
            f"{what}: a form body is built from an object of fields, not a "
            f"{type(data).__name__}; fix the mapping or script. Nothing was sent"
        )
    fields: list[tuple[str, str]] = []
    for key, value in data.items():
        name = str(key)
        if isinstance(value, dict | list | tuple):
            raise PermanentError(
                f"{what}: form field {name!r} is "
                f"{'an object' if isinstance(value, dict) else 'a list'}; a form body holds "
                "only text, numbers, booleans and nulls. Flatten it in the mapping or script. "
                "Nothing was sent"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise PermanentError(f"{what}: form field {name!r} is {value}. Nothing was sent")
        if value is not None and not isinstance(value, str | int | float):
            raise PermanentError(
                f"{what}: form field {name!r} is a {type(value).__name__}, which a form cannot "
                "carry. Nothing was sent"
            )
        text = "" if value is None else ("true" if value is True else "false" if value is False
                                         else str(value))  # fmt: skip
        for part in (name, text):
            try:
                part.encode("utf-8")
            except UnicodeEncodeError:
                raise PermanentError(
                    f"{what}: form field {name.encode('utf-8', 'replace').decode()!r} holds a "
                    "lone surrogate (not UTF-8). Nothing was sent"
                ) from None
        fields.append((name, text))
    return urlencode(fields).encode("ascii")


_DECLARED = re.compile(r"""^\s*<\?xml[^>]*?\bencoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


def encode_body(value: Any, content_type: str, what: str = "the request") -> tuple[bytes, str]:
    """``value`` as a request body of ``content_type``: (bytes, the Content-Type to send).

    - text (a template's or a script's output) is sent as it is, encoded in the type's
      charset (UTF-8 by default, added to a ``text/*`` or XML type that names none); an XML
      type's text must be a well-formed document (no DTD), in the encoding it declares;
    - an object or list with a JSON type (or none) is JSON (``json_bytes``);
    - an object with ``application/x-www-form-urlencoded`` is a form (``form_bytes``).

    Anything else is a PermanentError naming ``what`` before anything is sent.
    """
    from integrator.connectors.bodies import json_bytes

    ctype = content_type.strip() or JSON_TYPE
    media = media_type(ctype)
    if isinstance(value, str):
        charset = _charset(ctype)
        if charset is None:
            charset = "utf-8"
            if media.startswith("text/") or is_xml_type(media):
                ctype += "; charset=utf-8"
        try:
            data = value.encode(charset)
        except LookupError:
            raise PermanentError(
                f"{what}: the Content-Type names charset {charset!r}, which is unknown"
            ) from None
        except UnicodeEncodeError as exc:
            raise PermanentError(
                f"{what}: the body has a character at position {exc.start} that {charset} "
                "cannot carry. Nothing was sent"
            ) from None
        if is_xml_type(media):
            declared = _DECLARED.match(value)
            if declared and _codec(declared.group(1)) != _codec(charset):
                raise PermanentError(
                    f"{what}: the XML declares encoding {declared.group(1)!r} but is sent as "
                    f"{charset}; remove the encoding from the declaration or set the charset of "
                    "the Content-Type. Nothing was sent"
                )
            problem = xml_problem(data)
            if problem:
                raise PermanentError(
                    f"{what}: the request body is {problem}"
                    "; fix the template or script that builds it. Nothing was sent"
                )
        return data, ctype
    if media == FORM_TYPE:
        return form_bytes(value, what), ctype
    if is_json_type(media):
        return json_bytes(value, what), ctype
    raise PermanentError(
        f"{what}: a {type(value).__name__} cannot be sent as {media}; a body of that type is "
        "text (a template, or a script returning text). Nothing was sent"
    )


def _charset(content_type: str) -> str | None:
    for param in content_type.split(";")[1:]:
        key, _, val = param.partition("=")
        if key.strip().lower() == "charset" and val.strip():
            return val.strip().strip('"').lower()
    return None


def _codec(name: str) -> str:
    import codecs

    try:
        return codecs.lookup(name).name
    except LookupError:
        return name.lower()
