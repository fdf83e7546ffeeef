"""Example check-response script (native API): the ERP's answer → mapping data for mark_sent.

Use it with ``check_response: {script: scripts/check_response.py}``; without a script the
built-in reads the same fields by JMESPath.
"""


def check_response(request, response, attributes):
    """Return {"order": {...}, "order_items": [{"pk": ..., "extra_field": {...}}]}."""
    if not response.get("id"):
        raise ValueError("the ERP answered without an id")
    attributes["erp.reference"] = response["id"]
    items = [
        {"pk": line["external_id"], "extra_field": {"erp_line_id": line["line_id"]}}
        for line in response.get("lines", [])
    ]
    return {"order": {"erp_order_id": response["id"]}, "order_items": items}
