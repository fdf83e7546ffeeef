"""An Odoo-like JSON-RPC ERP: ``POST /jsonrpc``, JSON-RPC 2.0 envelopes, errors as HTTP 200.

Every call is ``{"jsonrpc": "2.0", "method": "call", "params": {"service": S, "method": M,
"args": [...]}, "id": N}`` and is answered ``{"jsonrpc": "2.0", "id": N, "result": ...}`` or,
for an application error, HTTP 200 with ``{"jsonrpc": "2.0", "id": N, "error": {"code": 200,
"message": "Odoo Server Error", "data": {"name": "odoo.exceptions.UserError", "message":
"..."}}}`` (as Odoo answers). Two ways in:

- Odoo's own: ``common.login(db, login, password)`` → the uid (``false`` for bad credentials),
  then ``object.execute_kw(db, uid, password, model, method, args[, kwargs])``: the password is
  checked on every call with a full PBKDF2 derivation, as Odoo does (``erp_common.Password``);
- a session: ``common.session_login(db, login, password)`` → ``[uid, key]``, then
  ``object.execute(model, method, args[, kwargs])`` with the header ``Authorization: Session
  base64(login:uid:key)`` (a dictionary look-up); a dead or unknown session answers the error
  code 100, ``odoo.http.SessionExpiredException``.

One model, ``sale.order``: ``search_read``, ``search``, ``search_count`` (domains of
``[field, "=" | "!=" | "in", value]`` leaves on id, name, client_order_ref, partner_email) and
``create``; a product code not in the catalogue is a UserError ``Unknown product: CODE`` and
nothing is created; a second create with the same ``client_order_ref`` makes a duplicate, as a
real ERP would (``/_sandbox/stats`` names them).

Faults (``/_sandbox/faults``): route names ``login`` (common.*), ``search`` (search_read,
search, search_count), ``create``, ``call`` (anything else, envelopes in error included); its
own actions ``app_error`` (the route answers an application error, doing nothing) and
``expire_sessions`` (every session dies, then the call is served: it finds its own dead).
``drop_after_commit`` on ``create`` creates the order and closes the connection unanswered.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from integrator.sandbox.base import JsonServer, Request, Response, Route
from integrator.sandbox.erp_common import (
    CATALOGUE,
    PBKDF2_ITERATIONS,
    OrderBook,
    Password,
    Sessions,
    amount,
)

__all__ = ["JsonRpcErpSandbox", "odoo_error"]

MODEL = "sale.order"
# What a search_read row holds (``fields`` chooses among these; ``id`` always comes).
READ_FIELDS = ("id", "name", "client_order_ref", "partner_email", "amount_total", "order_line")
DOMAIN_FIELDS = frozenset({"id", "name", "client_order_ref", "partner_email"})
CREATE_FIELDS = frozenset({"client_order_ref", "partner_email", "amount_total", "order_line"})
LINE_FIELDS = frozenset({"product_code", "qty", "price", "external_id"})
SEARCH_METHODS = frozenset({"search_read", "search", "search_count"})
# Each method's parameters after the first, in order (the first is the domain or the values).
PARAMS: dict[str, tuple[str, ...]] = {
    "search_read": ("fields", "offset", "limit", "order"),
    "search": ("offset", "limit", "order"),
    "search_count": ("limit",),
    "create": (),
}


def odoo_error(
    rid: Any, name: str, message: str, *, code: int = 200, title: str = "Odoo Server Error"
) -> dict[str, Any]:
    """An Odoo error answer (sent with HTTP 200)."""
    return {
        "jsonrpc": "2.0",
        "id": rid,
        "error": {
            "code": code,
            "message": title,
            "data": {
                "name": name,
                "debug": f"Traceback (most recent call last):\n  (sandbox)\n{name}: {message}\n",
                "message": message,
                "arguments": [message],
                "context": {},
            },
        },
    }


def _rpc_error(rid: Any, code: int, message: str, detail: str) -> dict[str, Any]:
    """A JSON-RPC 2.0 envelope error (-32700 … -32602), with what was wrong in ``data``."""
    return {
        "jsonrpc": "2.0",
        "id": rid,
        "error": {"code": code, "message": message, "data": {"message": detail}},
    }


class _Refusal(Exception):
    """An application error to answer: (data.name, message)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name, self.message = name, message


