"""A misbehaving HTTP proxy: real sockets on loopback, between the runner and a sandbox server.

The runner's connector ``Host`` points at the proxy; the proxy forwards every request to its
upstream (the sandbox's Omnitron or ERP) and passes the answer back, unless a rule matches the
request: then it answers the way the rule's mode says. Rules match on the method, a regular
expression searched in the request target (path and query) and a substring of the request
body (an order number: "hit one order only"), for the next ``count`` matching requests
(``-1``: every one) after ``skip`` of them, and with a ``rate``. They are switched at run time
from the test's process (``HostileProxy.hostile``, ``HostileProxy.clear``); each counts its
``hits``.

``forward`` (default True) sends the request upstream first: the server did the work (the ERP
committed the order) and only the answer is hostile. Modes that reshape the answer (drip,
stall, close mid-body, a false gzip, injected values) use the upstream's real answer.

Modes (``MODES``):

==================  ===============================================================
pass                pass-through
drip_headers        the status line and headers one byte at a time (padded: longer
                    than HOLD_SECONDS, so only a deadline ends it in time)
drip_body           the real headers, then the body one byte at a time (padded too)
endless_chunked     ``Transfer-Encoding: chunked``, a JSON array that never ends
huge_length         ``Content-Length: 2147483648`` (2 GB), then bytes as fast as read
gzip_bomb           ``Content-Encoding: gzip``: 1 GiB of zeros (1 MB on the wire),
                    generated as it is read
html                an HTML error page with ``status`` (200, 502, ...)
redirect            ``status`` (301/302/307/308) to ``to="same"`` (this proxy) or
                    ``to="other"`` (the trap on 127.0.0.2, which records what it gets)
not_json            a 2xx (``status``) answer in plain text
invalid_utf8        the real JSON answer with a value that is not UTF-8
deep_json           the real answer with a value nested 100,000 deep
nan                 the real answer with a value ``NaN``
huge_float          the real answer with a value ``1e999999``
huge_int            the real answer with a 100,000-digit integer
stall               the real headers, then nothing (until the client leaves)
close_mid_body      the real headers, half of the body, then the connection closes
fake_gzip           ``Content-Encoding: gzip`` on a body that is not gzip
xml                 ``answer`` (bytes) as ``text/xml`` with ``status`` (default 200)
xml_*               a hostile XML answer (``XML_MODES``: entity bombs, external
                    entities and DTDs aimed at the trap, deep nesting, a lying
                    encoding, SOAP Faults with HTML inside, bombs inside a gzip)
==================  ===============================================================

Injected values replace the value of ``key`` in the answer (an object), or its first key.
Everything that streams or drips stops when the client leaves, the proxy stops, or after
``HOLD_SECONDS``.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import json
import random
import re
import socket
import socketserver
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO
from urllib.parse import urlsplit

__all__ = ["MODES", "XML_MODES", "HostileProxy", "Rule", "Seen", "Trap", "gzip_bomb"]

HOLD_SECONDS = 30.0  # the longest a drip, stall or stream goes on
DRIP_INTERVAL = 0.1  # seconds between dripped bytes: each read gets a byte well in time
BOMB_BYTES = 1 << 30  # what the gzip bomb inflates to
_DRIP_BYTES = int(HOLD_SECONDS / DRIP_INTERVAL) + 50
HUGE_LENGTH = 2 * 1024**3  # the Content-Length the huge_length mode claims
DEEP = 100_000
HUGE_DIGITS = 100_000
HUGE_ATTRIBUTE = 8 * 1024 * 1024  # characters of the xml_huge_attribute mode's value

# Hostile XML answers (``_xml``): what each is
XML_MODES = {
    "xml_billion_laughs": "nine levels of entities, ten references each: 10^9 'lol's",
    "xml_quadratic": "one 100 KB entity referenced 10,000 times (1 GB expanded)",
    "xml_external_entity": "an external entity: file:///etc/passwd",
    "xml_external_dtd": "an external DTD on the trap (127.0.0.2)",
    "xml_parameter_entity": "a parameter entity that fetches a DTD from the trap",
    "xml_deep": "elements nested 100,000 deep",
    "xml_huge_attribute": "an attribute of 8 MiB (well-formed, within MaxAnswerBytes)",
    "xml_lying_encoding": "declares UTF-8, written in ISO-8859-9",
    "xml_fault_html": "a SOAP 1.1 Fault whose faultstring is an escaped HTML error page",
    "xml_fault_raw_html": "a SOAP Fault with a raw HTML page (not XML) inside its detail",
    "xml_gzip_laughs": "the billion laughs, gzip-encoded",
    "xml_gzip_bomb": "gzip that inflates to 1 GiB of XML elements (1 MB on the wire)",
}

MODES = frozenset(
    {"pass", "drip_headers", "drip_body", "endless_chunked", "huge_length", "gzip_bomb", "html",
     "redirect", "not_json", "invalid_utf8", "deep_json", "nan", "huge_float", "huge_int",
     "stall", "close_mid_body", "fake_gzip", "xml", *XML_MODES}
)  # fmt: skip
# Modes whose answer is well framed: the connection may be kept alive after them.
_FRAMED = frozenset(
    {"pass", "html", "redirect", "not_json", "invalid_utf8", "deep_json", "nan", "huge_float",
     "huge_int", "fake_gzip", "xml", *(m for m in XML_MODES if m != "xml_gzip_bomb")}
)  # fmt: skip
_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
     "te", "trailer", "transfer-encoding", "upgrade", "content-length", "host"}
)  # fmt: skip
_REDIRECT_PREFIX = "/_hostile/redirect/"
_MARK = "__hostile_value__"
_HTML = (
    "<!DOCTYPE html><html><head><title>{status} Error</title></head><body>"
    "<h1>{status}</h1><p>The server encountered a problem. Please try again later.</p>"
    "<hr><address>nginx</address></body></html>"
)


@dataclass
class Rule:
    """When to misbehave (method, target pattern, body substring, count, rate) and how."""

    mode: str
    path: str = ""  # a regular expression searched in the request target
    method: str = ""  # "" matches any
    body: str = ""  # a substring of the request body
    count: int = -1  # the next N matching requests; -1: every one
    skip: int = 0  # let this many matching requests pass first
    rate: float = 1.0
    forward: bool = True  # the upstream gets the request first
    status: int = 0  # html, redirect, not_json (0: the mode's default)
    to: str = "same"  # redirect: "same" (this proxy) or "other" (the trap)
    key: str = ""  # injected values: the key of the answer's object to replace
    answer: bytes = b""  # xml: the body to answer with
    hits: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; known: {', '.join(sorted(MODES))}")
        if self.to not in ("same", "other"):
            raise ValueError(f"redirect to {self.to!r}: expected 'same' or 'other'")
        self._path = re.compile(self.path) if self.path else None

    def matches(self, method: str, target: str, body: bytes) -> bool:
        """True when the request is one this rule is for (its count and rate not applied)."""
        return (
            (not self.method or self.method.upper() == method)
            and (self._path is None or self._path.search(target) is not None)
            and (not self.body or self.body.encode() in body)
        )


@dataclass
class Seen:
    """A request the proxy (or the trap) received, and the mode it was answered with."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    mode: str = "pass"


