"""Deterministic, realistic Omnitron orders: Turkish addresses, decimal strings, discounts."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

__all__ = ["CHANNEL_SECRET", "PRODUCT_CODES", "seed_orders"]

CHANNEL_SECRET = "chan-Secret-7f3a9c2e"  # in channel.conf: must never leave the runner

_FIRST = ["Ayşe", "Mehmet", "Zeynep", "Mustafa", "Elif", "Ahmet", "Fatma", "Emre", "Şule", "Can"]
_LAST = ["Yılmaz", "Kaya", "Demir", "Şahin", "Çelik", "Yıldız", "Öztürk", "Aydın", "Arslan"]
_CITIES = [
    ("İstanbul", "Kadıköy", "Moda"),
    ("Ankara", "Çankaya", "Kızılay"),
    ("İzmir", "Karşıyaka", "Bostanlı"),
    ("Bursa", "Nilüfer", "Görükle"),
    ("Antalya", "Muratpaşa", "Lara"),
]
_PRODUCTS = [
    ("TSH-001", "Pamuklu Tişört", "249.90"),
    ("PNT-014", "Keten Pantolon", "899.00"),
    ("AYK-220", "Deri Ayakkabı", "1899.50"),
    ("CNT-005", "Sırt Çantası", "649.99"),
    ("SAL-310", "İpek Şal", "420.00"),
    ("GML-102", "Oxford Gömlek", "559.90"),
]
PRODUCT_CODES = tuple(sku for sku, _name, _price in _PRODUCTS)  # the SKUs orders are made of


def _money(d: Decimal) -> str:
    return str(d.quantize(Decimal("0.01")))


def _address(rng: random.Random, pk: int, first: str, last: str) -> dict[str, Any]:
    city, township, district = rng.choice(_CITIES)
    return {
        "pk": pk,
        "email": f"{first.lower()}.{last.lower()}@example.com.tr",
        "phone_number": f"05{rng.randint(300000000, 599999999)}",
        "first_name": first,
        "last_name": last,
        "country": {"pk": 1, "name": "Türkiye", "code": "tr"},
        "city": {"pk": _CITIES.index((city, township, district)) + 1, "name": city},
        "township": {"name": township},
        "district": {"name": district},
        "line": f"{district} Mah. {rng.randint(1, 120)}. Sokak No:{rng.randint(1, 60)}",
        "postcode": f"{rng.randint(10, 81)}{rng.randint(100, 999)}",
    }


Tables = tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]], dict[int, dict[str, Any]]]


def seed_orders(
    n: int,
    *,
    seed: int = 42,
    items_per_order: int | None = None,
    discounts_per_order: int | None = None,
    after: Tables | None = None,
    all_unsent: bool = False,
) -> Tables:
    """``n`` orders with their items and discount items, the same for the same seed.

    About 5 % are cancelled (status 100) and 5 % already sent, so the filters have work to do
    (none with ``all_unsent``). ``after``: tables to continue (pks go on from theirs); the new
    rows are returned alone.
    """
    rng = random.Random(seed)
    orders: dict[int, dict[str, Any]] = {}
    items: dict[int, dict[str, Any]] = {}
    discounts: dict[int, dict[str, Any]] = {}
    first_pk, item_base, discount_base = 1, 0, 0
    if after is not None:
        first_pk = max(after[0], default=0) + 1
        item_base, discount_base = max(after[1], default=0), max(after[2], default=0)
    channel = {
        "pk": 1,
        "name": "Sandbox Web",
        "channel_type": "web",
        "catalog": 1,
        "is_active": True,
        "category_tree": None,
        "conf": {
            "username": "shop-api",
            "auth_token": "tok-" + CHANNEL_SECRET,
            "password": CHANNEL_SECRET,
            "server": "https://shop.example.com.tr",
            "sales_url": "https://shop.example.com.tr/orders",
            "feature_flags": {},
        },
        "schema": {},
    }
    for pk in range(first_pk, first_pk + n):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        roll = 1.0 if all_unsent else rng.random()
        status = "100" if roll < 0.05 else "400"
        is_send = 0.05 <= roll < 0.10
        n_items = items_per_order or rng.randint(1, 3)
        total = Decimal(0)
        order_items = []
        for _ in range(n_items):
            ipk = item_base + len(items) + 1
            sku, name, price = rng.choice(_PRODUCTS)
            total += Decimal(price)
            items[ipk] = {
                "pk": ipk,
                "order": pk,
                "product": {
                    "pk": 100 + _PRODUCTS.index((sku, name, price)),
                    "sku": sku,
                    "name": name,
                    "base_code": sku.split("-")[0],
                },
                "status": status,
                "price_currency": "try",
                "price": price,
                "retail_price": _money(Decimal(price) * Decimal("1.2")),
                "tax_rate": "20.00",
                "quantity": 1,
                "shipping_company": None,
                "cancel_status": None,
                "extra_field": {},
                "attributes": {},
                "attributes_kwargs": {},
            }
            order_items.append(ipk)
        n_disc = discounts_per_order if discounts_per_order is not None else rng.randint(0, 1)
        disc_total = Decimal(0)
        for _ in range(n_disc):
            dpk = discount_base + len(discounts) + 1
            amount = (total * Decimal("0.10")).quantize(Decimal("0.01"))
            disc_total += amount
            discounts[dpk] = {
                "pk": dpk,
                "name": "Sepette %10 İndirim",
                "amount": _money(amount),
                "order": pk,
                "offer_type": "basket",
                "session_offer_type": "basket",
                "code": None,
                "benefitapplicant_set": [{"order_item": i, "amount": "0.00"} for i in order_items],
                "conditionapplicant_set": [],
                "promotion": {"pk": 9, "name": "Kasım İndirimi", "slug": "kasim-indirimi"},
            }
        billing = _address(rng, 2 * pk, first, last)
        orders[pk] = {
            "pk": pk,
            "number": f"{202611000000 + pk}",
            "channel": channel,
            "status": status,
            "date_placed": f"2026-11-{1 + pk % 20:02d}T{8 + pk % 12:02d}:15:00.000000Z",
            "customer": {
                "pk": 500 + pk,
                "email": billing["email"],
                "first_name": first,
                "last_name": last,
                "phone_number": billing["phone_number"],
                "erp_code": f"C{500 + pk:06d}",
                "extra_field": {},
            },
            "shipping_address": _address(rng, 2 * pk - 1, first, last),
            "billing_address": billing,
            "currency": "try",
            "amount": _money(total - disc_total),
            "shipping_amount": "29.90",
            "shipping_tax_rate": "20.00",
            "extra_field": {},
            "transaction_set": [],
            "payment_option": {"pk": 1, "name": "Kredi Kartı", "slug": "credit-card"},
            "payment_option_slug": "credit-card",
            "bin_number": "454360",
            "installment_count": 1,
            "installment_interest_amount": "0.00",
            "cargo_company": {"pk": 3, "name": "Yurtiçi Kargo", "erp_code": "YK"},
            "is_send": is_send,
        }
    return orders, items, discounts
