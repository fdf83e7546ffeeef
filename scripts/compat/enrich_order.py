# Akinon Integrator / NiFi ExecuteScript style, run unchanged by integrator's compat runtime.
# The same job as scripts/enrich_order.py: gross line total and source system.
import json
from decimal import Decimal

from java.nio.charset import StandardCharsets
from org.apache.commons.io import IOUtils
from org.apache.nifi.processor.io import StreamCallback


class TransformCallback(StreamCallback):
    def __init__(self):
        self.lines = 0
        self.gross = Decimal("0")

    def process(self, inputStream, outputStream):
        text = IOUtils.toString(inputStream, StandardCharsets.UTF_8)
        order = json.loads(text)
        for item in order.get("orderitem_set", []):
            self.gross += Decimal(item["price"])
            self.lines += 1
        order["gross_amount"] = str(self.gross)
        order["source_system"] = "omnitron"
        outputStream.write(bytearray(json.dumps(order, indent=4).encode("utf-8")))


flowFile = session.get()
if flowFile != None:  # noqa: E711 - as the Akinon examples write it
    callback = TransformCallback()
    flowFile = session.write(flowFile, callback)
    flowFile = session.putAttribute(flowFile, "log.lines", str(callback.lines))
    flowFile = session.putAttribute(flowFile, "log.gross_amount", str(callback.gross))
    session.transfer(flowFile, REL_SUCCESS)