@dataclass
class _Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str:
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return ""


@dataclass
class _Answer:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    cookies: list[str] = field(default_factory=list)


class _Gone(Exception):
    """The client left, or the proxy is stopping."""


def _read_request(rfile: BinaryIO) -> _Request | None:
    """One request off a keep-alive connection; None at its end."""
    line = rfile.readline(65537)
    if not line or not line.strip():
        return None
    parts = line.decode("iso-8859-1").split()
    if len(parts) != 3:
        return None
    headers: list[tuple[str, str]] = []
    while True:
        raw = rfile.readline(65537)
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("iso-8859-1").partition(":")
        headers.append((name.strip(), value.strip()))
    req = _Request(parts[0].upper(), parts[1], parts[2], headers, b"")
    length = int(req.header("content-length") or 0)
    req.body = rfile.read(length) if length else b""
    return req


def gzip_bomb(
    total: int = BOMB_BYTES, piece_input: int = 1 << 20, fill: bytes = b"\0"
) -> Iterator[bytes]:
    """A gzip stream of ``total`` bytes repeating ``fill`` (zeros by default), generated as it
    is consumed.

    Each 1 MiB of it is compressed from a fresh dictionary and ended with a full flush, so
    every piece is the same ~1 KB and the stream is one valid gzip member; the CRC is computed
    only if the consumer reads to the end. ``fill``'s length divides ``piece_input``.
    """
    assert piece_input % len(fill) == 0
    block = fill * (piece_input // len(fill))
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    piece = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    yield b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # gzip header: deflate, no name, Unix
    pieces, rest = divmod(total, piece_input)
    for _ in range(pieces):
        yield piece
    crc = 0
    for _ in range(pieces):
        crc = zlib.crc32(block, crc)
    if rest:
        comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        yield comp.compress(block[:rest]) + comp.flush(zlib.Z_FULL_FLUSH)
        crc = zlib.crc32(block[:rest], crc)
    yield b"\x03\x00" + struct.pack("<II", crc, total & 0xFFFFFFFF)  # final empty block


def _inject(body: bytes, key: str, token: bytes) -> bytes:
    """``body`` (JSON) with the value of ``key`` (or of its first key) replaced by ``token``
    as raw bytes; ``token`` alone when the body is not a JSON object."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not doc:
        return token
    name = key if key in doc else next(iter(doc))
    doc[name] = _MARK
    return json.dumps(doc).encode().replace(json.dumps(_MARK).encode(), token)


_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + b"".join(
        b' <!ENTITY lol%d "%s">\n' % (i, (b"&lol%s;" % (b"" if i == 1 else b"%d" % (i - 1))) * 10)
        for i in range(1, 10)
    )
    + b"]>\n<lolz>&lol9;</lolz>"
)
_SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"


def _fault(faultstring: str, detail: str = "", code: str = "soap:Server") -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?>\n<soap:Envelope xmlns:soap="{_SOAP11}">\n'
        f"<soap:Body><soap:Fault><faultcode>{code}</faultcode>\n"
        f"<faultstring>{faultstring}</faultstring>{detail}</soap:Fault></soap:Body>\n"
        "</soap:Envelope>"
    ).encode()


def _xml(mode: str, trap: str) -> bytes:
    """The body of a hostile XML mode; ``trap``: the trap's URL (what must never be fetched)."""
    if mode in ("xml_billion_laughs", "xml_gzip_laughs"):
        return _LAUGHS
    if mode == "xml_quadratic":
        big = b"x" * 100_000
        return b'<!DOCTYPE r [<!ENTITY a "%s">]><r>%s</r>' % (big, b"&a;" * 10_000)
    if mode == "xml_external_entity":
        return (
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'
        )
    if mode == "xml_external_dtd":
        return f'<?xml version="1.0"?><!DOCTYPE r SYSTEM "{trap}/evil.dtd"><r>&x;</r>'.encode()
    if mode == "xml_parameter_entity":
        return (
            f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY % p SYSTEM "{trap}/p.dtd"> %p;]><r>&x;</r>'
        ).encode()
    if mode == "xml_deep":
        return b"<a>" * DEEP + b"</a>" * DEEP
    if mode == "xml_huge_attribute":
        return b'<r><count v="%s">0</count></r>' % (b"x" * HUGE_ATTRIBUTE)
    if mode == "xml_lying_encoding":
        text = '<?xml version="1.0" encoding="UTF-8"?>\n<r>\n<name>Çağ Şeker</name>\n</r>'
        return text.encode("iso-8859-9")
    if mode == "xml_fault_html":
        page = (
            "<!DOCTYPE html><html><head><title>500</title><script>var t='x';</script></head>"
            "<body><h1>Internal Server Error</h1>"
            + "<p>The ERP failed &amp; logged it.</p>" * 50
            + "</body></html>"
        )
        escaped = page.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return _fault(escaped)
    if mode == "xml_fault_raw_html":
        return _fault("Error", "<detail><html><body><p>a<br>b</body></html></detail>")
    raise ValueError(mode)