def _shown(value: Any) -> str:
    """A value the caller sent, for a message: its repr, cut at 120 characters."""
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _user_error(message: str) -> _Refusal:
    return _Refusal("odoo.exceptions.UserError", message)


def _value_error(message: str) -> _Refusal:
    return _Refusal("builtins.ValueError", message)


def _type_error(message: str) -> _Refusal:
    return _Refusal("builtins.TypeError", message)


@dataclass
class _Call:
    """One envelope, read: an envelope ``error`` to answer, or the call."""

    rid: Any = None
    service: str = ""
    method: str = ""
    args: list[Any] = field(default_factory=list)
    error: dict[str, Any] | None = None
    model: str = ""
    model_method: str = ""
    number: str | None = None  # the order it concerns (faults aimed at numbers)


def _envelope(raw: bytes) -> _Call:
    """The call a body makes, or the JSON-RPC error it gets."""
    try:
        body = json.loads(raw)
    except ValueError:
        return _Call(error=_rpc_error(None, -32700, "Parse error", "the body is not JSON"))
    if not isinstance(body, dict):
        what = "a batch (a list) is not supported" if isinstance(body, list) else "not an object"
        return _Call(error=_rpc_error(None, -32600, "Invalid Request", what))
    rid = body.get("id")
    if body.get("jsonrpc") != "2.0":
        return _Call(error=_rpc_error(rid, -32600, "Invalid Request", 'expected "jsonrpc": "2.0"'))
    if body.get("method") != "call":
        return _Call(
            error=_rpc_error(rid, -32601, "Method not found", 'the method is always "call"')
        )
    params = body.get("params")
    if not isinstance(params, dict):
        detail = 'expected "params": {"service": ..., "method": ..., "args": [...]}'
        return _Call(error=_rpc_error(rid, -32602, "Invalid params", detail))
    service, method, args = params.get("service"), params.get("method"), params.get("args", [])
    if not isinstance(service, str) or not isinstance(method, str) or not isinstance(args, list):
        detail = "params.service and params.method are text, params.args a list"
        return _Call(error=_rpc_error(rid, -32602, "Invalid params", detail))
    call = _Call(rid, service, method, args)
    if service == "object":
        at = {"execute_kw": 3, "execute": 0}.get(method)
        if at is not None and len(args) > at + 1:
            model, model_method = args[at], args[at + 1]
            if isinstance(model, str) and isinstance(model_method, str):
                call.model, call.model_method = model, model_method
                rest = args[at + 2] if len(args) > at + 2 else None
                call.number = _number_of(model_method, rest)
    return call


def _number_of(method: str, args: Any) -> str | None:
    """The client_order_ref a create or a search is about, if it names one."""
    if not isinstance(args, list) or not args:
        return None
    first = args[0]
    if method == "create":
        vals = first[0] if isinstance(first, list) and first else first
        ref = vals.get("client_order_ref") if isinstance(vals, dict) else None
        return ref if isinstance(ref, str) else None
    if method in SEARCH_METHODS and isinstance(first, list):
        for leaf in first:
            if isinstance(leaf, list) and len(leaf) == 3 and leaf[0] == "client_order_ref":
                return str(leaf[2])
    return None


