"""What an assembled Omnitron order looks like, for ``integrator validate``'s template check.

Two sources, both without a call: the sandbox's seeded orders assembled as ``read`` assembles
them (detail + ``orderitem_set`` + ``discountitem_set``), and the public API reference's shapes
(``orders_integration/{pk}/detailed_integration``, the order item schema, the discount item
detail), keys exact and values placeholders. An empty mapping is a free-form field
(``extra_field``, ``attributes``) or one the reference does not show: any key is accepted
below it. A flow's golden cases (``flows/tests/<flow>/*.order.json``) add to these: a field
that your Omnitron has and these lack is made known by a golden case that has it.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

__all__ = ["REFERENCE_ORDER", "omnitron_samples"]

_ADDRESS: dict[str, Any] = {"pk": 0, "email": "", "phone_number": ""}

REFERENCE_ORDER: dict[str, Any] = {
    "pk": 0,
    "number": "",
    "channel": {
        "pk": 0,
        "name": "",
        "channel_type": "web",
        "catalog": 0,
        "modified_date": "",
        "created_date": "",
        "category_tree": None,
        "is_active": True,
        "conf": {},
        "schema": {},
    },
    "status": "400",
    "date_placed": "",
    "customer": {
        "pk": 0,
        "channel": 0,
        "email": "",
        "first_name": "",
        "last_name": "",
        "phone_number": None,
        "is_active": True,
        "channel_code": "",
        "erp_code": "",
        "extra_field": {},
        "modified_date": "",
        "created_date": "",
        "date_joined": "",
        "email_allowed": False,
        "sms_allowed": False,
        "call_allowed": False,
        "gender": None,
        "attributes": {},
        "user_type": None,
        "date_of_birth": None,
    },
    "shipping_address": _ADDRESS,
    "billing_address": _ADDRESS,
    "currency": "try",
    "amount": "0.00",
    "shipping_amount": "0.00",
    "shipping_tax_rate": "0.00",
    "extra_field": {},
    "transaction_set": [],
    "payment_option": {},
    "payment_option_slug": "",
    "bin_number": "",
    "installment": {},
    "installment_count": 1,
    "installment_interest_amount": "0.00",
    "cargo_company": {},
    "orderitem_set": [
        {
            "pk": 0,
            "order": 0,
            "product": 0,
            "price_list": 0,
            "stock_list": 0,
            "status": "400",
            "price_currency": "try",
            "price": "0.00",
            "tax_rate": "0.00",
            "shipping_company": None,
            "shipment_code": None,
            "cancel_status": None,
            "is_tradable": True,
            "installment_interest_amount": None,
            "datasource": None,
            "cancellation_reconciliation": None,
            "reconciliation": None,
            "forced_refund": False,
            "original_stock": None,
            "shipping_option_group": None,
            "extra_field": {},
            "attributes": {},
            "attributes_kwargs": {},
            "localized_attributes": {},
            "localized_attributes_kwargs": {},
            "modified_date": "",
        }
    ],
    "discountitem_set": [
        {
            "pk": 0,
            "name": "",
            "amount": "0.00",
            "order": 0,
            "offer_type": "",
            "session_offer_type": "",
            "code": None,
            "benefitapplicant_set": [{}],
            "conditionapplicant_set": [{}],
            "promotion": {"pk": 0, "created_date": "", "modified_date": "", "name": "", "slug": ""},
        }
    ],
}


@functools.cache
def _samples() -> tuple[dict[str, Any], ...]:
    from integrator.sandbox.seed import seed_orders

    orders, items, discounts = seed_orders(
        2, items_per_order=2, discounts_per_order=1, all_unsent=True
    )
    out = []
    for pk, order in orders.items():
        doc = copy.deepcopy(order)
        doc["orderitem_set"] = [copy.deepcopy(i) for i in items.values() if i["order"] == pk]
        doc["discountitem_set"] = [copy.deepcopy(d) for d in discounts.values() if d["order"] == pk]
        out.append(doc)
    return (*out, REFERENCE_ORDER)


def omnitron_samples() -> list[dict[str, Any]]:
    """Assembled orders of Omnitron's shape (shared: do not change them)."""
    return list(_samples())
