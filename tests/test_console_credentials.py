"""Three findings of the console's security review, each through the CLI over real HTTP:

- sessions follow the current configuration: a password change (a reload of the daemon) ends
  that user's sessions, a new ``session_secret`` ends every session, and a daemon given users
  by a reload signs sessions with the secret it was given;
- behind a proxy, the login limiter's per-client key is the one address the proxy appended to
  ``X-Forwarded-For`` (its last entry), and an IPv6 client counts by its /64;
- ``/metrics`` and ``/healthz`` answer only to a loopback Host header, an address, or
  ``--public-host`` (DNS rebinding), as the console does.
"""

from __future__ import annotations

import http.client
import re
import signal
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import requests
from support import Project, wait_for
from support.console import PASSWORDS, TOKENS, console, with_users
from support.daemon import DaemonProcess, daemon

from integrator.console.users import hash_password


class Browser:
    """A cookie session against a console, as a browser keeps one."""

    def __init__(self, base: str, headers: dict[str, str] | None = None) -> None:
        self.base = base.rstrip("/")
        self.s = requests.Session()
        self.s.headers.update(headers or {})

    def get(self, path: str) -> requests.Response:
        return self.s.get(self.base + path, timeout=30, allow_redirects=False)

    def login(self, name: str, password: str | None = None) -> requests.Response:
        form = self.get("/login")
        assert form.status_code == 200, form.text
        found = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert found, form.text
        return self.s.post(
            self.base + "/login",
            data={
                "name": name,
                "password": PASSWORDS.get(name, "") if password is None else password,
                "csrf_token": found[1],
            },
            timeout=30,
            allow_redirects=False,
        )


def _secret_from_file(project: Project, secret: str) -> None:
    """The session secret read from secrets/session.secret, so that a reload can change it."""
    (project.root / "secrets" / "session.secret").write_text(secret + "\n")
    cfg = project.root / "config.yaml"
    text = cfg.read_text()
    assert "${CONSOLE_SESSION_SECRET}" in text
    cfg.write_text(text.replace("${CONSOLE_SESSION_SECRET}", '"${file:secrets/session.secret}"'))


def _reload(d: DaemonProcess) -> None:
    """SIGHUP, and wait for the daemon to say it reloaded (with no config issue)."""
    before = len(d.named("reloaded"))
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: len(d.named("reloaded")) > before, 30, "the reload")
    assert not d.named("config_issue"), d.named("config_issue")


# -------------------------------------------------------- sessions and reloads
def test_a_password_change_ends_that_users_sessions_only(project: Project) -> None:
    with_users(project)
    _secret_from_file(project, "a" * 40)
    with daemon(project) as d:
        vera, otto = Browser(d.url("")), Browser(d.url(""))
        assert vera.login("vera").status_code == 303
        assert otto.login("otto").status_code == 303
        stolen = dict(vera.s.cookies)
        assert vera.get("/api/me").json()["name"] == "vera"
        # vera's password changes (a new hash in her file), and the daemon reloads
        (project.root / "secrets" / "vera.hash").write_text(hash_password("a-new-password-1"))
        _reload(d)
        assert vera.get("/api/me").status_code == 401  # her session ended
        thief = requests.get(d.url("/api/me"), cookies=stolen, timeout=10)
        assert thief.status_code == 401  # and every copy of its cookie
        assert otto.get("/api/me").json() == {"name": "otto", "role": "operator"}  # kept
        # the old password no longer logs in; the new one does, and its session lives
        assert Browser(d.url("")).login("vera").status_code == 401
        again = Browser(d.url(""))
        assert again.login("vera", "a-new-password-1").status_code == 303
        assert again.get("/api/me").json()["name"] == "vera"
        # the cookie carries no hash, nor anything of the password
        for value in again.s.cookies.values():
            assert "scrypt" not in value