class JsonRpcErpSandbox(JsonServer):
    """An Odoo-like ERP over JSON-RPC, with ``sale.order`` and two ways to log in."""

    # One HTTP route; calls are known by what they do (the names faults and stats use).
    ROUTES = ()
    extra_routes = ("login", "search", "create", "call")
    extra_actions = ("app_error", "expire_sessions")
    json_body = False  # a body that is not JSON is a JSON-RPC parse error, not a 400

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        db: str,
        login: str,
        password: str,
        seed: int = 7,
        uid: int = 2,
        session_ttl: float = 3600.0,
        pbkdf2_iterations: int = PBKDF2_ITERATIONS,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(host, port, seed)
        self.db, self.login, self.uid = db, login, uid
        self.password = Password(password, pbkdf2_iterations)
        self.sessions = Sessions(session_ttl) if clock is None else Sessions(session_ttl, clock)
        self.book = OrderBook("S{:05d}")
        self.counts_lock = threading.Lock()
        self.logins: dict[str, int] = {"login": 0, "session_login": 0}
        self.refused_logins = 0
        self.methods: dict[str, dict[str, int]] = {}  # model → method → calls

    # ------------------------------------------------------------------ routing
    def route(self, req: Request) -> tuple[str, Route, list[str]] | None:
        """``POST /jsonrpc``, named by what the envelope asks."""
        if req.path != "/jsonrpc":
            return None
        if req.method != "POST":
            return (
                "call",
                lambda _r, _a: Response(
                    405, {"detail": "/jsonrpc: POST a JSON-RPC 2.0 envelope"}, {"Allow": "POST"}
                ),
                [],
            )
        call = _envelope(req.raw)
        if call.error is not None or call.service not in ("common", "object"):
            name = "call"
        elif call.service == "common":
            name = "login" if call.method in ("login", "session_login") else "call"
        elif call.model_method in SEARCH_METHODS:
            name = "search"
        else:
            name = "create" if call.model_method == "create" else "call"
        return name, lambda r, _a: self.serve(r, call, name), [call.number or ""]

    def order_number(self, req: Request, args: list[str]) -> str | None:
        return args[0] if args and args[0] else None

    def expire_sessions(self) -> None:
        """Every session issued so far is dead (the next call with one is refused)."""
        self.sessions.expire_all()

    # ------------------------------------------------------------------ serving
    def serve(self, req: Request, call: _Call, name: str) -> Response:
        """The answer to one envelope (always HTTP 200, as JSON-RPC has it)."""
        if req.fault == "expire_sessions":
            self.expire_sessions()
        if call.error is not None:
            return Response(200, call.error)
        try:
            result = self._serve(req, call, name)
        except _Refusal as exc:
            return Response(200, odoo_error(call.rid, exc.name, exc.message))
        except _SessionExpired:
            return Response(
                200,
                odoo_error(
                    call.rid, "odoo.http.SessionExpiredException", "Session expired",
                    code=100, title="Odoo Session Expired",
                ),
            )  # fmt: skip
        return Response(200, {"jsonrpc": "2.0", "id": call.rid, "result": result})

    def _serve(self, req: Request, call: _Call, name: str) -> Any:
        if call.service == "common":
            if call.method == "version":
                return {"server_version": "17.0", "server_serie": "17.0", "protocol_version": 1}
            if call.method not in ("login", "session_login"):
                raise _Refusal(
                    "builtins.NameError",
                    f"method {_shown(call.method)} is not available on service 'common' "
                    "(login, session_login, version)",
                )
            if req.fault == "app_error":
                raise _Refusal("psycopg2.OperationalError", "injected: the database is down")
            return self._login(call)
        if call.service != "object":
            raise _Refusal(
                "builtins.NameError",
                f"service {_shown(call.service)} is not available here (common, object)",
            )
        if call.method == "execute_kw":
            model, method, args, kwargs = self._execute_kw(call.args)
        elif call.method == "execute":
            model, method, args, kwargs = self._execute(req, call.args)
        else:
            raise _Refusal(
                "builtins.NameError",
                f"method {_shown(call.method)} is not available on service 'object' "
                "(execute_kw with a password, execute with a session)",
            )
        with self.counts_lock:
            calls = self.methods.setdefault(model, {})
            calls[method] = calls.get(method, 0) + 1
        if req.fault == "app_error":
            if name == "create":
                raise _Refusal(
                    "odoo.exceptions.ValidationError",
                    "injected: the ERP refused this order (nothing was created)",
                )
            raise _Refusal(
                "psycopg2.errors.SerializationFailure",
                "injected: could not serialize access due to concurrent update",
            )
        return self._model(model, method, args, kwargs)

    def _check_db(self, db: Any) -> None:
        if db != self.db:
            shown = db if isinstance(db, str) else json.dumps(db)
            raise _Refusal(
                "psycopg2.OperationalError",
                f'connection to server failed: FATAL:  database "{shown}" does not exist',
            )

    def _login(self, call: _Call) -> Any:
        """common.login → uid or false; common.session_login → [uid, key] or AccessDenied."""
        if len(call.args) != 3:
            raise _type_error(
                f"{call.method}() takes 3 arguments (db, login, password), {len(call.args)} given"
            )
        db, login, password = call.args
        self._check_db(db)
        ok = self.password.check(password) and login == self.login
        with self.counts_lock:
            if not ok:
                self.refused_logins += 1
            else:
                self.logins[call.method] += 1
        if call.method == "login":
            return self.uid if ok else False
        if not ok:
            raise _Refusal("odoo.exceptions.AccessDenied", "Access Denied")
        return [self.uid, self.sessions.issue((self.login, self.uid))]

    def _execute_kw(self, args: list[Any]) -> tuple[str, str, list[Any], dict[str, Any]]:
        """(db, uid, password, model, method, args[, kwargs]): the password checked now."""
        if len(args) not in (6, 7):
            raise _type_error(
                "execute_kw() takes 6 or 7 arguments (db, uid, password, model, method, args"
                f"[, kwargs]), {len(args)} given"
            )
        db, uid, password = args[:3]
        self._check_db(db)
        if not (self.password.check(password) and type(uid) is int and uid == self.uid):
            raise _Refusal("odoo.exceptions.AccessDenied", "Access Denied")
        return self._target(args[3:])

    def _execute(self, req: Request, args: list[Any]) -> tuple[str, str, list[Any], dict[str, Any]]:
        """(model, method, args[, kwargs]) with ``Authorization: Session base64(login:uid:key)``."""
        key, who = _session_of(req.headers.get("authorization", ""))
        if not self.sessions.check(key, who):  # a header that is not one: key "" (never issued)
            raise _SessionExpired
        if len(args) not in (3, 4):
            raise _type_error(
                f"execute() takes 3 or 4 arguments (model, method, args[, kwargs]), "
                f"{len(args)} given"
            )
        return self._target(args)

    def _target(self, rest: list[Any]) -> tuple[str, str, list[Any], dict[str, Any]]:
        model, method, margs = rest[0], rest[1], rest[2]
        kwargs = rest[3] if len(rest) > 3 else {}
        if not isinstance(model, str) or not isinstance(method, str):
            raise _type_error("the model and the method are text")
        if not isinstance(margs, list):
            raise _type_error(f"the arguments of {method} are a list, got {type(margs).__name__}")
        if kwargs is None:
            kwargs = {}
        if not isinstance(kwargs, dict):
            raise _type_error(f"the keyword arguments of {method} are an object")
        return model, method, margs, kwargs

    # ------------------------------------------------------------------ the model
    def _model(self, model: str, method: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        if model != MODEL:
            raise _Refusal("builtins.KeyError", repr(model))
        if method not in PARAMS:
            raise _Refusal(
                "builtins.AttributeError",
                f"The method '{method}' does not exist on the model '{model}'",
            )
        if not args:
            first = "vals_list" if method == "create" else "domain"
            raise _type_error(f"{method}() missing 1 required positional argument: '{first}'")
        names = PARAMS[method]
        if len(args) > 1 + len(names):
            raise _type_error(f"{method}() takes at most {1 + len(names)} arguments")
        bound: dict[str, Any] = dict(zip(names, args[1:], strict=False))
        for key, value in kwargs.items():
            if key == "context":
                continue
            if key not in names:
                raise _type_error(f"{method}() got an unexpected keyword argument '{key}'")
            if key in bound:
                raise _type_error(f"{method}() got multiple values for argument '{key}'")
            bound[key] = value
        if method == "create":
            return self._create(args[0])
        rows = self._search(args[0], bound)
        if method == "search_count":
            return len(rows)
        if method == "search":
            return [r["id"] for r in rows]
        fields = bound.get("fields") or list(READ_FIELDS)
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            raise _type_error("fields is a list of field names")
        unknown = [f for f in fields if f not in READ_FIELDS]
        if unknown:
            raise _value_error(f"Invalid field {_shown(unknown[0])} on model {MODEL!r}")
        return [self._read(r, ["id", *fields]) for r in rows]

    @staticmethod
    def _read(rec: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields:
            if f == "order_line":
                out[f] = [
                    {k: line[k] for k in ("id", "product_code", "external_id", "qty", "price")}
                    for line in rec["lines"]
                ]
            else:
                out[f] = rec[f]
        return out

    def _search(self, domain: Any, bound: dict[str, Any]) -> list[dict[str, Any]]:
        if not isinstance(domain, list):
            raise _value_error(f"Invalid domain {_shown(domain)}: expected a list of leaves")
        tests: list[Callable[[dict[str, Any]], bool]] = []
        for leaf in domain:
            if leaf == "&":
                continue
            if not (isinstance(leaf, list) and len(leaf) == 3 and isinstance(leaf[0], str)):
                raise _value_error(
                    f"Invalid leaf {_shown(leaf)}: expected [field, operator, value] (the sandbox "
                    "knows AND only)"
                )
            fname, op, value = leaf
            if fname not in DOMAIN_FIELDS:
                raise _value_error(f"Invalid field {MODEL}.{fname} in leaf {_shown(leaf)}")
            if op == "in" and not isinstance(value, list):
                raise _value_error(f"Invalid leaf {_shown(leaf)}: 'in' takes a list")
            if op not in ("=", "!=", "in"):
                raise _value_error(f"Invalid leaf {_shown(leaf)}: operators =, != and in")
            tests.append(_leaf_test(fname, op, value))
        offset, limit = bound.get("offset") or 0, bound.get("limit")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise _type_error("offset is a whole number")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise _type_error("limit is a whole number")
        rows = self.book.find(lambda r: all(t(r) for t in tests))
        return rows[offset : None if limit is None else offset + limit]

    def _create(self, vals: Any) -> Any:
        """One dict → its id; a list of dicts → their ids (all checked before any is made)."""
        many = isinstance(vals, list)
        checked = [self._check_vals(v) for v in (vals if many else [vals])]
        ids = [self.book.add(ref, order, lines)["id"] for ref, order, lines in checked]
        return ids if many else ids[0]

    def _check_vals(self, vals: Any) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
        if not isinstance(vals, dict):
            raise _value_error(
                f"create() takes the new record's values as an object: {_shown(vals)}"
            )
        unknown = sorted(set(vals) - CREATE_FIELDS)
        if unknown:
            raise _value_error(f"Invalid field {_shown(unknown[0])} on model {MODEL!r}")
        ref = vals.get("client_order_ref")
        if not isinstance(ref, str) or not ref:
            raise _Refusal(
                "odoo.exceptions.ValidationError",
                "client_order_ref is required (text: the order's number)",
            )
        email = vals.get("partner_email")
        if email is not None and not isinstance(email, str):
            raise _value_error(f"partner_email is text: {_shown(email)}")
        raw_lines = vals.get("order_line") or []
        if not isinstance(raw_lines, list):
            raise _value_error("order_line is a list of lines")
        lines = [self._check_line(i, raw) for i, raw in enumerate(raw_lines)]
        total: Decimal | None
        if "amount_total" in vals and vals["amount_total"] is not None:
            total = amount(vals["amount_total"])
            if total is None:
                raise _value_error(f"amount_total is a number: {_shown(vals['amount_total'])}")
        else:
            total = sum((Decimal(str(x["qty"])) * Decimal(str(x["price"])) for x in lines),
                        Decimal(0))  # fmt: skip
        order = {
            "client_order_ref": ref,
            "partner_email": email or False,
            "amount_total": float(round(total, 2)),
        }
        return ref, order, lines

    @staticmethod
    def _check_line(i: int, raw: Any) -> dict[str, Any]:
        """A line as a dict, or as Odoo's create command ``[0, 0, {...}]``."""
        if isinstance(raw, list) and len(raw) == 3 and raw[0] == 0:
            raw = raw[2]
        if not isinstance(raw, dict):
            raise _value_error(f"order_line[{i}]: a line is an object or [0, 0, {{...}}]")
        unknown = sorted(set(raw) - LINE_FIELDS)
        if unknown:
            raise _value_error(f"Invalid field {_shown(unknown[0])} on model 'sale.order.line'")
        code = raw.get("product_code")
        if not isinstance(code, str) or code not in CATALOGUE:
            raise _user_error(f"Unknown product: {code if isinstance(code, str) else _shown(code)}")
        qty, price = amount(raw.get("qty", 1)), amount(raw.get("price"))
        if qty is None or qty <= 0:
            raise _value_error(
                f"order_line[{i}].qty: a number above 0, got {_shown(raw.get('qty'))}"
            )
        if price is None:
            raise _value_error(f"order_line[{i}].price: a number, got {_shown(raw.get('price'))}")
        ext = raw.get("external_id")
        if ext is not None and (isinstance(ext, bool) or not isinstance(ext, str | int)):
            raise _value_error(f"order_line[{i}].external_id: text or a number")
        return {
            "product_code": code,
            "qty": float(qty),
            "price": float(price),
            "external_id": False if ext is None else ext,
        }

    def preload(self, ref: str, total: str) -> None:
        """An order the ERP already holds (delivered before the sandbox started); not counted
        as created."""
        order = {"client_order_ref": ref, "partner_email": False,
                 "amount_total": float(Decimal(total))}  # fmt: skip
        self.book.add(ref, order, [], counted=False)

    # ------------------------------------------------------------------ what tests read
    def stats(self) -> dict[str, Any]:
        """Orders (and duplicates), logins by method, model calls, password and session
        checks."""
        with self.counts_lock:
            counts = {
                "logins": dict(self.logins),
                "refused_logins": self.refused_logins,
                "methods": {m: dict(c) for m, c in self.methods.items()},
            }
        return {
            **self.book.stats(),
            **counts,
            "password_checks": self.password.checks,
            **self.sessions.stats(),
        }

    def orders_for(self, ref: str) -> list[dict[str, Any]]:
        """Every order created with ``client_order_ref`` ``ref``, as search_read shows it."""
        return [self._read(r, list(READ_FIELDS)) for r in self.book.find(
            lambda r: r["client_order_ref"] == ref
        )]  # fmt: skip


def _session_of(header: str) -> tuple[str, tuple[str, int] | None]:
    """(key, (login, uid)) from ``Session base64(login:uid:key)``; ("", None) when the header
    is not one."""
    scheme, _, token = header.partition(" ")
    if scheme != "Session":
        return "", None
    try:
        text = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return "", None
    parts = text.rsplit(":", 2)
    if len(parts) != 3 or not re.fullmatch(r"[0-9]{1,9}", parts[1]) or not parts[2]:
        return "", None
    return parts[2], (parts[0], int(parts[1]))


class _SessionExpired(Exception):
    """The call's session is dead or unknown."""


def _leaf_test(fname: str, op: str, value: Any) -> Callable[[dict[str, Any]], bool]:
    if op == "=":
        return lambda r: bool(r[fname] == value)
    if op == "!=":
        return lambda r: bool(r[fname] != value)
    return lambda r: r[fname] in value
