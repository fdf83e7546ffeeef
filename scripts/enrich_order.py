"""Example script step (native API): add fields the ERP needs before the mapping."""

from decimal import Decimal


def process(data, attributes):
    """Compute the gross line total and tag the order's source; log what was done."""
    lines = data.get("orderitem_set", [])
    gross = sum(Decimal(item["price"]) for item in lines)
    data["gross_amount"] = str(gross)
    data["source_system"] = "omnitron"
    attributes["log.lines"] = str(len(lines))
    attributes["log.gross_amount"] = str(gross)
    return data
