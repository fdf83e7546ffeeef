"""The lean transport adapter against real sockets: keep-alive reuse, a connection the server
closed while pooled, gzip answers, refused connections, timeouts, and the urllib3 fallback."""

from __future__ import annotations

import gzip
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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
