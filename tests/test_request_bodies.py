"""Request bodies on the wire: a write sent as a form and as an XML template reaches the ERP
with its content type and the escaped values, through the CLI (a real HTTP server records what
arrives)."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from support import Project, make_project, unsent

from integrator.connectors.xmlbody import xml_value
from integrator.sandbox import Sandbox


class Recorder(BaseHTTPRequestHandler):
    """Answers every POST 201 {"id": "R-n"} and keeps what it received."""

    seen: list[tuple[str, bytes]] = []
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.lock:
            self.seen.append((self.headers.get("Content-Type") or "", body))
            n = len(self.seen)
        answer = json.dumps({"id": f"R-{n}"}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    seen: list[tuple[str, bytes]] = []
    handler = type("H", (Recorder,), {"seen": seen, "lock": threading.Lock()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def write_only(project: Project, write: str) -> None:
    """The order flow without query_check and the script, its write replaced by ``write``."""
    text = project.flow().read_text()
    start, end = text.index("  - query_check:"), text.index("  - check_response")
    project.flow().write_text(text[:start] + write + text[end:])


def test_a_form_body_and_an_xml_body_reach_the_erp_as_declared(
    tmp_path: Path, sandbox: Sandbox, recorder: tuple[str, list[tuple[str, bytes]]]
) -> None:
    url, seen = recorder
    project = make_project(tmp_path, {**sandbox.env(), "ERP_URL": url})
    number = unsent(sandbox)[0]
    write_only(
        project,
        "  - write:\n"
        "      path: /form\n"
        "      content_type: form\n"
        "      body: {number: '${_order.number}', note: 'a&b=c d', vat: '${vars.vat}'}\n",
    )
    project.edit_flow("stages:", "vars: {vat: 20}\nstages:")
    r = project.run("run-flow", "order_flow", "--no-progress", "--order", number)
    assert r.code == 0, r.out + r.err
    ctype, body = seen[-1]
    assert ctype == "application/x-www-form-urlencoded"
    assert urllib.parse.parse_qs(body.decode()) == {
        "number": [number], "note": ["a&b=c d"], "vat": ["20"]
    }  # fmt: skip

    (tmp_path / "xml").mkdir()
    project2 = make_project(tmp_path / "xml", {**sandbox.env(), "ERP_URL": url})
    write_only(
        project2,
        "  - write:\n"
        "      path: /xml\n"
        "      content_type: application/xml\n"
        "      body: '<Order><Number>${_order.number}</Number><Who>${_order.customer.email}"
        "</Who><Lines>${data.orderitem_set[0:2].{Line: {Sku: product.sku, Pk: pk}}}</Lines>"
        "</Order>'\n",
    )
    number2 = unsent(sandbox)[1]
    r = project2.run("run-flow", "order_flow", "--no-progress", "--order", number2)
    assert r.code == 0, r.out + r.err
    ctype, body = seen[-1]
    assert ctype == "application/xml; charset=utf-8"
    doc = xml_value(body)
    assert doc["Order"]["Number"] == number2
    order = sandbox.omnitron.orders
    assert any(o["number"] == number2 for o in order.values())
    assert "Line" in json.dumps(doc), doc
