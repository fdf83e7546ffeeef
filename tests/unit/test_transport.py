"""The lean transport adapter against real sockets: keep-alive reuse, a connection the server
closed while pooled, gzip answers, refused connections, timeouts, and the urllib3 fallback."""

from __future__ import annotations

import gzip
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from integrator.connectors.transport import LeanAdapter, prepare


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    connections: set[tuple[str, int]] = set()  # client (address, port): one per connection

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        Handler.connections.add(self.client_address)
        if self.path == "/slow":
            threading.Event().wait(1.0)
        body = b'{"ok": true, "path": "' + self.path.encode() + b'"}'
        headers = {"Content-Type": "application/json"}
        if self.path == "/gzip":
            body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
        if self.path == "/close":
            headers["Connection"] = "close"
            self.close_connection = True
        if self.path == "/cookie":
            headers["Set-Cookie"] = "B1SESSION=abc; path=/"
        self.send_response(200)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that gave up (the timeout test) is expected here."""


@pytest.fixture
def server() -> Iterator[str]:
    Handler.connections = set()
    srv = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    s = requests.Session()
    s.trust_env = False
    s.mount("http://", LeanAdapter(pool_maxsize=2))
    yield s
    s.close()


def get(s: requests.Session, url: str, **kw: object) -> requests.Response:
    return s.send(prepare(s, "GET", url, **kw), timeout=(2, 0.5))  # type: ignore[arg-type]


def test_keep_alive_reuses_one_connection(server: str, session: requests.Session) -> None:
    for _ in range(5):
        assert get(session, server + "/x").json()["ok"] is True
    assert len(Handler.connections) == 1


def test_params_are_appended_and_requoted(server: str, session: requests.Session) -> None:
    r = get(session, server + "/q?a=1", params={"b": "x y", "skip": None, "c": ["1", "2"]})
    assert r.json()["path"] == "/q?a=1&b=x+y&c=1&c=2"
    assert get(session, server + "/p ath").json()["path"] == "/p%20ath"


def test_a_connection_closed_by_the_server_is_not_reused(
    server: str, session: requests.Session
) -> None:
    get(session, server + "/close")  # the server closes after answering
    assert get(session, server + "/after").json()["path"] == "/after"
    assert len(Handler.connections) == 2


def test_gzip_answers_are_decoded(server: str, session: requests.Session) -> None:
    assert get(session, server + "/gzip").json()["path"] == "/gzip"
    assert get(session, server + "/gzip").json()["path"] == "/gzip"
    assert len(Handler.connections) == 1  # read to its end: the connection is kept


def test_cookies_reach_the_response(server: str, session: requests.Session) -> None:
    assert get(session, server + "/cookie").cookies["B1SESSION"] == "abc"


def test_refused_reads_as_never_sent() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nobody listens
    session = requests.Session()
    session.mount("http://", LeanAdapter())
    with pytest.raises(requests.ConnectionError, match="NewConnectionError: Connection refused"):
        get(session, f"http://127.0.0.1:{port}/")


def test_a_slow_answer_is_a_read_timeout(server: str, session: requests.Session) -> None:
    with pytest.raises(requests.ReadTimeout):
        get(session, server + "/slow")
    assert get(session, server + "/fine").ok  # the timed-out connection was not pooled


def no_fallback(adapter: LeanAdapter) -> None:
    """Make the urllib3 fallback fail the test if it is used."""

    def refuse(*args: object, **kwargs: object) -> requests.Response:
        raise AssertionError("went through urllib3, outside the lean adapter's bounds")

    adapter._fallback.send = refuse  # type: ignore[method-assign]


def test_an_http_proxy_is_spoken_by_the_lean_adapter(server: str) -> None:
    s = requests.Session()
    s.trust_env = False
    adapter = LeanAdapter()
    no_fallback(adapter)
    s.mount("http://", adapter)
    s.proxies = {"http": server}  # the test server answers as a (non-)proxy would
    r = s.send(prepare(s, "GET", "http://example.invalid/via-proxy"), proxies=s.proxies)
    assert r.json()["path"] == "http://example.invalid/via-proxy"  # absolute form: a proxy call
    s.close()


def test_a_dripping_server_cannot_stretch_a_call(server: str) -> None:
    """A byte every 0.1 s never trips a per-read timeout; the call's deadline ends it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()

    def drip() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            while not stop.wait(0.1):
                try:
                    conn.sendall(b"X")
                except OSError:
                    return

    threading.Thread(target=drip, daemon=True).start()
    s = requests.Session()
    s.mount("http://", LeanAdapter())
    started = time.monotonic()
    try:
        with pytest.raises(requests.ReadTimeout, match=r"no complete answer within 0\.5s"):
            s.send(prepare(s, "GET", f"http://127.0.0.1:{listener.getsockname()[1]}/"), timeout=0.5)
        assert time.monotonic() - started < 0.9
    finally:
        stop.set()
        listener.close()
        s.close()


