"""An Omnitron-like API to the shapes in the public docs: token login, the unsent-order list,
order detail, items, discount items, and the PATCHes that mark an order sent."""

from __future__ import annotations

import copy
import secrets
from typing import Any

from integrator.sandbox.base import JsonServer, Request, Response, Route
from integrator.sandbox.seed import seed_orders

__all__ = ["OmnitronSandbox"]

_SUMMARY = (
    "pk",
    "number",
    "status",
    "date_placed",
    "customer",
    "shipping_address",
    "billing_address",
    "currency",
    "amount",
    "shipping_amount",
    "shipping_tax_rate",
)
_P = r"/api/(?:i1|v1)/"
# Omnitron order item statuses (a subset): cancelled, approved, preparing/invoiced, shipped,
# delivered, refunded.
_ITEM_STATUSES = {"100", "400", "450", "500", "550", "600"}
_BULK_FIELDS = (
    "status", "invoice_number", "invoice_date", "e_archive_url", "tracking_number",
    "shipping_company",
)  # fmt: skip


class OmnitronSandbox(JsonServer):
    """Seeded with ``orders`` orders; ``username``/``password`` for the token login."""

    # (method, route name, path pattern, handler method): the route names faults aim at
    ROUTES = (
        ("POST", "login", _P + r"auth/login/$", "login"),
        ("GET", "list", _P + r"orders/$", "list_orders"),
        ("GET", "detail", _P + r"orders_integration/(\d+)/detailed_integration/$", "detail"),
        ("GET", "items", _P + r"order_items/$", "list_items"),
        ("GET", "item_detail", _P + r"order_items/(\d+)/detailed_integration/$", "item_detail"),
        ("GET", "discounts", _P + r"discount_items/$", "list_discounts"),
        ("GET", "discount_detail", _P + r"discount_items/(\d+)/detailed_integration/$",
         "discount_detail"),
        ("GET", "get_order", _P + r"orders/(\d+)/$", "get_order"),
        ("PATCH", "patch_order", _P + r"orders/(\d+)/$", "patch_order"),
        ("PATCH", "patch_item", _P + r"order_items/(\d+)/$", "patch_item"),
        ("PATCH", "bulk_status", _P + r"order_items/bulk_status_update/$", "bulk_status_update"),
    )  # fmt: skip
    extra_routes = ("control",)  # besides the table's: sandbox control

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        orders: int = 25,
        seed: int = 42,
        username: str = "integrator",
        password: str = "sandbox-pass",
        items_per_order: int | None = None,
        discounts_per_order: int | None = None,
    ) -> None:
        super().__init__(host, port, seed)
        self.username, self.password = username, password
        self.seed = seed
        self.tokens: set[str] = set()
        self.orders, self.items, self.discounts = seed_orders(
            orders,
            seed=seed,
            items_per_order=items_per_order,
            discounts_per_order=discounts_per_order,
        )
        self.patches = 0
        self.bulk_updates: dict[int, int] = {}  # order item pk → bulk status updates

    def add_orders(self, count: int) -> list[str]:
        """Seed ``count`` more unsent orders (pks after the last); returns their numbers."""
        with self.lock:
            orders, items, discounts = seed_orders(
                count,
                seed=self.seed + max(self.orders, default=0),
                after=(self.orders, self.items, self.discounts),
                all_unsent=True,
            )
            self.orders.update(orders)
            self.items.update(items)
            self.discounts.update(discounts)
        return [o["number"] for o in orders.values()]

    def _add_orders(self, req: Request, _args: list[str]) -> Response:
        body = req.body if isinstance(req.body, dict) else {}
        count = body.get("count")
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 10_000:
            return Response(400, {"detail": 'expected {"count": N} with N from 1 to 10000'})
        return Response(201, {"added": self.add_orders(count)})

    def route(self, req: Request) -> tuple[str, Route, list[str]] | None:
        """Match method and path; every route but login needs ``Authorization: Token``."""
        if req.method == "POST" and req.path == "/_sandbox/omnitron/orders":
            return "control", self._add_orders, []
        for method, name, pattern, handler in self.table:
            m = pattern.match(req.path)
            if m and method == req.method:
                if name != "login" and not self._authorized(req):
                    return (
                        name,
                        lambda _r, _a: Response(
                            401, {"detail": "Authentication credentials were not provided."}
                        ),
                        [],
                    )
                return name, handler, list(m.groups())
        return None

    def order_number(self, req: Request, args: list[str]) -> str | None:
        """Order number for order-level routes."""
        if args and "/orders" in req.path:
            o = self.orders.get(int(args[0]))
            return o["number"] if o else None
        return None

    def _authorized(self, req: Request) -> bool:
        auth = req.headers.get("authorization", "")
        return auth.startswith("Token ") and auth[6:] in self.tokens

    def login(self, req: Request, _args: list[str]) -> Response:
        """``{"username", "password"}`` → ``{"key"}``; 400 on bad credentials, as Omnitron."""
        body = req.body if isinstance(req.body, dict) else {}
        if body.get("username") != self.username or body.get("password") != self.password:
            return Response(
                400, {"non_field_errors": ["Unable to log in with provided credentials."]}
            )
        key = secrets.token_hex(20)
        with self.lock:
            self.tokens.add(key)
        return Response(200, {"key": key})

    def list_orders(self, req: Request, _args: list[str]) -> Response:
        """DRF page of order summaries; filters is_send, status(__in), channel__in, number,
        pk__gt, date_placed__gte; ordering by pk; limit/offset."""
        q = req.query
        with self.lock:
            rows = sorted(self.orders.values(), key=lambda o: o["pk"])
            if "is_send" in q:
                want = q["is_send"].lower() in ("true", "1")
                rows = [o for o in rows if o["is_send"] == want]
            if "status" in q:
                rows = [o for o in rows if o["status"] == q["status"]]
            if "status__in" in q:
                rows = [o for o in rows if o["status"] in q["status__in"].split(",")]
            if "channel__in" in q:
                rows = [o for o in rows if str(o["channel"]["pk"]) in q["channel__in"].split(",")]
            if "number" in q:
                rows = [o for o in rows if o["number"] == q["number"]]
            if "pk__gt" in q and req.fault != "ignore_cursor":
                rows = [o for o in rows if o["pk"] > int(q["pk__gt"])]
            if "date_placed__gte" in q:
                rows = [o for o in rows if o["date_placed"] >= q["date_placed__gte"]]
            limit, offset = int(q.get("limit", 50)), int(q.get("offset", 0))
            page = [
                {k: copy.deepcopy(o[k]) for k in _SUMMARY} for o in rows[offset : offset + limit]
            ]
            if req.fault == "duplicate_rows":  # every row listed twice on this page
                page = [row for row in page for _ in (0, 1)]
        more = offset + limit < len(rows)
        nxt = f"{req.path}?limit={limit}&offset={offset + limit}" if more else None
        return Response(200, {"count": len(rows), "next": nxt, "previous": None, "results": page})

    def detail(self, _req: Request, args: list[str]) -> Response:
        """The detailed order (with channel.conf, as the real one)."""
        with self.lock:
            o = self.orders.get(int(args[0]))
            return Response(200, copy.deepcopy(o)) if o else Response(404, {"detail": "Not found."})

    def get_order(self, _req: Request, args: list[str]) -> Response:
        """One order, flat (channel as its pk), as the list shows it."""
        with self.lock:
            o = self.orders.get(int(args[0]))
            if o is None:
                return Response(404, {"detail": "Not found."})
            return Response(200, {**copy.deepcopy(o), "channel": o["channel"]["pk"]})

    def _children(self, table: dict[int, dict[str, Any]], req: Request) -> Response:
        order = int(req.query.get("order", 0))
        with self.lock:
            rows = [copy.deepcopy(r) for r in table.values() if r["order"] == order]
        return Response(200, {"count": len(rows), "next": None, "previous": None, "results": rows})

    def list_items(self, req: Request, _args: list[str]) -> Response:
        """Order items of ``?order=pk``."""
        return self._children(self.items, req)

    def list_discounts(self, req: Request, _args: list[str]) -> Response:
        """Discount items of ``?order=pk``."""
        return self._children(self.discounts, req)

    def item_detail(self, _req: Request, args: list[str]) -> Response:
        """One order item."""
        with self.lock:
            r = self.items.get(int(args[0]))
            return Response(200, copy.deepcopy(r)) if r else Response(404, {"detail": "Not found."})

    def discount_detail(self, _req: Request, args: list[str]) -> Response:
        """One discount item."""
        with self.lock:
            r = self.discounts.get(int(args[0]))
            return Response(200, copy.deepcopy(r)) if r else Response(404, {"detail": "Not found."})

    def patch_order(self, req: Request, args: list[str]) -> Response:
        """Only ``is_send`` may change, as documented."""
        body = req.body if isinstance(req.body, dict) else {}
        if set(body) - {"is_send"} or not isinstance(body.get("is_send"), bool):
            return Response(400, {"detail": "only {'is_send': bool} can be updated here"})
        with self.lock:
            o = self.orders.get(int(args[0]))
            if o is None:
                return Response(404, {"detail": "Not found."})
            o["is_send"] = body["is_send"]
            self.patches += 1
            return Response(
                200,
                {k: o[k] for k in ("pk", "number", "status", "amount")}
                | {"channel": o["channel"]["pk"], "is_send": o["is_send"]},
            )

    def patch_item(self, req: Request, args: list[str]) -> Response:
        """``extra_field`` merges; ``attributes`` replaces."""
        body = req.body if isinstance(req.body, dict) else {}
        with self.lock:
            item = self.items.get(int(args[0]))
            if item is None:
                return Response(404, {"detail": "Not found."})
            if isinstance(body.get("extra_field"), dict):
                item["extra_field"].update(body["extra_field"])
            for k in ("attributes", "attributes_kwargs", "status"):
                if k in body:
                    item[k] = body[k]
            return Response(200, copy.deepcopy(item))

    def bulk_status_update(self, req: Request, _args: list[str]) -> Response:
        """``{"orderitem_set": [{id, status, invoice_number, invoice_date, e_archive_url,
        tracking_number, shipping_company}]}``: all or nothing, 400 for an unknown item."""
        body = req.body if isinstance(req.body, dict) else {}
        rows = body.get("orderitem_set")
        if not isinstance(rows, list) or not rows:
            return Response(400, {"orderitem_set": ["a non-empty list is required"]})
        with self.lock:
            for row in rows:
                if not isinstance(row, dict) or int(row.get("id") or 0) not in self.items:
                    return Response(400, {"orderitem_set": [f"unknown order item: {row!r}"]})
                if str(row.get("status", "")) not in _ITEM_STATUSES:
                    return Response(400, {"status": [f"not a valid choice: {row.get('status')!r}"]})
            for row in rows:
                item = self.items[int(row["id"])]
                for k in _BULK_FIELDS:
                    if k in row:
                        item[k] = row[k]
                self.bulk_updates[int(row["id"])] = self.bulk_updates.get(int(row["id"]), 0) + 1
            return Response(200, {"orderitem_set": [copy.deepcopy(self.items[int(r["id"])])
                                                    for r in rows]})  # fmt: skip

    def stats(self) -> dict[str, Any]:
        """Orders sent and unsent (cancelled excluded from unsent)."""
        with self.lock:
            sent = sum(1 for o in self.orders.values() if o["is_send"])
            unsent = sum(
                1 for o in self.orders.values() if not o["is_send"] and o["status"] != "100"
            )
            return {
                "orders": len(self.orders),
                "sent": sent,
                "unsent": unsent,
                "cancelled": sum(1 for o in self.orders.values() if o["status"] == "100"),
                "bulk_status_updates": sum(self.bulk_updates.values()),
                "patches": self.patches,
            }
