"""An Omnium-like order API: token login, delta search, scroll, UpdateStatus, PatchOrder.

Shapes and limits from Omnium's ERP-integration guide (see the project's reference notes):
``POST /api/Orders/Search`` with ``ModifiedFrom`` (inclusive), ``SelectedStatuses``,
``SortOrder: ModifiedAscending``, ``Take`` ≤ 100 and ``Take * Page`` ≤ 10,000 (a 400
beyond); ``POST /api/Orders/Scroll`` then ``GET /api/Orders/Scroll/{scrollId}`` in batches of
1,000 until the result is empty; ``UpdateStatus`` (runs the status workflow) and ``PatchOrder``
(runs none) both move ``Modified``. The token comes from ``POST /api/Token`` with client
credentials. ``POST /_sandbox/omnium/modified`` sets ``Modified`` of given orders (tests put
many orders on one instant). Event subscriptions: ``POST /_sandbox/omnium/subscribe`` with
``{url, header, secret}``; then ``POST /_sandbox/omnium/orders`` (a new order, ``{}`` or fields
to override) sends the event metadata (``objectId``, ``objectNumber``, ``status``, ...) to the
URL, as Omnium's event subscriptions do.
"""

from __future__ import annotations

import copy
import datetime as dt
import hmac
import random
import secrets
import threading
from decimal import Decimal
from typing import Any

from integrator.sandbox.base import JsonServer, Request, Response, Route

__all__ = ["OmniumSandbox", "seed_omnium_orders"]

MAX_TAKE = 100
MAX_WINDOW = 10_000
SCROLL_BATCH = 1_000
_EPOCH = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.UTC)


def iso(t: dt.datetime) -> str:
    """Omnium's timestamps: UTC, ISO 8601 with a ``Z``."""
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> dt.datetime:
    """An ISO 8601 timestamp (``Z`` or an offset); naive means UTC."""
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def seed_omnium_orders(n: int, *, seed: int = 11) -> list[dict[str, Any]]:
    """``n`` orders in Omnium's shape, one second apart, every fifth already InProgress."""
    rng = random.Random(seed)
    products = [("SKU-100", "Ullgenser", "899.00"), ("SKU-200", "Regnjakke", "1499.00"),
                ("SKU-300", "Votter", "199.00"), ("SKU-400", "Lue", "249.00")]  # fmt: skip
    out: list[dict[str, Any]] = []
    for i in range(1, n + 1):
        lines: list[dict[str, Any]] = []
        for j, (code, name, price) in enumerate(rng.sample(products, rng.randint(1, 3))):
            qty = rng.randint(1, 3)
            lines.append({
                "LineItemId": f"{i}-{j + 1}", "Code": code, "DisplayName": name,
                "Quantity": qty, "PlacedPrice": price,
                "ExtendedPrice": str(Decimal(price) * qty),
            })  # fmt: skip
        total = sum((Decimal(str(x["ExtendedPrice"])) for x in lines), Decimal(0))
        at = _EPOCH + dt.timedelta(seconds=i)
        out.append({
            "Id": f"NO-{i:06d}",
            "OrderNumber": f"{100000 + i}",
            "Status": "InProgress" if i % 5 == 0 else "New",
            "MarketId": rng.choice(["NOR", "SWE"]),
            "StoreId": "web",
            "OrderType": "Online",
            "Currency": "NOK",
            "Created": iso(at),
            "Modified": iso(at),
            "CustomerName": f"Kunde {i}",
            "CustomerEmail": f"kunde{i}@example.no",
            "ShippingAddress": {"Name": f"Kunde {i}", "Line1": f"Storgata {i}",
                                "ZipCode": "0155", "City": "Oslo", "CountryCode": "NO"},
            "OrderForm": {"LineItems": lines, "ShippingTotal": "49.00",
                          "Total": str(total + Decimal("49.00"))},
            "TotalIncVat": str(total + Decimal("49.00")),
            "ExternalIds": [],
        })  # fmt: skip
    return out


