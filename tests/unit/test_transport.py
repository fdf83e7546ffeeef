"""The lean transport adapter against real sockets: keep-alive reuse, a connection the server
closed while pooled, gzip answers, refused connections, timeouts, and the urllib3 fallback."""

from __future__ import annotations

import gzip
import socket
import threading
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


def test_a_proxy_goes_through_urllib3(server: str) -> None:
    s = requests.Session()
    s.trust_env = False
    s.mount("http://", LeanAdapter())
    s.proxies = {"http": server}  # the test server answers as a (non-)proxy would
    r = s.send(prepare(s, "GET", "http://example.invalid/via-proxy"), proxies=s.proxies)
    assert r.json()["path"] == "http://example.invalid/via-proxy"  # absolute form: a proxy call
    s.close()


def test_https_checks_the_certificate_against_requests_ca_bundle(tmp_path: Path) -> None:
    """A self-signed server: the lean path refuses it (SSLError), as requests would."""
    import datetime as dt
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    srv = Server(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    s = requests.Session()
    s.trust_env = False
    s.mount("https://", LeanAdapter())
    try:
        with pytest.raises(requests.exceptions.SSLError):
            get(s, f"https://127.0.0.1:{srv.server_address[1]}/secure")
    finally:
        s.close()
        srv.shutdown()
        srv.server_close()