def test_a_new_session_secret_ends_every_session(project: Project) -> None:
    with_users(project)
    _secret_from_file(project, "a" * 40)
    with daemon(project) as d:
        vera, otto = Browser(d.url("")), Browser(d.url(""))
        assert vera.login("vera").status_code == 303
        assert otto.login("otto").status_code == 303
        (project.root / "secrets" / "session.secret").write_text("b" * 40 + "\n")
        _reload(d)
        assert vera.get("/api/me").status_code == 401
        assert otto.get("/api/me").status_code == 401
        # tokens do not depend on it; a new login is signed with the new secret
        bearer = {"Authorization": f"Bearer {TOKENS['otto']}"}
        assert requests.get(d.url("/api/me"), headers=bearer, timeout=10).status_code == 200
        fresh = Browser(d.url(""))
        assert fresh.login("otto").status_code == 303
        assert fresh.get("/api/me").json()["name"] == "otto"


def test_users_given_by_a_reload_can_log_in(project: Project) -> None:
    cfg = project.root / "config.yaml"
    plain = cfg.read_text()
    with_users(project)  # the environment the users' tokens need, and their files
    _secret_from_file(project, "c" * 40)
    with_users_text = cfg.read_text()
    cfg.write_text(plain)  # the daemon starts without users
    with daemon(project) as d:
        assert (
            requests.get(d.url("/login"), timeout=10, allow_redirects=False).status_code == 303
        )  # no login
        cfg.write_text(with_users_text)
        _reload(d)
        assert requests.get(d.url("/api/flows"), timeout=10).status_code == 401  # login is on
        vera = Browser(d.url(""))
        r = vera.login("vera")
        assert r.status_code == 303, (r.status_code, r.text[:300])
        assert vera.get("/api/me").json() == {"name": "vera", "role": "viewer"}


# ------------------------------------------------------- the login limiter's key
class _AppendingProxy:
    """A reverse proxy as nginx's ``$proxy_add_x_forwarded_for`` makes one: every request
    passed on to ``upstream`` with the peer's address appended to ``X-Forwarded-For``."""

    def __init__(self, upstream_port: int) -> None:
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                proxy.relay(self)

        self.upstream_port = upstream_port
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def relay(self, h: socketserver.StreamRequestHandler) -> None:
        line = h.rfile.readline(65536).decode("latin-1").rstrip("\r\n")
        if not line:
            return
        method, target, _version = line.split(" ", 2)
        headers: list[tuple[str, str]] = []
        forwarded: list[str] = []
        length = 0
        while True:
            raw = h.rfile.readline(65536).decode("latin-1").rstrip("\r\n")
            if not raw:
                break
            name, _, value = raw.partition(":")
            value = value.strip()
            if name.lower() == "x-forwarded-for":
                forwarded.append(value)  # a client's own: kept, the peer appended after it
            elif name.lower() == "content-length":
                length = int(value)
            elif name.lower() not in ("connection", "keep-alive"):
                headers.append((name, value))
        body = h.rfile.read(length) if length else b""
        forwarded.append(h.client_address[0])
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=30)
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        conn.putheader("X-Forwarded-For", ", ".join(forwarded))
        conn.putheader("Content-Length", str(len(body)))
        conn.putheader("Connection", "close")
        conn.endheaders(body)
        answer = conn.getresponse()
        data = answer.read()
        h.wfile.write(f"HTTP/1.1 {answer.status} {answer.reason}\r\n".encode("latin-1"))
        for name, value in answer.getheaders():
            if name.lower() not in ("connection", "transfer-encoding", "content-length"):
                h.wfile.write(f"{name}: {value}\r\n".encode("latin-1"))
        h.wfile.write(f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode())
        h.wfile.write(data)
        conn.close()


@contextmanager
def _appending_proxy(upstream: str) -> Iterator[_AppendingProxy]:
    proxy = _AppendingProxy(int(upstream.rsplit(":", 1)[1].rstrip("/")))
    proxy.thread.start()
    try:
        yield proxy
    finally:
        proxy.server.shutdown()
        proxy.server.server_close()
        proxy.thread.join(10)


def _failed_login(base: str, headers: dict[str, str], name: str) -> int:
    b = Browser(base, headers)
    return b.login(name, "not-the-password").status_code


