"""ERP carrier names → the shipping companies Omnium knows; an unknown one is passed as it is
and noted in the run log."""

CARRIERS = {"POSTNORD": "PostNord", "BRING": "Bring", "DHL": "DHL Express", "UPS": "UPS",
            "HELTHJEM": "Helthjem"}  # fmt: skip


def process(data, attributes):
    name = str(data.get("shipping_company") or "")
    known = CARRIERS.get(name.upper().replace(" ", ""))
    if name and known is None:
        attributes["log.carrier.unknown"] = name
    data["shipping_company"] = known or name or None
    return data
