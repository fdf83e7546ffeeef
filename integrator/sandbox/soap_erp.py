"""A SOAP ERP: ``POST /soap``, SOAP 1.1 and 1.2, answering in the version it was asked in.

- SOAP 1.1: ``Content-Type: text/xml``, a ``SOAPAction`` header (``"urn:sandbox-erp/Login"``
  etc., or empty), the envelope ``http://schemas.xmlsoap.org/soap/envelope/``; a Fault has
  ``faultcode`` (``soap:Client`` / ``soap:Server``), ``faultstring`` and ``detail/ErrorCode``,
  with HTTP 500.
- SOAP 1.2: ``Content-Type: application/soap+xml`` (its ``action`` parameter optional), the
  envelope ``http://www.w3.org/2003/05/soap-envelope``; a Fault has ``Code/Value``
  (``env:Sender`` / ``env:Receiver``), ``Reason/Text`` and ``Detail/ErrorCode``, with HTTP 400
  for Sender faults and 500 for Receiver faults.

Operations, in the namespace ``urn:sandbox-erp`` (their children may be qualified or not):
``Login(User, Password)`` → ``LoginResponse/SessionToken``; ``FindOrder(Number)`` →
``FindOrderResponse/Found`` (true/false), ``Count`` and, when found, ``OrderId``, ``Total``
and ``Lines/Line{ExternalId, LineId}``; ``CreateOrder(Order{Number, Email, Total,
Lines/Line{ProductCode, Quantity, Price, ExternalId}})`` → ``CreateOrderResponse/OrderId`` and
``Lines/Line{ExternalId, LineId}``. Every operation but Login needs the session token in the
Header: ``<Session xmlns="urn:sandbox-erp"><Token>…</Token></Session>``; a missing, unknown or
expired one is a Client/Sender fault with ErrorCode ``SESSION_EXPIRED``. An unknown product is
a Client fault ``UNKNOWN_PRODUCT`` and nothing is created; a second CreateOrder with the same
Number is accepted (a duplicate, as a real ERP would make; ``/_sandbox/stats`` names it).

Requests are parsed with defusedxml: a DTD, an entity declaration or an external reference is
refused with a Client fault (``INVALID_XML``) before anything in it is expanded.

Faults (``/_sandbox/faults``): route names ``login``, ``find``, ``create``, ``envelope``
(requests that name no operation: unreadable, wrong version, unknown operation); own actions
``app_error`` (a Fault, nothing done: a Client fault ``REFUSED`` on create, a Server fault
``SERVER_ERROR`` elsewhere) and ``expire_sessions``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from integrator.sandbox.base import JsonServer, Request, Response, Route
from integrator.sandbox.erp_common import (
    CATALOGUE,
    PBKDF2_ITERATIONS,
    OrderBook,
    Password,
    Sessions,
    amount,
)

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

__all__ = ["NS", "SOAP11", "SOAP12", "SoapErpSandbox", "soap_action"]

NS = "urn:sandbox-erp"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
OPERATIONS = {"Login": "login", "FindOrder": "find", "CreateOrder": "create"}  # → route name
CONTENT_TYPES = {"1.1": "text/xml; charset=utf-8", "1.2": "application/soap+xml; charset=utf-8"}


def soap_action(operation: str) -> str:
    """The SOAPAction of an operation (SOAP 1.1 header, or SOAP 1.2's ``action``)."""
    return f"{NS}/{operation}"


class _Fault(Exception):
    """A SOAP Fault to answer: the client's (Client/Sender) or the server's."""

    def __init__(
        self, client: bool, code: str, message: str, kind: str = "", status: int = 0
    ) -> None:
        super().__init__(message)
        self.client, self.code, self.message = client, code, message
        self.kind = kind  # VersionMismatch instead of Client/Server
        self.status = status  # instead of the version's (415 for a body that is not SOAP)


@dataclass
class _Call:
    version: str  # "1.1" or "1.2": how to answer
    operation: str = ""
    op: Element | None = None
    header: Element | None = None
    number: str | None = None
    fault: _Fault | None = None  # what the envelope itself gets


def _version(req: Request) -> tuple[str, str | None]:
    """("1.1" | "1.2", the action the request names or None) from its headers."""
    ctype = req.headers.get("content-type", "")
    media, *params = [p.strip() for p in ctype.split(";")]
    media = media.lower()
    if media == "application/soap+xml":
        action = None
        for p in params:
            key, _, value = p.partition("=")
            if key.strip().lower() == "action":
                action = value.strip().strip('"')
        return "1.2", action
    if media == "text/xml":
        raw = req.headers.get("soapaction")
        return "1.1", None if raw is None else raw.strip().strip('"')
    return "", None


def _local(el: Element) -> tuple[str, str]:
    """(namespace, local name) of an element."""
    tag = el.tag if isinstance(el.tag, str) else ""
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        return ns, name
    return "", tag


def _child(el: Element | None, name: str) -> Element | None:
    """The first child called ``name`` in the operations' namespace or in none."""
    if el is None:
        return None
    for c in el:
        ns, local = _local(c)
        if local == name and ns in (NS, ""):
            return c
    return None


def _text(el: Element | None, name: str) -> str | None:
    c = _child(el, name)
    return None if c is None else (c.text or "").strip()


def _parse(req: Request) -> _Call:
    """The envelope, read safely: its operation, or the fault it gets."""
    from xml.etree.ElementTree import ParseError

    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    version, action = _version(req)
    if not version:
        fault = _Fault(
            True, "UNSUPPORTED_MEDIA_TYPE",
            f"Content-Type {req.headers.get('content-type', '(none)')!r}: SOAP 1.1 is sent as "
            "text/xml (with a SOAPAction header), SOAP 1.2 as application/soap+xml", status=415,
        )  # fmt: skip
        return _Call("1.1", fault=fault)
    if version == "1.1" and action is None:
        fault = _Fault(True, "NO_SOAPACTION", f"SOAP 1.1 needs a SOAPAction header, e.g. "
                       f'SOAPAction: "{soap_action("Login")}" (or "")')  # fmt: skip
        return _Call(version, fault=fault)
    try:
        root = fromstring(req.raw, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        what = type(exc).__name__
        fault = _Fault(True, "INVALID_XML", f"refused, not parsed: {what} (no DTD, entity "
                       "or external reference is accepted)")  # fmt: skip
        return _Call(version, fault=fault)
    except ParseError as exc:
        return _Call(version, fault=_Fault(True, "INVALID_XML", f"not well-formed XML: {exc}"))
    env_ns = SOAP11 if version == "1.1" else SOAP12
    ns, local = _local(root)
    if local != "Envelope" or ns not in (SOAP11, SOAP12):
        fault = _Fault(True, "INVALID_ENVELOPE", f"expected a SOAP Envelope ({{{env_ns}}}"
                       f"Envelope), got {root.tag}")  # fmt: skip
        return _Call(version, fault=fault)
    if ns != env_ns:
        other = "1.1" if ns == SOAP11 else "1.2"
        fault = _Fault(
            False, "VERSION_MISMATCH",
            f"a SOAP {other} envelope sent as SOAP {version} (Content-Type "
            f"{req.headers.get('content-type')!r})", kind="VersionMismatch",
        )  # fmt: skip
        return _Call(version, fault=fault)
    bodies = [c for c in root if _local(c) == (env_ns, "Body")]
    headers = [c for c in root if _local(c) == (env_ns, "Header")]
    ops = list(bodies[0]) if len(bodies) == 1 else []
    if len(bodies) != 1 or len(headers) > 1 or len(ops) != 1:
        fault = _Fault(True, "INVALID_ENVELOPE", "an Envelope holds at most one Header and one "
                       "Body, and the Body exactly one operation element")  # fmt: skip
        return _Call(version, fault=fault)
    header = headers[0] if headers else None
    ns, operation = _local(ops[0])
    if ns != NS or operation not in OPERATIONS:
        fault = _Fault(
            True, "UNKNOWN_OPERATION",
            f"unknown operation {ops[0].tag}: expected {', '.join(OPERATIONS)} in namespace {NS}",
        )  # fmt: skip
        return _Call(version, fault=fault)
    if action and action != soap_action(operation):
        fault = _Fault(True, "ACTION_MISMATCH", f"the action {action!r} does not match the "
                       f"operation {operation} (expected {soap_action(operation)!r})")  # fmt: skip
        return _Call(version, fault=fault)
    number = (
        _text(_child(ops[0], "Order"), "Number")
        if operation == "CreateOrder"
        else (_text(ops[0], "Number") if operation == "FindOrder" else None)
    )
    return _Call(version, operation, ops[0], header, number)


def _envelope(version: str, body: str) -> bytes:
    prefix, ns = ("soap", SOAP11) if version == "1.1" else ("env", SOAP12)
    return (
        f'<?xml version="1.0" encoding="utf-8"?>\n<{prefix}:Envelope xmlns:{prefix}="{ns}">'
        f"<{prefix}:Body>{body}</{prefix}:Body></{prefix}:Envelope>"
    ).encode()


def _element(name: str, value: Any) -> str:
    return f"<{name}>{escape(str(value))}</{name}>"


def fault_answer(version: str, fault: _Fault) -> Response:
    """A Fault in the version asked in (and its HTTP status)."""
    detail = f'<ErrorCode xmlns="{NS}">{escape(fault.code)}</ErrorCode>'
    if version == "1.1":
        code = fault.kind or ("Client" if fault.client else "Server")
        body = (
            f"<soap:Fault><faultcode>soap:{code}</faultcode>"
            f"{_element('faultstring', fault.message)}<detail>{detail}</detail></soap:Fault>"
        )
        status = 500
    else:
        code = fault.kind or ("Sender" if fault.client else "Receiver")
        body = (
            f"<env:Fault><env:Code><env:Value>env:{code}</env:Value></env:Code>"
            f'<env:Reason><env:Text xml:lang="en">{escape(fault.message)}</env:Text>'
            f"</env:Reason><env:Detail>{detail}</env:Detail></env:Fault>"
        )
        status = 400 if code == "Sender" else 500
    return Response(
        fault.status or status,
        raw=_envelope(version, body),
        headers={"Content-Type": CONTENT_TYPES[version]},
    )


def _lines_xml(order: dict[str, Any]) -> str:
    lines = "".join(
        f"<Line>{_element('ExternalId', line['external_id'])}"
        f"{_element('LineId', line['line_id'])}</Line>"
        for line in order["lines"]
    )
    return f"<Lines>{lines}</Lines>"


class SoapErpSandbox(JsonServer):
    """A SOAP ERP with a session token in the SOAP Header."""

    ROUTES = ()
    extra_routes = ("login", "find", "create", "envelope")
    extra_actions = ("app_error", "expire_sessions")
    json_body = False  # XML: read from Request.raw

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        user: str,
        password: str,
        seed: int = 7,
        session_ttl: float = 3600.0,
        pbkdf2_iterations: int = PBKDF2_ITERATIONS,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(host, port, seed)
        self.user = user
        self.password = Password(password, pbkdf2_iterations)
        self.sessions = Sessions(session_ttl) if clock is None else Sessions(session_ttl, clock)
        self.book = OrderBook("SO{:06d}")
        self.counts_lock = threading.Lock()
        self.logins = 0
        self.refused_logins = 0
        self.operations: dict[str, int] = {}

    def route(self, req: Request) -> tuple[str, Route, list[str]] | None:
        """``POST /soap``, named by its operation (``envelope`` when it names none)."""
        if req.path != "/soap":
            return None
        if req.method != "POST":
            return (
                "envelope",
                lambda _r, _a: Response(
                    405, {"detail": "/soap: POST a SOAP envelope"}, {"Allow": "POST"}
                ),
                [],
            )
        call = _parse(req)
        name = OPERATIONS.get(call.operation, "envelope")
        return name, lambda r, _a: self.serve(r, call, name), [call.number or ""]

    def order_number(self, req: Request, args: list[str]) -> str | None:
        return args[0] if args and args[0] else None

    def expire_sessions(self) -> None:
        """Every session issued so far is dead."""
        self.sessions.expire_all()

    def serve(self, req: Request, call: _Call, name: str) -> Response:
        if req.fault == "expire_sessions":
            self.expire_sessions()
        try:
            if call.fault is not None:
                raise call.fault
            with self.counts_lock:
                self.operations[call.operation] = self.operations.get(call.operation, 0) + 1
            if call.operation != "Login":
                token = _text(_child(call.header, "Session"), "Token")
                if not self.sessions.check(token or ""):  # "": never issued
                    raise _Fault(True, "SESSION_EXPIRED", "the session is missing or expired: "
                                 "log in again")  # fmt: skip
            if req.fault == "app_error":
                if name == "create":
                    raise _Fault(True, "REFUSED", "injected: the ERP refused this order "
                                 "(nothing was created)")  # fmt: skip
                raise _Fault(False, "SERVER_ERROR", "injected: the order database is busy")
            assert call.op is not None
            body = {"Login": self._login, "FindOrder": self._find, "CreateOrder": self._create}[
                call.operation
            ](call.op)
        except _Fault as fault:
            return fault_answer(call.version, fault)
        return Response(
            200,
            raw=_envelope(call.version, body),
            headers={"Content-Type": CONTENT_TYPES[call.version]},
        )

    def _login(self, op: Element) -> str:
        user, password = _text(op, "User"), _text(op, "Password")
        ok = self.password.check(password or "") and user == self.user
        with self.counts_lock:
            if ok:
                self.logins += 1
            else:
                self.refused_logins += 1
        if not ok:
            raise _Fault(True, "LOGIN_FAILED", "invalid user or password")
        token = self.sessions.issue(self.user)
        return (
            f'<LoginResponse xmlns="{NS}">{_element("SessionToken", token)}'
            f"{_element('ExpiresIn', int(self.sessions.ttl))}</LoginResponse>"
        )

    def _find(self, op: Element) -> str:
        number = _text(op, "Number")
        if not number:
            raise _Fault(True, "INVALID_REQUEST", "FindOrder needs a Number")
        found = self.book.find(lambda o: o["number"] == number)
        inner = _element("Found", "true" if found else "false") + _element("Count", len(found))
        if found:
            inner += (
                _element("OrderId", found[0]["name"])
                + _element("Total", found[0].get("total", ""))
                + _lines_xml(found[0])
            )
        return f'<FindOrderResponse xmlns="{NS}">{inner}</FindOrderResponse>'

    def _create(self, op: Element) -> str:
        order_el = _child(op, "Order")
        if order_el is None:
            raise _Fault(True, "INVALID_ORDER", "CreateOrder needs an Order element")
        number = _text(order_el, "Number")
        if not number:
            raise _Fault(True, "INVALID_ORDER", "Order/Number is required")
        lines: list[dict[str, Any]] = []
        lines_el = _child(order_el, "Lines")
        for i, line_el in enumerate(lines_el if lines_el is not None else []):
            if _local(line_el) not in ((NS, "Line"), ("", "Line")):
                raise _Fault(True, "INVALID_ORDER", f"Order/Lines holds Line elements only, "
                             f"not {line_el.tag}")  # fmt: skip
            code = _text(line_el, "ProductCode") or ""
            if code not in CATALOGUE:
                raise _Fault(True, "UNKNOWN_PRODUCT", f"Unknown product: {code}")
            qty_text, price_text = _text(line_el, "Quantity"), _text(line_el, "Price")
            qty, price = amount(qty_text or ""), amount(price_text or "")
            if qty is None or qty <= 0 or qty != qty.to_integral_value():
                raise _Fault(True, "INVALID_ORDER", f"Line {i + 1}: Quantity is a whole number "
                             f"above 0, got {qty_text!r}")  # fmt: skip
            if price is None:
                raise _Fault(True, "INVALID_ORDER", f"Line {i + 1}: Price is a decimal number, "
                             f"got {price_text!r}")  # fmt: skip
            lines.append({
                "product_code": code, "quantity": int(qty), "price": str(price),
                "external_id": _text(line_el, "ExternalId") or "",
            })  # fmt: skip
        total_text = _text(order_el, "Total")
        if total_text:
            total = amount(total_text)
            if total is None:
                raise _Fault(True, "INVALID_ORDER", f"Order/Total is a decimal number, got "
                             f"{total_text!r}")  # fmt: skip
        else:
            total = sum((Decimal(x["price"]) * x["quantity"] for x in lines), Decimal(0))
        rec = self.book.add(
            number,
            {"number": number, "email": _text(order_el, "Email") or "", "total": str(total)},
            lines,
        )
        return (
            f'<CreateOrderResponse xmlns="{NS}">{_element("OrderId", rec["name"])}'
            f"{_lines_xml(rec)}</CreateOrderResponse>"
        )

    def preload(self, number: str, total: str) -> None:
        """An order the ERP already holds (delivered before the sandbox started); not counted
        as created."""
        self.book.add(number, {"number": number, "email": "", "total": total}, [], counted=False)

    def stats(self) -> dict[str, Any]:
        """Orders (and duplicates), logins, calls per operation, password and session checks."""
        with self.counts_lock:
            counts = {
                "logins": {"Login": self.logins},
                "refused_logins": self.refused_logins,
                "operations": dict(self.operations),
            }
        return {
            **self.book.stats(),
            **counts,
            "password_checks": self.password.checks,
            **self.sessions.stats(),
        }

    def orders_for(self, number: str) -> list[dict[str, Any]]:
        """Every order created with ``number`` (its id, lines, total)."""
        return self.book.find(lambda o: o["number"] == number)
