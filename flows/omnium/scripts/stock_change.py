"""A stock change from the ERP: a change of 0 writes nothing; a change without a reason gets
the ERP's change id as its reason, so Omnium's log always says where it came from."""


def process(data, attributes):
    if int(data.get("change") or 0) == 0:
        attributes["order_exists"] = "true"  # nothing to write
    if not data.get("reason"):
        data["reason"] = f"erp change {data.get('id')}"
    key = f"{data.get('sku')}@{data.get('warehouse')}"
    attributes["log.stock.change"] = f"{key} {data.get('change')}"
    return data
