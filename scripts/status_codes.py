"""ERP status words and carriers → Omnitron's codes, line by line (the order status flow).

A line the ERP shipped in full gets the shipped status; one cancelled in full, the cancelled
status; a line with nothing shipped yet is back-ordered and left out (a later change ships it,
with its own tracking number). A change with no line left writes nothing.
"""

STATUS = {"INVOICED": "450", "SHIPPED": "500", "DELIVERED": "550", "CANCELLED": "100",
          "RETURNED": "600"}  # fmt: skip
CARRIERS = {"Yurtiçi Kargo": "yurtici", "Aras Kargo": "aras", "MNG Kargo": "mng",
            "PTT Kargo": "ptt", "Sürat Kargo": "surat"}  # fmt: skip


def process(data, attributes):
    lines, backordered = [], []
    for line in data.get("lines") or []:
        word = str(line.get("status", "")).upper()
        ordered = int(line.get("quantity", 1))
        shipped = int(line.get("shipped_quantity", ordered if word != "CANCELLED" else 0))
        cancelled = int(line.get("cancelled_quantity", ordered if word == "CANCELLED" else 0))
        if cancelled >= ordered:
            status = STATUS["CANCELLED"]
        elif word in ("SHIPPED", "DELIVERED") and shipped < ordered:
            backordered.append(str(line.get("external_id")))
            continue
        elif word in STATUS:
            status = STATUS[word]
        else:
            raise ValueError(f"unknown ERP status {line.get('status')!r} on line {line}")
        lines.append({**line, "status": status})
    data["lines"] = lines
    carrier = data.get("shipping_company")
    if carrier:
        data["shipping_company"] = CARRIERS.get(carrier, carrier.lower())
    attributes["log.status.lines"] = str(len(lines))
    if backordered:
        attributes["log.status.backordered"] = ",".join(backordered)
    if not lines:
        attributes["order_exists"] = "true"  # nothing to write for this change
    return data
