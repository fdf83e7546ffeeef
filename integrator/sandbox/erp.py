"""An ERP-like REST API: create an order, query it by number, optional idempotency key.

``GET /_sandbox/stats`` tells how many orders arrived and which numbers arrived twice: the
exactly-once tests read it.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from integrator.sandbox.auth import AuthRealm
from integrator.sandbox.base import JsonServer, Request, Response, Route

__all__ = ["ErpSandbox", "create_answer"]


def create_answer(body: dict[str, Any], erp_id: str) -> dict[str, Any]:
    """What the sandbox ERP answers to a create: its id and a line id per order line."""
    lines = [
        {
            "line_id": f"{erp_id}-{i + 1}",
            "external_id": line.get("external_id"),
            "sku": line.get("sku"),
        }
        for i, line in enumerate(body.get("lines") or [])
        if isinstance(line, dict)
    ]
    return {"id": erp_id, "order_number": str(body.get("order_number")), "lines": lines}


def _page(
    req: Request,
    rows: list[dict[str, Any]],
    default_limit: int,
    shape: Callable[[dict[str, Any]], dict[str, Any]] = dict,
) -> Response:
    """A DRF-style page of ``rows`` (``limit``/``offset``), its ``next`` keeping the query."""
    limit, offset = int(req.query.get("limit", default_limit)), int(req.query.get("offset", 0))
    nxt = None
    if offset + limit < len(rows):
        query = {k: v for k, v in req.query.items() if k != "offset"}
        nxt = req.path + "?" + urlencode({**query, "offset": offset + limit})
    results = [shape(r) for r in rows[offset : offset + limit]]
    return Response(200, {"count": len(rows), "next": nxt, "results": results})


def _unauthorized(_req: Request, _args: list[str]) -> Response:
    return Response(401, {"error": "invalid token", "message": {"value": "Invalid session."}})


class ErpSandbox(JsonServer):
    """Orders keyed by ``order_number``.

    When ``token`` is set every call needs ``Authorization: Bearer <token>``, or a live
    credential from ``realm``: an OAuth2 token (``POST /oauth/token``), a JSON-RPC session
    (``POST /jsonrpc`` → ``X-Session-Id``) or an SAP B1 session cookie (``POST /b1s/v1/Login``).
    """

    # (method, route name, path pattern, handler method): the route names faults aim at
    ROUTES = (
        ("POST", "create", r"/api/orders/$", "create"),
        ("GET", "query", r"/api/orders/$", "query"),
        ("GET", "get", r"/api/orders/by-number/([^/]+)/$", "get"),
        ("POST", "webhook", r"/webhooks/([^/]+)/$", "webhook"),
        ("GET", "changes", r"/api/changes/(status|stock|returns)/$", "changes"),
        ("GET", "stock", r"/api/stock/$", "stock_list"),
    )
    extra_routes = ("login", "auth_control", "control")  # besides the table's

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str = "",
        seed: int = 7,
        realm: AuthRealm | None = None,
        clock_tz: str = "Europe/Istanbul",
    ) -> None:
        super().__init__(host, port, seed)
        self.token = token
        self.realm = realm
        self.orders: dict[str, dict[str, Any]] = {}
        self.received: dict[str, int] = {}  # order number → creates
        self.idempotency: dict[str, dict[str, Any]] = {}
        self.replays = 0
        # The ERP's stock: (sku, warehouse) → quantity on hand.
        self.stock: dict[tuple[str, str], int] = {
            (sku, wh): 10 for sku in ("SKU-100", "SKU-200", "SKU-300", "SKU-400")
            for wh in ("OSL", "STO")
        }  # fmt: skip
        # Change feeds the ERP → OMS flows poll: rows stamped with the ERP's own clock, a
        # naive local time in ``clock_tz`` (as many ERPs keep it).
        self.clock_tz = ZoneInfo(clock_tz)
        self.feed: list[dict[str, Any]] = []
        self.webhooks: dict[str, list[Any]] = {}  # a partner's endpoint → bodies received

    def route(self, req: Request) -> tuple[str, Route, list[str]] | None:
        """Match; logins are open, everything else needs a credential when a token is set."""
        if req.method == "POST" and req.path == "/_sandbox/erp/changes":
            return "control", self.add_changes, []
        if req.method == "POST" and req.path == "/_sandbox/erp/stock":
            return "control", self.set_stock, []
        realm = self.realm
        if realm is not None and req.method == "POST":
            if req.path == "/_sandbox/auth":
                return "auth_control", lambda r, _a: realm.control(r), []
            logins: dict[str, Route] = {
                "/oauth/token": realm.oauth_token,
                "/jsonrpc": realm.jsonrpc,
                "/b1s/v1/Login": realm.b1_login,
            }
            if req.path in logins:
                return "login", logins[req.path], []
        for method, name, pattern, handler in self.table:
            m = pattern.match(req.path)
            if m and method == req.method:
                if self.token and not self.authorized(req):
                    return name, _unauthorized, []
                return name, handler, list(m.groups())
        return None

    def authorized(self, req: Request) -> bool:
        """The static Bearer token, or a live credential of the realm."""
        if req.headers.get("authorization") == f"Bearer {self.token}":
            return True
        return self.realm is not None and self.realm.accepts(req.headers)

    def order_number(self, req: Request, args: list[str]) -> str | None:
        """From the body (create), the query (query) or the path (get)."""
        if isinstance(req.body, dict):
            for key in ("order_number", "number"):
                if key in req.body:
                    return str(req.body[key])
        return req.query.get("number") or (args[0] if args else None)

    def webhook(self, req: Request, args: list[str]) -> Response:
        """A partner's webhook endpoint (for export steps): keeps the body, answers 202."""
        with self.lock:
            self.webhooks.setdefault(args[0], []).append(req.body)
        return Response(202, {"accepted": True})

    def create(self, req: Request, _args: list[str]) -> Response:
        """Create; 400 without ``order_number``; a known idempotency key replays the answer."""
        body = req.body
        if not isinstance(body, dict) or not body.get("order_number"):
            return Response(400, {"error": "order_number is required"})
        key = req.headers.get("idempotency-key")
        number = str(body["order_number"])
        with self.lock:
            if key and key in self.idempotency:
                self.replays += 1
                return Response(200, copy.deepcopy(self.idempotency[key]))
            self.received[number] = self.received.get(number, 0) + 1
            erp_id = f"ERP-{len(self.orders) + sum(self.received.values()):07d}"
            answer = create_answer(body, erp_id)
            self.orders[number] = {
                **answer,
                "payload": body,
                "total": body.get("total"),
                "created_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            }
            if key:
                self.idempotency[key] = answer
        return Response(201, answer)

    def now(self) -> str:
        """The ERP's clock: naive local time with microseconds."""
        return dt.datetime.now(self.clock_tz).strftime("%Y-%m-%d %H:%M:%S.%f")

    def add_changes(self, req: Request, _args: list[str]) -> Response:
        """Sandbox control: ``{"kind": "status", "changes": [{...}], "modified_date": opt}``
        appends rows to a feed (ids assigned; the ERP's clock unless a time is given)."""
        body = req.body if isinstance(req.body, dict) else {}
        kind, rows = body.get("kind"), body.get("changes")
        if kind not in ("status", "stock", "returns") or not isinstance(rows, list):
            return Response(
                400, {"error": "kind (status, stock, returns) and changes are required"}
            )
        added = []
        with self.lock:
            for row in rows:
                rec = {
                    **row,
                    "id": f"{kind.upper()}-{len(self.feed) + 1:06d}",
                    "kind": kind,
                    "modified_date": body.get("modified_date") or self.now(),
                }
                self.feed.append(rec)
                added.append(rec)
        return Response(201, {"added": added})

    def changes(self, req: Request, args: list[str]) -> Response:
        """A change feed: ``modified_date__gt`` (the ERP's local time), oldest first,
        ``limit``/``offset``."""
        after = req.query.get("modified_date__gt", "")
        with self.lock:
            rows = sorted(
                (r for r in self.feed if r["kind"] == args[0] and r["modified_date"] > after),
                key=lambda r: (r["modified_date"], r["id"]),
            )
            return _page(req, rows, 50, lambda r: {k: v for k, v in r.items() if k != "kind"})

    def set_stock(self, req: Request, _args: list[str]) -> Response:
        """Sandbox control: ``[{sku, warehouse, quantity}]`` sets the ERP's stock."""
        rows = req.body if isinstance(req.body, list) else []
        with self.lock:
            for r in rows:
                self.stock[(str(r["sku"]), str(r["warehouse"]))] = int(r["quantity"])
        return Response(200, {"ok": True})

    def stock_list(self, req: Request, _args: list[str]) -> Response:
        """The whole stock, paged: ``{count, next, results: [{sku, warehouse, quantity}]}``."""
        with self.lock:
            rows = [
                {"sku": k[0], "warehouse": k[1], "quantity": q}
                for k, q in sorted(self.stock.items())
            ]
        return _page(req, rows, 100)

    def preload(self, number: str, total: str, created_at: str) -> None:
        """An order the ERP already holds (delivered before the sandbox started); not counted
        as received."""
        with self.lock:
            erp_id = f"ERP-OLD-{len(self.orders) + 1:05d}"
            self.orders[number] = {
                "id": erp_id, "order_number": number, "lines": [], "payload": None,
                "total": total, "created_at": created_at,
            }  # fmt: skip

    def query(self, req: Request, _args: list[str]) -> Response:
        """``?number=`` → that order; otherwise a page of every order (``since`` on their
        creation time, ``limit``/``offset``) → ``{"count", "next", "results"}``."""
        number = req.query.get("number")
        fields = ("id", "order_number", "lines", "total", "created_at")
        with self.lock:
            if number is not None:
                rec = self.orders.get(number)
                rows = [rec] if rec else []
            else:
                since = req.query.get("since", "")
                rows = sorted(
                    (r for r in self.orders.values() if r["created_at"] >= since),
                    key=lambda r: r["id"],
                )
            return _page(req, rows, 100, lambda r: {k: r.get(k) for k in fields})

    def get(self, _req: Request, args: list[str]) -> Response:
        """One order by number; 404 when unknown."""
        with self.lock:
            rec = self.orders.get(args[0])
            if rec is None:
                return Response(404, {"error": "order not found"})
            return Response(200, {k: rec[k] for k in ("id", "order_number", "lines", "total")})

    def stats(self) -> dict[str, Any]:
        """Orders held, creates received, and the numbers created more than once."""
        with self.lock:
            dups = {n: c for n, c in self.received.items() if c > 1}
            return {
                "orders": len(self.orders),
                "received": sum(self.received.values()),
                "duplicates": len(dups),
                "duplicate_numbers": sorted(dups),
                "idempotent_replays": self.replays,
                "webhooks": {k: len(v) for k, v in self.webhooks.items()},
                "auth": self.realm.stats() if self.realm else {},
            }

    def payload(self, number: str) -> dict[str, Any] | None:
        """The body the ERP received for ``number`` (tests inspect it)."""
        with self.lock:
            rec = self.orders.get(number)
            return copy.deepcopy(rec["payload"]) if rec else None
