"""Alarms' test helpers: a local webhook receiver, a project's notifier and alarm, the ERP's
refusal that fires it."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from integrator.sandbox import Sandbox
from support import Project, fault_rule

HOOK_TOKEN = "T000-hook-secret-B000-XXXXXXXX"  # what a Slack URL carries


class Receiver:
    """A local HTTP server that keeps every POST (and answers ``status``)."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.status = 200
        self.location = ""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                receiver.posts.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                self.send_response(receiver.status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def json(self) -> list[Any]:
        """The bodies received, as JSON."""
        return [json.loads(p["body"]) for p in self.posts]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


NOTIFIERS = """
notifiers:
  - name: ops-hook
    type: webhook
    url: ${ALARM_HOOK_URL}
"""

ERROR_ALARM = """
alarms:
  - name: erp-errors
    condition: error_rate
    above: 0
    runs: 1
    cool_off: 1h
    notify: [ops-hook]
"""


def with_alarms(project: Project, receiver: Receiver, alarms: str = ERROR_ALARM) -> None:
    cfg = project.root / "config.yaml"
    cfg.write_text(cfg.read_text() + NOTIFIERS)
    project.env["ALARM_HOOK_URL"] = f"{receiver.url}/services/{HOOK_TOKEN}"
    flow = project.flow()
    flow.write_text(flow.read_text() + alarms)


def erp_refuses(sandbox: Sandbox) -> None:
    fault_rule(sandbox.erp.url, action="status", route="create", status=400)
