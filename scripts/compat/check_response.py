# Check-response script in the simple compat form: the input is
# {"request_data": <body sent to the ERP>, "response_data": <the ERP's answer>};
# the output is the mapping data for mark_sent.
import json

data = json.loads(input_text)
response = data["response_data"]
if not response.get("id"):
    session.putAttribute("log.script.error", "the ERP answered without an id")
    raise ValueError("the ERP answered without an id")

items = []
for line in response.get("lines", []):
    items.append({"pk": line["external_id"], "extra_field": {"erp_line_id": line["line_id"]}})

result = {"order": {"erp_order_id": response["id"]}, "order_items": items}
session.putAttribute("erp.reference", response["id"])
outputStream.write(json.dumps(result))