PUBLIC = ["--behind-proxy", "--public-host", "console.example.com"]


def test_a_client_forging_x_forwarded_for_stays_within_its_limit(project: Project) -> None:
    """20 failed logins per client in the window: a client that sends its own, changing,
    X-Forwarded-For values through the proxy is still one client (the proxy's last entry)."""
    with_users(project)
    host = {"Host": "console.example.com"}
    with console(project, PUBLIC) as c, _appending_proxy(c.url) as proxy:
        codes = []
        for i in range(20):
            forged = {**host, "X-Forwarded-For": f"203.0.113.{i}, 198.51.100.{i}"}
            codes.append(_failed_login(proxy.url, forged, f"guess{i}"))  # a name each
        assert codes == [401] * 20, codes
        # the 21st, with yet another forged chain and a real user's right password: 429
        b = Browser(proxy.url, {**host, "X-Forwarded-For": "192.0.2.77"})
        r = b.login("otto")
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0, r.text[:200]


def test_an_ipv6_client_counts_by_its_64(project: Project) -> None:
    """A proxy reports an IPv6 client; one with a /64 of its own changes its address for each
    guess, and is still one client."""
    with_users(project)
    with console(project, PUBLIC) as c:
        codes = []
        for i in range(20):
            headers = {
                "Host": "console.example.com",
                "X-Forwarded-For": f"2001:db8:1:2:{i:x}::{i + 1:x}",
            }
            codes.append(_failed_login(c.url, headers, f"guess{i}"))
        assert codes == [401] * 20, codes
        same64 = {"Host": "console.example.com", "X-Forwarded-For": "2001:db8:1:2:ffff::1"}
        assert Browser(c.url, same64).login("otto").status_code == 429
        # another /64 is another client
        other = {"Host": "console.example.com", "X-Forwarded-For": "2001:db8:1:3::1"}
        assert Browser(c.url, other).login("otto").status_code == 303


# ---------------------------------------------------- /metrics and /healthz Host
def _get(port: int, path: str, host: str) -> requests.Response:
    return requests.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host}, timeout=10)


def test_metrics_and_healthz_refuse_a_foreign_host(project: Project) -> None:
    with daemon(project) as d:
        for path in ("/metrics", "/healthz"):
            for host in ("evil.example", f"evil.example:{d.port}", "localhost.evil.example"):
                r = _get(d.port, path, host)
                assert r.status_code == 421, (path, host, r.status_code)
                assert "Host" in r.json()["detail"] and "--public-host" in r.json()["detail"]
                assert "integrator_" not in r.text
            # scraping by address or by loopback name, any port
            for host in (f"127.0.0.1:{d.port}", f"[::1]:{d.port}", "localhost", "10.1.2.3:9108"):
                r = _get(d.port, path, host)
                assert r.status_code == 200, (path, host, r.status_code, r.text[:200])
        assert "integrator_" in _get(d.port, "/metrics", f"127.0.0.1:{d.port}").text
        # the events webhook keeps its own check (its secret), whatever the Host
        r = requests.post(
            d.url("/events/order_flow"), headers={"Host": "hooks.example"}, json={}, timeout=10
        )
        assert r.status_code != 421


def test_metrics_answer_the_public_host(project: Project) -> None:
    args = ["--http", "0.0.0.0:0", *PUBLIC]
    with daemon(project, args=args) as d:
        port = int(d.named("daemon_started")[0]["http"].rsplit(":", 1)[1])
        assert _get(port, "/metrics", "console.example.com").status_code == 200
        assert _get(port, "/healthz", "console.example.com:443").status_code == 200
        assert _get(port, "/metrics", "evil.example").status_code == 421


def test_client_key_units() -> None:
    from integrator.console.users import client_key

    assert client_key("192.0.2.1") == "192.0.2.1"
    assert client_key("[2001:db8:1:2:3::1]") == client_key("2001:db8:1:2:ffff::9")
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"  # one IPv4 client, either way
    assert client_key("fe80::1%eth0") == "fe80::/64"
    assert client_key("?") == "?"