def _injected(mode: str) -> bytes:
    if mode == "invalid_utf8":
        return b'"caf\xe9 \xff\xfe"'
    if mode == "deep_json":
        return b"[" * DEEP + b"]" * DEEP
    if mode == "nan":
        return b"NaN"
    if mode == "huge_float":
        return b"1e999999"
    return b"9" * HUGE_DIGITS  # huge_int


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    owner: _Listener

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that left mid-answer is what this proxy provokes: stay quiet."""


class _Listener:
    """A threaded TCP listener whose connections are handled by ``self.serve``."""

    def __init__(self, host: str) -> None:
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.seen: list[Seen] = []
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock: socket.socket = self.request
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with contextlib.suppress(OSError, _Gone, http.client.HTTPException):
                    owner.serve(sock)

        self.server = _Server((host, 0), Handler)
        self.server.owner = self
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), daemon=True, name=type(self).__name__
        )

    @property
    def url(self) -> str:
        """``http://host:port``."""
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def serve(self, sock: socket.socket) -> None:
        raise NotImplementedError

    def start(self) -> _Listener:
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop listening; drips and streams in progress end at their next byte."""
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def _record(self, req: _Request, mode: str) -> Seen:
        seen = Seen(req.method, req.target, dict(req.headers), req.body, mode)
        with self.lock:
            self.seen.append(seen)
        return seen


class Trap(_Listener):
    """Another host (127.0.0.2): records every request it receives, answers ``200 {}``."""

    def __init__(self, host: str = "127.0.0.2") -> None:
        super().__init__(host)

    def serve(self, sock: socket.socket) -> None:
        with sock.makefile("rb") as rfile:
            while (req := _read_request(rfile)) is not None:
                self._record(req, "trap")
                sock.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 2\r\n\r\n{}"
                )

    def leaks(self) -> list[str]:
        """What must never reach another host: bodies, credentials, cookies."""
        with self.lock:
            seen = list(self.seen)
        found = []
        for s in seen:
            names = {k.lower() for k in s.headers}
            for secret in ("authorization", "cookie", "proxy-authorization"):
                if secret in names:
                    found.append(f"{s.method} {s.target}: a {secret} header")
            for k in names:
                if k.startswith("x-") and any(w in k for w in ("token", "key", "session")):
                    found.append(f"{s.method} {s.target}: a {k} header")
            if s.body:
                found.append(f"{s.method} {s.target}: a body of {len(s.body)} bytes")
        return found


class HostileProxy(_Listener):
    """Forwards to ``upstream`` (``http://host:port``); misbehaves where a rule says."""

    def __init__(self, upstream: str, *, host: str = "127.0.0.1", seed: int = 0) -> None:
        super().__init__(host)
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.rules: list[Rule] = []
        self.random = random.Random(seed)
        self.redirects: dict[str, str] = {}  # token → the target a same-host redirect came from
        self.trap = Trap()
        self.record_all = False  # keep every request in ``seen``, not only the hostile ones

    def start(self) -> HostileProxy:
        """Serve (and the trap) in background threads."""
        self.trap.start()
        super().start()
        return self

    def stop(self) -> None:
        """Stop the proxy and its trap."""
        super().stop()
        self.trap.stop()

    # ------------------------------------------------------------------ control
    def hostile(self, mode: str, **match: Any) -> Rule:
        """Add a rule (see ``Rule``); the first rule that matches a request answers it."""
        rule = Rule(mode, **match)
        with self.lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        """Pass-through again."""
        with self.lock:
            self.rules = []

    def _pick(self, req: _Request) -> Rule | None:
        with self.lock:
            for rule in self.rules:
                if rule.count == 0 or not rule.matches(req.method, req.target, req.body):
                    continue
                if rule.rate < 1.0 and self.random.random() >= rule.rate:
                    continue
                if rule.skip > 0:
                    rule.skip -= 1
                    continue
                if rule.count > 0:
                    rule.count -= 1
                rule.hits += 1
                return rule
        return None

    # ------------------------------------------------------------------ serving
    def serve(self, sock: socket.socket) -> None:
        rfile = sock.makefile("rb")
        upstream: http.client.HTTPConnection | None = None
        try:
            while (req := _read_request(rfile)) is not None:
                rule = None
                if req.target.startswith(_REDIRECT_PREFIX):  # the end of a same-host redirect
                    with self.lock:
                        req.target = self.redirects.get(req.target, req.target)
                else:
                    rule = self._pick(req)
                mode = rule.mode if rule else "pass"
                if mode != "pass" or self.record_all:
                    self._record(req, mode)
                answer = None
                if rule is None or rule.forward:
                    upstream = upstream or http.client.HTTPConnection(*self.upstream, timeout=60)
                    try:
                        answer = self._forward(upstream, req)
                    except (OSError, http.client.HTTPException):
                        return  # the upstream dropped the call (a sandbox fault): so do we
                keep = self._answer(sock, req, rule, answer)
                if not keep or req.header("connection").lower() == "close":
                    return
        finally:
            rfile.close()
            if upstream is not None:
                upstream.close()

    def _forward(self, conn: http.client.HTTPConnection, req: _Request) -> _Answer:
        try:
            conn.putrequest(req.method, req.target, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", "{}:{}".format(*self.upstream))
            for k, v in req.headers:
                if k.lower() not in _HOP:
                    conn.putheader(k, v)
            conn.putheader("Content-Length", str(len(req.body)))
            conn.endheaders(req.body)
            resp = conn.getresponse()
            body = resp.read()
        except BaseException:
            conn.close()
            raise
        if resp.will_close:
            conn.close()
        headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP]
        return _Answer(resp.status, resp.reason, headers, body)

    def _answer(
        self, sock: socket.socket, req: _Request, rule: Rule | None, up: _Answer | None
    ) -> bool:
        """Answer ``req``; True when the connection may serve another request."""
        real = up or _Answer(200, "OK", [("Content-Type", "application/json")], b"{}")
        mode = rule.mode if rule else "pass"
        if mode not in _FRAMED:  # a drip, stall or stream ends when HOLD_SECONDS pass
            sock.settimeout(HOLD_SECONDS)
        if rule is None or mode == "pass":
            sock.sendall(_head(real.status, real.reason, real.headers, len(real.body)) + real.body)
        elif mode in ("html", "not_json"):
            status = rule.status or (502 if mode == "html" else 200)
            if mode == "html":
                body, ctype = _HTML.format(status=status).encode(), "text/html; charset=utf-8"
            else:
                body, ctype = b"OK - order received", "text/plain"
            sock.sendall(_head(status, "", [("Content-Type", ctype)], len(body)) + body)
        elif mode == "redirect":
            self._redirect(sock, req, rule)
        elif mode in ("invalid_utf8", "deep_json", "nan", "huge_float", "huge_int"):
            body = _inject(real.body, rule.key, _injected(mode))
            sock.sendall(_head(real.status, real.reason, real.headers, len(body)) + body)
        elif mode == "xml":
            xml_type = [("Content-Type", "text/xml; charset=utf-8")]
            sock.sendall(_head(rule.status or 200, "", xml_type, len(rule.answer)) + rule.answer)
        elif mode == "xml_gzip_bomb":
            head = _head(200, "OK", [("Content-Type", "application/xml"),
                                     ("Content-Encoding", "gzip"),
                                     ("Transfer-Encoding", "chunked")], None)  # fmt: skip
            sock.sendall(head)
            self._stream(sock, gzip_bomb(fill=b"<i/>"), chunked=True)
            sock.sendall(b"0\r\n\r\n")
        elif mode in XML_MODES:
            body = _xml(mode, self.trap.url)
            headers = [("Content-Type", "text/xml; charset=utf-8")]
            if mode == "xml_gzip_laughs":
                body = gzip.compress(body)
                headers.append(("Content-Encoding", "gzip"))
            status = rule.status or (500 if mode.startswith("xml_fault") else 200)
            sock.sendall(_head(status, "", headers, len(body)) + body)
        elif mode == "fake_gzip":
            headers = [*real.headers, ("Content-Encoding", "gzip")]
            sock.sendall(_head(real.status, real.reason, headers, len(real.body)) + real.body)
        elif mode == "drip_headers":  # padded: the drip outlasts HOLD_SECONDS
            headers = [*real.headers, ("X-Padding", "." * _DRIP_BYTES)]
            self._drip(sock, _head(real.status, real.reason, headers, len(real.body)))
            sock.sendall(real.body)
        elif mode == "drip_body":  # padded with JSON whitespace to outlast HOLD_SECONDS
            body = real.body + b" " * max(0, _DRIP_BYTES - len(real.body))
            sock.sendall(_head(real.status, real.reason, real.headers, len(body)))
            self._drip(sock, body)
        elif mode == "stall":
            sock.sendall(_head(real.status, real.reason, real.headers, len(real.body)))
            self._hold(sock)
        elif mode == "close_mid_body":
            sock.sendall(_head(real.status, real.reason, real.headers, len(real.body)))
            sock.sendall(real.body[: len(real.body) // 2])
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        elif mode == "huge_length":
            sock.sendall(_head(200, "OK", [("Content-Type", "application/json")], HUGE_LENGTH))
            self._stream(sock, _forever(b" " * 65536), chunked=False)
        elif mode == "endless_chunked":
            head = _head(200, "OK", [("Content-Type", "application/json"),
                                     ("Transfer-Encoding", "chunked")], None)  # fmt: skip
            sock.sendall(head)
            self._stream(sock, _endless_array(), chunked=True)
        elif mode == "gzip_bomb":
            head = _head(200, "OK", [("Content-Type", "application/json"),
                                     ("Content-Encoding", "gzip"),
                                     ("Transfer-Encoding", "chunked")], None)  # fmt: skip
            sock.sendall(head)
            self._stream(sock, gzip_bomb(), chunked=True)
            sock.sendall(b"0\r\n\r\n")
        return mode in _FRAMED

    def _redirect(self, sock: socket.socket, req: _Request, rule: Rule) -> None:
        status = rule.status or 302
        if rule.to == "other":
            location = self.trap.url + req.target
        else:
            with self.lock:
                token = f"{_REDIRECT_PREFIX}{len(self.redirects) + 1}"
                self.redirects[token] = req.target
            location = self.url + token
        body = b'{"detail": "moved"}'
        headers = [("Location", location), ("Content-Type", "application/json")]
        sock.sendall(_head(status, "", headers, len(body)) + body)

    # ------------------------------------------------------------------ pacing
    def _wait(self, seconds: float, started: float) -> None:
        if self.stopping.wait(seconds) or time.monotonic() - started > HOLD_SECONDS:
            raise _Gone

    def _drip(self, sock: socket.socket, data: bytes) -> None:
        started = time.monotonic()
        for i in range(len(data)):
            sock.sendall(data[i : i + 1])
            self._wait(DRIP_INTERVAL, started)

    def _hold(self, sock: socket.socket) -> None:
        """Send nothing until the client leaves (its EOF or reset), the proxy stops, or
        HOLD_SECONDS pass."""
        started = time.monotonic()
        sock.settimeout(0.2)
        while True:
            try:
                if not sock.recv(65536):
                    raise _Gone
            except TimeoutError:
                self._wait(0, started)

    def _stream(self, sock: socket.socket, chunks: Iterator[bytes], *, chunked: bool) -> None:
        started = time.monotonic()
        for data in chunks:
            if chunked:
                data = b"%x\r\n%s\r\n" % (len(data), data)
            sock.sendall(data)  # blocks while the client does not read: the client sets pace
            self._wait(0, started)


def _forever(data: bytes) -> Iterator[bytes]:
    while True:
        yield data


def _endless_array() -> Iterator[bytes]:
    yield b'{"results": ['
    row = b'{"pk": 1, "number": "X"},' * 2048
    while True:
        yield row


def _head(status: int, reason: str, headers: list[tuple[str, str]], length: int | None) -> bytes:
    reason = reason or http.client.responses.get(status, "")
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{k}: {v}" for k, v in headers]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("iso-8859-1")
