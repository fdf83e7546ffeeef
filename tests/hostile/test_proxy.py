"""The proxy misbehaves as it says: each mode seen on the wire by a plain client (no runner),
in front of the sandbox ERP. A hostile test is only as good as its hostility."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from support.proxy import HUGE_DIGITS, HUGE_LENGTH, HostileProxy, Rule, gzip_bomb

from integrator.sandbox import Sandbox, running_sandbox

AUTH = {"Authorization": "Bearer sandbox-erp-token"}
ORDER = {"order_number": "N-1", "lines": [{"external_id": 1, "sku": "S"}]}


class Client:
    """Plain HTTP to the proxy; every connection closed at the end of the test."""

    def __init__(self, proxy: HostileProxy) -> None:
        self.proxy = proxy
        self.host, self.port = proxy.server.server_address[:2]
        self.open: list[http.client.HTTPConnection | socket.socket] = []

    def connect(
        self, timeout: float = 5, host: str = "", port: int = 0
    ) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection(
            host or str(self.host), port or int(self.port), timeout=timeout
        )
        self.open.append(conn)
        return conn

    def call(
        self, method: str = "GET", path: str = "/api/orders/?number=N-1", body: Any = None,
    ) -> http.client.HTTPResponse:  # fmt: skip
        conn = self.connect()
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, data, {**AUTH, "Content-Type": "application/json"})
        return conn.getresponse()

    def raw(self, path: str = "/api/orders/?number=N-1") -> socket.socket:
        """A socket that has sent one GET."""
        sock = socket.create_connection((str(self.host), int(self.port)), timeout=5)
        self.open.append(sock)
        auth = AUTH["Authorization"]
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n".encode())
        return sock

    def close(self) -> None:
        for c in self.open:
            c.close()


@pytest.fixture
def erp() -> Iterator[tuple[Sandbox, HostileProxy, Client]]:
    with running_sandbox(3) as sb:
        proxy = HostileProxy(sb.erp.url).start()
        client = Client(proxy)
        try:
            yield sb, proxy, client
        finally:
            client.close()
            proxy.stop()


Env = tuple[Sandbox, HostileProxy, Client]


def test_pass_through_and_rules_that_count(erp: Env) -> None:
    sb, proxy, c = erp
    direct = json.loads(c.call().read())
    assert direct == {"count": 0, "next": None, "results": []}
    rule = proxy.hostile("html", path=r"number=N-1", count=1, skip=1, status=502)
    statuses = [c.call().status for _ in range(3)]
    assert statuses == [200, 502, 200] and rule.hits == 1
    proxy.hostile("html", count=1)
    assert (c.call().getheader("Content-Type") or "").startswith("text/html")
    proxy.hostile("html", method="POST", body='"N-2"')
    assert c.call("POST", "/api/orders/", ORDER).status == 201  # another order: passes
    assert c.call("POST", "/api/orders/", {**ORDER, "order_number": "N-2"}).status == 502
    assert sb.erp.received == {"N-1": 1, "N-2": 1}  # forwarded first: the ERP has it
    proxy.clear()
    proxy.hostile("html", forward=False)
    assert c.call("POST", "/api/orders/", {**ORDER, "order_number": "N-3"}).status == 502
    assert "N-3" not in sb.erp.received
    with pytest.raises(ValueError, match="unknown mode"):
        Rule("teapot")


def test_drips_one_byte_at_a_time(erp: Env) -> None:
    _, proxy, c = erp
    proxy.hostile("drip_headers", count=1)
    sock = c.raw()
    assert [len(sock.recv(100)) for _ in range(5)] == [1] * 5  # H, T, T, P, /
    sock.close()
    proxy.hostile("drip_body", count=1)
    resp = c.call()
    assert resp.status == 200 and int(resp.getheader("Content-Length") or 0) > 300
    assert [len(resp.read1(100)) for _ in range(3)] == [1] * 3


def test_stall_and_close_mid_body(erp: Env) -> None:
    _, proxy, c = erp
    proxy.hostile("stall", count=1)
    conn = c.connect(timeout=0.3)
    conn.request("GET", "/api/orders/?number=N-1", headers=AUTH)
    resp = conn.getresponse()  # the headers arrive
    assert resp.status == 200
    with pytest.raises(TimeoutError):
        resp.read()
    proxy.hostile("close_mid_body", count=1)
    with pytest.raises(http.client.IncompleteRead):
        c.call().read()


def test_streams_without_end(erp: Env) -> None:
    _, proxy, c = erp
    proxy.hostile("huge_length", count=1)
    resp = c.call()
    assert resp.getheader("Content-Length") == str(HUGE_LENGTH) == "2147483648"
    assert len(resp.read(4 << 20)) == 4 << 20
    resp.close()
    proxy.hostile("endless_chunked", count=1)
    resp = c.call()
    assert resp.getheader("Transfer-Encoding") == "chunked"
    assert resp.read(4 << 20).startswith(b'{"results": [')  # 4 MiB and still no end
    resp.close()


def test_gzip_bomb(erp: Env) -> None:
    """The generator is a valid gzip member (CRC and size checked) of exactly ``total`` zeros;
    on the wire the first 64 KiB inflate to more than 32 MiB."""
    total = (3 << 20) + 12345
    assert gzip.decompress(b"".join(gzip_bomb(total))) == bytes(total)
    _, proxy, c = erp
    proxy.hostile("gzip_bomb", count=1)
    resp = c.call()
    assert resp.getheader("Content-Encoding") == "gzip"
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    inflated = 0
    data = resp.read(64 << 10)
    while data:
        out = inflate.decompress(data, 1 << 20)
        inflated += len(out)
        assert out == bytes(len(out))
        data = inflate.unconsumed_tail
    assert inflated > 32 << 20
    resp.close()


def test_answers_that_cannot_be_read(erp: Env) -> None:
    _, proxy, c = erp
    proxy.hostile("invalid_utf8", count=1, key="next")
    body = c.call().read()
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")
    assert body.startswith(b'{"count": 0, "next": "caf')  # the real answer, one value bad
    proxy.hostile("deep_json", count=1)
    with pytest.raises(RecursionError):
        json.loads(c.call().read())
    proxy.hostile("nan", count=1, key="count")
    assert c.call().read() == b'{"count": NaN, "next": null, "results": []}'
    proxy.hostile("huge_float", count=1, key="count")
    assert json.loads(c.call().read())["count"] == float("inf")
    proxy.hostile("huge_int", count=1, key="count")
    body = c.call().read()
    assert len(body) > HUGE_DIGITS
    with pytest.raises(ValueError, match="digits"):
        json.loads(body)
    proxy.hostile("fake_gzip", count=1)
    resp = c.call()
    assert resp.getheader("Content-Encoding") == "gzip"
    assert json.loads(resp.read())["count"] == 0  # plain JSON under a gzip label
    proxy.hostile("not_json", count=1)
    resp = c.call()
    assert resp.status == 200 and resp.read() == b"OK - order received"


def test_redirects_to_the_same_host_and_to_a_trap(erp: Env) -> None:
    sb, proxy, c = erp
    proxy.hostile("redirect", count=1, status=307)
    resp = c.call("POST", "/api/orders/", ORDER)
    location = resp.getheader("Location") or ""
    assert resp.status == 307 and location.startswith(proxy.url + "/_hostile/redirect/")
    assert sb.erp.received == {"N-1": 1}  # forwarded first
    again = c.call("POST", location.removeprefix(proxy.url), ORDER)
    assert again.status == 201 and sb.erp.received == {"N-1": 2}  # a follower writes twice
    proxy.hostile("redirect", count=1, status=308, to="other", forward=False)
    resp = c.call("POST", "/api/orders/", {**ORDER, "order_number": "N-9"})
    location = resp.getheader("Location") or ""
    assert location == proxy.trap.url + "/api/orders/" and proxy.trap.url.startswith(
        "http://127.0.0.2:"
    )
    assert "N-9" not in sb.erp.received
    assert proxy.trap.leaks() == []
    trap = c.connect(host="127.0.0.2", port=int(location.split(":")[2].split("/")[0]))
    trap.request("POST", "/api/orders/", b'{"password": "x"}', AUTH)
    assert trap.getresponse().status == 200
    assert proxy.trap.leaks() == [
        "POST /api/orders/: a authorization header",
        "POST /api/orders/: a body of 17 bytes",
    ]
