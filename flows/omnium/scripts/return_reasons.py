"""ERP return reason codes → the reasons Omnium shows; a line with an unknown code fails the
return (it is retried after the code is added here), and damaged goods are never restocked."""

REASONS = {
    "R01": "Wrong size",
    "R02": "Damaged in transport",
    "R03": "Not as described",
    "R04": "Changed mind",
}
NEVER_RESTOCK = {"R02"}


def process(data, attributes):
    for line in data.get("lines") or []:
        code = str(line.get("reason", ""))
        if code not in REASONS:
            where = line.get("line_item_id")
            raise ValueError(f"unknown return reason code {code!r} on line {where}")
        line["reason"] = REASONS[code]
        line["restock"] = bool(line.get("restock")) and code not in NEVER_RESTOCK
    attributes["log.return.rma"] = str(data.get("rma_number"))
    attributes["log.return.lines"] = str(len(data.get("lines") or []))
    return data
