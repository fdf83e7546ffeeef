"""Stock levels from the ERP as Omnium takes them: a negative level (the ERP oversold) is sent
as 0, and said so in the run log; a level that is not a whole number fails that entry."""


def process(data, attributes):
    quantity = data.get("quantity")
    if not isinstance(quantity, int):
        key = f"{data.get('sku')}@{data.get('warehouse')}"
        raise ValueError(f"stock level of {key} is {quantity!r}")
    if quantity < 0:
        attributes["log.stock.clamped"] = str(quantity)
        data["quantity"] = 0
    return data
