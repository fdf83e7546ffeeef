"""One body limit per route, the server's and the console's the same, and its refusal in the
console's words: a workbench input of nearly 1 MiB of JSON is taken through the form
(url-encoded: over 2 MiB) and the API; a body over a route's limit is a 413 with the console's
answer (JSON under /api/, words for htmx, the error page for a page), chunked or not, in
bounded memory; the events' webhook keeps its 1 MiB. Real HTTP through `integrator console`
and `integrator daemon`."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from support import Project
from support.console import TOKENS, console, with_users
from support.daemon import daemon

from integrator.console.app import WORKBENCH_BODY
from integrator.console.workbench import INPUT_BYTES

CASE = Path("flows/tests/order_flow/with_discount.order.json")
MIB = 1024 * 1024


def _big_order(project: Project, size: int) -> tuple[dict[str, Any], str]:
    """The recorded order padded with punctuation-heavy JSON to ``size`` bytes (compact)."""
    order = json.loads((project.root / CASE).read_text())
    order["padding"] = []
    base = len(json.dumps(order, separators=(",", ":")))
    unit = len(json.dumps({"k": [{}]}, separators=(",", ":"))) + 1
    order["padding"] = [{"k": [{}]} for _ in range((size - base) // unit)]
    text = json.dumps(order, separators=(",", ":"))
    assert size - unit <= len(text) <= size, len(text)
    return order, text


def _rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def _taken(url: str, project: Project) -> None:
    order, text = _big_order(project, 950_000)
    assert len(text.encode()) < INPUT_BYTES
    form = {"target": "order_flow|flow", "input": text, "attributes": "a=1"}
    assert len(urlencode(form)) > 2 * MIB  # the probe's case: the form is 3x the input
    page = requests.post(url + "/workbench/run", data=form, headers={"HX-Request": "true"},
                         timeout=60)  # fmt: skip
    assert page.status_code == 200, page.text[:500]
    assert 'id="erp-payload"' in page.text, page.text[:500]
    body = json.dumps({"flow": "order_flow", "input": order})  # the default separators
    assert len(body) > MIB  # over the events' limit, within the workbench's
    api = requests.post(url + "/api/workbench/run", data=body, timeout=60,
                        headers={"Content-Type": "application/json"})  # fmt: skip
    assert api.status_code == 200, api.text[:500]
    assert api.json()["kind"] == "flow" and api.json()["error"] is None


def _refused(url: str) -> None:
    """Just over the workbench's limit: 413 in the API's and the pages' words; exactly at it,
    the workbench's own words about its input."""
    head = b'{"flow":"order_flow","input":"'
    at = head + b"x" * (WORKBENCH_BODY - len(head) - 2) + b'"}'
    assert len(at) == WORKBENCH_BODY
    json_type = {"Content-Type": "application/json"}
    r = requests.post(url + "/api/workbench/run", data=at, headers=json_type, timeout=60)
    assert r.status_code == 400 and "more than 1024 KiB" in r.json()["detail"], r.text[:300]
    over = at[:-2] + b'x"}'
    r = requests.post(url + "/api/workbench/run", data=over, headers=json_type, timeout=60)
    assert r.status_code == 413, r.text[:300]
    assert r.headers["Content-Type"].startswith("application/json"), r.headers
    assert f"larger than {WORKBENCH_BODY} bytes" in r.json()["detail"], r.text
    form = {"target": "order_flow|flow", "input": "x" * WORKBENCH_BODY}
    r = requests.post(url + "/workbench/run", data=form, headers={"HX-Request": "true"},
                      timeout=60)  # fmt: skip
    assert r.status_code == 413 and r.headers["Content-Type"].startswith("text/html"), r.headers
    assert 'id="problem"' in r.text and f"larger than {WORKBENCH_BODY} bytes" in r.text, r.text


def test_the_console_takes_what_the_workbench_promises(project: Project) -> None:
    with console(project) as c:
        _taken(c.url, project)


def test_over_the_limit_is_413_in_the_consoles_words(project: Project) -> None:
    with console(project) as c:
        _refused(c.url)


def test_the_small_routes_refuse_in_their_words_too(project: Project) -> None:
    """With users: an action's API over 64 KiB is JSON, the login form's the error page."""
    with_users(project)
    with console(project) as c:
        auth = {"Authorization": f"Bearer {TOKENS['otto']}", "Content-Type": "application/json"}
        body = json.dumps({"flow": "order_flow", "note": "x" * 70_000})
        r = requests.post(c.url + "/api/actions/release", data=body, headers=auth, timeout=30)
        assert r.status_code == 413, r.text[:300]
        assert "larger than 65536 bytes" in r.json()["detail"], r.text
        r = requests.post(c.url + "/login", data={"user": "otto", "password": "p" * 70_000},
                          timeout=30)  # fmt: skip
        assert r.status_code == 413 and r.headers["Content-Type"].startswith("text/html")
        assert "larger than 65536 bytes" in r.text and "<html" in r.text.lower(), r.text[:500]


def _chunked(url: str, path: str, total: int) -> tuple[bytes, BaseException | None]:
    """POST ``total`` bytes as a chunked body (a thread sends, this one reads the answer)."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    failed: list[BaseException] = []
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"{" * 64 * 1024)

    def send() -> None:
        try:
            sock.sendall(
                b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            for _ in range(total // (64 * 1024)):
                sock.sendall(chunk)
            sock.sendall(b"0\r\n\r\n")
        except OSError as exc:  # the server stopped reading
            failed.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    answer = b""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    except OSError as exc:
        failed.append(exc)
    sender.join(30)
    sock.close()
    return answer, (failed[0] if failed else None)


def test_a_chunked_body_over_the_limit_is_refused_in_bounded_memory(project: Project) -> None:
    with console(project) as c:
        before = _rss_kib(c.proc.pid)
        answer, _error = _chunked(c.url, "/api/workbench/run", 3 * WORKBENCH_BODY)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
        head, _, body = answer.partition(b"\r\n\r\n")
        assert b"application/json" in head and b"Connection: close" in head, head
        assert f"larger than {WORKBENCH_BODY} bytes" in json.loads(body)["detail"]
        grew = _rss_kib(c.proc.pid, "VmHWM") - before
        assert grew < 8 * 1024, f"{grew} KiB for a {3 * WORKBENCH_BODY} byte body"
        # an endless one: the server stops reading it; the console still answers
        answer, error = _chunked(c.url, "/api/workbench/run", 200 * MIB)
        assert answer.startswith(b"HTTP/1.1 413") or error is not None, answer[:300]
        assert _rss_kib(c.proc.pid, "VmHWM") - before < 8 * 1024
        assert c.get("/api/workbench").status_code == 200


def test_the_daemon_serves_the_same_limits(project: Project) -> None:
    with daemon(project) as d:
        url = d.url("")
        _taken(url, project)
        _refused(url)
        # the events' webhook keeps its 1 MiB, refused in JSON too
        r = requests.post(url + "/events/order_flow", data=b"x" * MIB, timeout=30)
        assert r.status_code != 413, r.text[:300]
        r = requests.post(url + "/events/order_flow", data=b"x" * (MIB + 1), timeout=30)
        assert r.status_code == 413 and f"larger than {MIB} bytes" in r.json()["detail"]
        answer, _error = _chunked(url, "/events/order_flow", 2 * MIB)
        assert answer.startswith(b"HTTP/1.1 413") and f"than {MIB} bytes".encode() in answer