class OmniumSandbox(JsonServer):
    """Orders keyed by ``Id``; every call but the token needs ``Bearer <issued token>``."""

    # (method, route name, path pattern, handler method): the route names faults aim at
    ROUTES = (
        ("POST", "search", r"/api/Orders/Search$", "search"),
        ("POST", "scroll", r"/api/Orders/Scroll$", "scroll_start"),
        ("GET", "scroll_next", r"/api/Orders/Scroll/([^/]+)$", "scroll_next"),
        ("GET", "get", r"/api/Orders/([^/]+)$", "get"),
        ("POST", "update_status", r"/api/Orders/([^/]+)/UpdateStatus$", "update_status"),
        ("PATCH", "patch_order", r"/api/Orders/([^/]+)/PatchOrder$", "patch_order"),
        ("POST", "create_return", r"/api/Orders/([^/]+)/CreateReturnOrder$", "create_return"),
        ("GET", "returns", r"/api/Returns$", "returns_search"),
        ("GET", "inventory", r"/api/Inventory$", "inventory_list"),
        ("PUT", "inventory_upsert", r"/api/Inventory$", "inventory_upsert"),
        ("POST", "inventory_change", r"/api/Inventory/InventoryChange$", "inventory_change"),
    )
    extra_routes = ("token", "control")  # besides the table's

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        orders: int = 0,
        client_id: str = "omnium-client",
        client_secret: str = "omnium-secret",
        seed: int = 7,
    ) -> None:
        super().__init__(host, port, seed)
        self.client_id, self.client_secret = client_id, client_secret
        self.orders: dict[str, dict[str, Any]] = {o["Id"]: o for o in seed_omnium_orders(orders)}
        self.tokens: set[str] = set()
        self.scrolls: dict[str, list[str]] = {}
        self.latest = max((parse_iso(o["Modified"]) for o in self.orders.values()), default=_EPOCH)
        self.subscription: dict[str, str] | None = None
        self.deliveries: list[int] = []  # the subscriber's answers (status codes)
        self.updates: dict[str, int] = {}  # order id → UpdateStatus calls
        self.patches: dict[str, int] = {}
        # Stock per (sku, warehouse): ``inventory`` is what the ERP says is there,
        # ``reservedInventory`` what open orders hold (Omnium's own; no import may set it).
        self.stock: dict[tuple[str, str], dict[str, Any]] = {
            (sku, wh): {"sku": sku, "warehouseId": wh, "inventory": 10, "reservedInventory": 2}
            for sku in ("SKU-100", "SKU-200", "SKU-300", "SKU-400")
            for wh in ("OSL", "STO")
        }
        self.stock_writes: list[dict[str, Any]] = []  # every upsert and change, in order
        self.returns: list[dict[str, Any]] = []  # return orders created
        self.lock = threading.Lock()

    # ------------------------------------------------------------------ routing
    def route(self, req: Request) -> tuple[str, Route, list[str]] | None:
        """Token and sandbox control are open; the rest needs a token."""
        if req.method == "POST" and req.path == "/api/Token":
            return "token", self.token, []
        if req.method == "POST" and req.path == "/_sandbox/omnium/modified":
            return "control", self.set_modified, []
        if req.method == "POST" and req.path == "/_sandbox/omnium/subscribe":
            return "control", self.subscribe, []
        if req.method == "POST" and req.path == "/_sandbox/omnium/orders":
            return "control", self.create_order, []
        for method, name, pattern, handler in self.table:
            m = pattern.match(req.path)
            if m and method == req.method:
                auth = req.headers.get("authorization", "")
                if not (auth.startswith("Bearer ") and auth[7:] in self.tokens):
                    return name, lambda _r, _a: Response(401, {"message": "Unauthorized"}), []
                return name, handler, list(m.groups())
        return None

    def order_number(self, req: Request, args: list[str]) -> str | None:
        """The order number of a per-order call (for faults aimed at one order)."""
        if args and args[0] in self.orders:
            return str(self.orders[args[0]]["OrderNumber"])
        return None

    def token(self, req: Request, _args: list[str]) -> Response:
        """Client credentials (form-encoded) → a Bearer token for an hour."""
        form = req.body if isinstance(req.body, dict) else {}
        ok = form.get("grant_type") == "client_credentials" and all(
            isinstance(form.get(k), str) and hmac.compare_digest(form[k], v)
            for k, v in (("client_id", self.client_id), ("client_secret", self.client_secret))
        )
        if not ok:
            return Response(401, {"error": "invalid_client"})
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens.add(token)
        return Response(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    # ------------------------------------------------------------------ reads
    def _matching(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        since = body.get("ModifiedFrom")
        since_t = parse_iso(since) if isinstance(since, str) and since else None
        statuses = body.get("SelectedStatuses") or []
        external = set(body.get("ExternalIds") or [])
        with self.lock:
            rows = [
                o
                for o in self.orders.values()
                if (since_t is None or parse_iso(o["Modified"]) >= since_t)
                and (not statuses or o["Status"] in statuses)
                and (not external or external & {e.get("id") for e in o["ExternalIds"]})
            ]
            rows.sort(key=lambda o: (parse_iso(o["Modified"]), o["Id"]))
            return [copy.deepcopy(o) for o in rows]

    def search(self, req: Request, _args: list[str]) -> Response:
        """Delta search; 400 past Omnium's paging limits."""
        body = req.body if isinstance(req.body, dict) else {}
        take, page = int(body.get("Take", 20)), int(body.get("Page", 0))
        if not 1 <= take <= MAX_TAKE:
            return Response(400, {"message": f"Take must be between 1 and {MAX_TAKE}"})
        if take * (page + 1) > MAX_WINDOW:
            return Response(
                400, {"message": f"Take * Page cannot exceed {MAX_WINDOW}; use the Scroll API"}
            )
        rows = self._matching(body)
        return Response(200, {"result": rows[take * page : take * (page + 1)],
                              "totalHits": len(rows)})  # fmt: skip

    def scroll_start(self, req: Request, _args: list[str]) -> Response:
        """A snapshot of the matching ids; the first batch with its scroll id."""
        rows = self._matching(req.body if isinstance(req.body, dict) else {})
        sid = secrets.token_hex(8)
        with self.lock:
            self.scrolls[sid] = [o["Id"] for o in rows[SCROLL_BATCH:]]
        return Response(
            200, {"scrollId": sid, "result": rows[:SCROLL_BATCH], "totalHits": len(rows)}
        )

    def scroll_next(self, _req: Request, args: list[str]) -> Response:
        """The next batch of the snapshot; empty when it is used up."""
        with self.lock:
            ids = self.scrolls.get(args[0])
            if ids is None:
                return Response(404, {"message": "unknown or expired scroll id"})
            batch, self.scrolls[args[0]] = ids[:SCROLL_BATCH], ids[SCROLL_BATCH:]
            rows = [copy.deepcopy(self.orders[i]) for i in batch if i in self.orders]
        return Response(200, {"scrollId": args[0], "result": rows})

    def get(self, _req: Request, args: list[str]) -> Response:
        """One order."""
        with self.lock:
            o = self.orders.get(args[0])
            return Response(200, copy.deepcopy(o)) if o else Response(404, {"message": "Not found"})

    # ------------------------------------------------------------------ writes
    def _touch(self, o: dict[str, Any]) -> None:
        """A change: ``Modified`` moves past every other order's (the clock never goes back)."""
        self.latest = max(dt.datetime.now(dt.UTC), self.latest + dt.timedelta(microseconds=1))
        o["Modified"] = iso(self.latest)

    def update_status(self, req: Request, args: list[str]) -> Response:
        """``{"status": ..., "trackingNumber"?, "shippingCompany"?, "lines"?}``: the order
        moves on (and ``Modified`` with it); tracking, when given, is kept as a shipment."""
        status = (req.body or {}).get("status") if isinstance(req.body, dict) else None
        if not isinstance(status, str) or not status:
            return Response(400, {"message": "status is required"})
        with self.lock:
            o = self.orders.get(args[0])
            if o is None:
                return Response(404, {"message": "Not found"})
            o["Status"] = status
            body = req.body if isinstance(req.body, dict) else {}
            if body.get("trackingNumber"):
                o.setdefault("Shipments", []).append({
                    "TrackingNumber": body["trackingNumber"],
                    "ShippingCompany": body.get("shippingCompany"),
                    "Lines": body.get("lines") or [],
                })  # fmt: skip
            self._touch(o)
            self.updates[args[0]] = self.updates.get(args[0], 0) + 1
        return Response(200, None)

    def patch_order(self, req: Request, args: list[str]) -> Response:
        """``{"externalIds": [{providerName, id}]}`` merged by providerName; no workflow."""
        body = req.body if isinstance(req.body, dict) else {}
        ids = body.get("externalIds")
        if not isinstance(ids, list):
            return Response(400, {"message": "externalIds must be a list"})
        with self.lock:
            o = self.orders.get(args[0])
            if o is None:
                return Response(404, {"message": "Not found"})
            kept = {e["providerName"]: e for e in o["ExternalIds"]}
            kept.update({e.get("providerName"): e for e in ids if isinstance(e, dict)})
            o["ExternalIds"] = list(kept.values())
            self._touch(o)
            self.patches[args[0]] = self.patches.get(args[0], 0) + 1
        return Response(200, copy.deepcopy(o))

    def create_return(self, req: Request, args: list[str]) -> Response:
        """``{rmaNumber, refund, lines: [{lineItemId, quantity, reason, restock}]}``: a return
        order for order ``args[0]``; 400 for a line or quantity the order does not have."""
        body = req.body if isinstance(req.body, dict) else {}
        lines = body.get("lines")
        if not body.get("rmaNumber") or not isinstance(lines, list) or not lines:
            return Response(400, {"message": "rmaNumber and lines are required"})
        with self.lock:
            order = self.orders.get(args[0])
            if order is None:
                return Response(404, {"message": "Not found"})
            ordered = {li["LineItemId"]: li["Quantity"] for li in order["OrderForm"]["LineItems"]}
            for line in lines:
                lid, qty = line.get("lineItemId"), line.get("quantity")
                if lid not in ordered or not isinstance(qty, int) or not 0 < qty <= ordered[lid]:
                    return Response(400, {"message": f"no such line or quantity: {line!r}"})
                if not line.get("reason"):
                    return Response(400, {"message": f"a return line needs a reason: {line!r}"})
            rec = {
                "Id": f"RET-{len(self.returns) + 1:05d}", "OrderId": args[0],
                "RmaNumber": body["rmaNumber"], "Refund": bool(body.get("refund")),
                "Lines": [dict(li) for li in lines], "Created": iso(dt.datetime.now(dt.UTC)),
            }  # fmt: skip
            self.returns.append(rec)
            return Response(201, copy.deepcopy(rec))

    def returns_search(self, req: Request, _args: list[str]) -> Response:
        """``?rmaNumber=``: the return orders with that RMA number."""
        rma = req.query.get("rmaNumber")
        with self.lock:
            rows = [copy.deepcopy(r) for r in self.returns if rma is None or r["RmaNumber"] == rma]
        return Response(200, {"result": rows, "totalHits": len(rows)})

    def inventory_list(self, req: Request, _args: list[str]) -> Response:
        """Stock levels, ``take``/``page``."""
        take, page = int(req.query.get("take", 100)), int(req.query.get("page", 0))
        with self.lock:
            rows = sorted(self.stock.values(), key=lambda r: (r["sku"], r["warehouseId"]))
            part = [dict(r) for r in rows[take * page : take * (page + 1)]]
        return Response(200, {"result": part, "totalHits": len(rows)})

    def inventory_upsert(self, req: Request, _args: list[str]) -> Response:
        """``[{sku, warehouseId, inventory}]``: set levels; reservedInventory is refused."""
        rows = req.body if isinstance(req.body, list) else None
        if not rows or not all(isinstance(r, dict) for r in rows):
            return Response(400, {"message": "a list of {sku, warehouseId, inventory}"})
        for r in rows:
            if "reservedInventory" in r:
                return Response(400, {"message": "reservedInventory is kept by Omnium"})
            if (
                not r.get("sku")
                or not r.get("warehouseId")
                or not isinstance(r.get("inventory"), int)
            ):
                return Response(400, {"message": f"sku, warehouseId and inventory: {r!r}"})
        with self.lock:
            for r in rows:
                key = (str(r["sku"]), str(r["warehouseId"]))
                rec = self.stock.setdefault(
                    key, {"sku": key[0], "warehouseId": key[1], "reservedInventory": 0}
                )
                rec["inventory"] = r["inventory"]
                self.stock_writes.append({"op": "upsert", **r})
        return Response(200, {"updated": len(rows)})

    def inventory_change(self, req: Request, _args: list[str]) -> Response:
        """``{sku, warehouseId, change, reason}``: a relative change with its reason."""
        r = req.body if isinstance(req.body, dict) else {}
        if not isinstance(r.get("change"), int) or not r.get("reason"):
            return Response(400, {"message": "change (an integer) and reason are required"})
        key = (str(r.get("sku")), str(r.get("warehouseId")))
        with self.lock:
            rec = self.stock.get(key)
            if rec is None:
                return Response(404, {"message": f"no stock for {key}"})
            rec["inventory"] += r["change"]
            self.stock_writes.append({"op": "change", **r})
            return Response(200, dict(rec))

    def set_modified(self, req: Request, _args: list[str]) -> Response:
        """Tests: ``{"ids": [...], "modified": iso}`` puts orders on one instant."""
        body = req.body if isinstance(req.body, dict) else {}
        with self.lock:
            for i in body.get("ids", []):
                if i in self.orders:
                    self.orders[i]["Modified"] = body["modified"]
        return Response(200, {"ok": True})

    def subscribe(self, req: Request, _args: list[str]) -> Response:
        """Tests: where order events go, and the shared secret header they carry."""
        body = req.body if isinstance(req.body, dict) else {}
        if not isinstance(body.get("url"), str):
            return Response(400, {"message": "url is required"})
        self.subscription = {
            "url": body["url"],
            "header": str(body.get("header") or "X-Webhook-Secret"),
            "secret": str(body.get("secret") or ""),
        }
        return Response(200, {"ok": True})

    def create_order(self, req: Request, _args: list[str]) -> Response:
        """Tests: a new order (seeded shape, fields overridable); its event is sent."""
        with self.lock:
            n = len(self.orders) + 1
            order = seed_omnium_orders(n)[-1]
            order.update(req.body if isinstance(req.body, dict) else {})
            order["Status"] = order.get("Status") if "Status" in (req.body or {}) else "New"
            self.orders[order["Id"]] = order
            self._touch(order)
            order["Created"] = order["Modified"]
        threading.Thread(target=self._deliver, args=(copy.deepcopy(order),), daemon=True).start()
        return Response(201, copy.deepcopy(order))

    def _deliver(self, order: dict[str, Any]) -> None:
        import requests  # the sandbox's only outbound call

        sub = self.subscription
        if sub is None:
            return
        event = {
            "timestamp": iso(dt.datetime.now(dt.UTC)), "operationId": 310100,
            "message": "Order created", "className": "Order", "subClassName": "Online",
            "objectId": order["Id"], "objectNumber": order["OrderNumber"],
            "category": "Order", "market": order["MarketId"], "storeId": order["StoreId"],
            "status": order["Status"], "previousStatus": "", "isError": False,
            "origin": "POST /api/Orders",
        }  # fmt: skip
        try:
            resp = requests.post(
                sub["url"], json=event, headers={sub["header"]: sub["secret"]}, timeout=10
            )
            code = resp.status_code
        except requests.RequestException:
            code = 0
        with self.lock:
            self.deliveries.append(code)

    def stats(self) -> dict[str, Any]:
        """Orders by status, write-backs per order, event deliveries."""
        with self.lock:
            by_status: dict[str, int] = {}
            for o in self.orders.values():
                by_status[o["Status"]] = by_status.get(o["Status"], 0) + 1
            return {
                "orders": len(self.orders),
                "by_status": by_status,
                "update_status": sum(self.updates.values()),
                "updated_twice": sorted(k for k, v in self.updates.items() if v > 1),
                "patches": sum(self.patches.values()),
                "event_deliveries": list(self.deliveries),
            }