def test_what_the_lean_adapter_cannot_speak_is_still_capped(server: str) -> None:
    """A streamed call goes through urllib3; its body is still read under the cap."""
    s = requests.Session()
    s.trust_env = False
    s.mount("http://", LeanAdapter(max_answer_bytes=10))
    r = s.send(prepare(s, "GET", server + "/gzip"), stream=True, timeout=2)
    assert r.status_code == 200 and r.content == b""
    assert r.unreadable == "a Content-Length of 47 bytes, more than the 10 bytes an answer may have"  # type: ignore[attr-defined]
    s.mount("http://", LeanAdapter())
    r = s.send(prepare(s, "GET", server + "/gzip"), stream=True, timeout=2)
    assert r.json()["path"] == "/gzip"
    s.close()


def make_cert(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(san, critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    c, k = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return c, k


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[tuple[str, Path, Path, Path]]:
    """An HTTPS server that asks for a client certificate: (URL, its cert, client cert, key)."""
    cert, key = make_cert(tmp_path, "server")
    client_cert, client_key = make_cert(tmp_path, "client")
    srv = Server(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.load_verify_locations(client_cert)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{srv.server_address[1]}", cert, client_cert, client_key
    srv.shutdown()
    srv.server_close()


def tls_session() -> tuple[requests.Session, LeanAdapter]:
    s = requests.Session()
    s.trust_env = False
    adapter = LeanAdapter()
    no_fallback(adapter)
    s.mount("https://", adapter)
    return s, adapter


def test_https_checks_the_certificate_against_requests_ca_bundle(
    tls: tuple[str, Path, Path, Path],
) -> None:
    """A self-signed server: the lean path refuses it (SSLError), as requests would."""
    s, _ = tls_session()
    try:
        with pytest.raises(requests.exceptions.SSLError):
            get(s, tls[0] + "/secure")
    finally:
        s.close()


def test_a_ca_bundle_verify_false_and_a_client_certificate_stay_in_the_lean_adapter(
    tls: tuple[str, Path, Path, Path],
) -> None:
    url, cert, client_cert, client_key = tls
    s, _ = tls_session()
    try:
        ok = s.send(prepare(s, "GET", url + "/ca"), timeout=2, verify=str(cert))
        assert ok.json()["path"] == "/ca"
        assert s.send(prepare(s, "GET", url + "/any"), timeout=2, verify=False).ok
        r = s.send(
            prepare(s, "GET", url + "/mtls"), timeout=2, verify=str(cert),
            cert=(str(client_cert), str(client_key)),
        )  # fmt: skip
        assert r.json()["path"] == "/mtls"
    finally:
        s.close()


def test_https_through_a_connect_proxy(tls: tuple[str, Path, Path, Path]) -> None:
    """HTTPS to the server through an HTTP proxy's CONNECT tunnel, its credentials sent to the
    proxy only."""
    url, cert, _, _ = tls
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    asked: list[bytes] = []

    def proxy() -> None:
        client, _ = listener.accept()
        head = b""
        while b"\r\n\r\n" not in head:
            head += client.recv(4096)
        asked.append(head)
        host, port = head.split(b" ")[1].decode().rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        with client, upstream:
            while True:
                ready, _, _ = select.select([client, upstream], [], [], 5)
                if not ready:
                    return
                for r in ready:
                    data = r.recv(65536)
                    if not data:
                        return
                    (upstream if r is client else client).sendall(data)

    threading.Thread(target=proxy, daemon=True).start()
    s, _ = tls_session()
    proxies = {"https": f"http://user:pw@127.0.0.1:{listener.getsockname()[1]}"}
    try:
        r = s.send(prepare(s, "GET", url + "/tunnel"), timeout=2, verify=str(cert), proxies=proxies)
        assert r.json()["path"] == "/tunnel"
        assert asked[0].startswith(b"CONNECT 127.0.0.1:")
        assert b"Proxy-Authorization: Basic dXNlcjpwdw==" in asked[0]
    finally:
        s.close()
        listener.close()
