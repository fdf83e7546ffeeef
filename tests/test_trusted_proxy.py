"""``--trusted-proxy``: behind a reverse proxy (``--behind-proxy``), X-Forwarded-For and
X-Forwarded-Proto count only on connections from the proxy's own addresses (loopback by
default: the documented proxy on the same host). A client that reaches the port directly is
seen as itself: its own address (the login limiter's key) and plain http (no Secure cookie).

On Linux the whole 127.0.0.0/8 is loopback, so a test client connects from 127.0.0.2 (its
socket bound there) to stand for a client that is not the proxy, against real processes.
"""

from __future__ import annotations

import re
import socket
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter
from support import Project, free_port, wait_for
from support.console import PASSWORDS, console, with_users
from support.daemon import daemon

from integrator.scheduler.web import peer_address, proxy_address

FORGED = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "1.2.3.4"}


class _From(HTTPAdapter):
    """Connections from ``source`` (the client socket bound to that address)."""

    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


class Client:
    """A cookie session whose connections come from ``source``."""

    def __init__(self, base: str, source: str, headers: dict[str, str] | None = None) -> None:
        self.base = base.rstrip("/")
        self.s = requests.Session()
        self.s.mount("http://", _From(source))
        self.s.headers.update(headers or {})

    def get(self, path: str) -> requests.Response:
        return self.s.get(self.base + path, timeout=30, allow_redirects=False)

    def login(self, name: str, password: str | None = None) -> requests.Response:
        form = self.get("/login")
        assert form.status_code == 200, form.text[:300]
        found = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert found, form.text[:300]
        # by hand: a Secure cookie (HTTPS at the proxy) is not sent back over plain http
        cookie = form.headers["Set-Cookie"].split(";", 1)[0]
        return self.s.post(
            self.base + "/login",
            data={
                "name": name,
                "password": PASSWORDS.get(name, "") if password is None else password,
                "csrf_token": found[1],
            },
            headers={"Cookie": cookie},
            timeout=30,
            allow_redirects=False,
        )


def _secure(base: str, source: str, headers: dict[str, str] = FORGED) -> bool:
    """Whether the login page's session cookie, asked from ``source``, is Secure."""
    r = Client(base, source, headers).get("/login")
    assert r.status_code == 200, r.text[:300]
    return "Secure" in r.headers["Set-Cookie"]


def test_an_untrusted_peer_is_seen_as_itself(project: Project) -> None:
    """With --trusted-proxy 127.0.0.1, a client from 127.0.0.2 claiming HTTPS and another
    address gets plain http (no Secure cookie) and its failed logins count against 127.0.0.2;
    the same headers from 127.0.0.1 (the proxy) are believed."""
    with_users(project)
    with console(project, ["--behind-proxy", "--trusted-proxy", "127.0.0.1"]) as c:
        assert not _secure(c.url, "127.0.0.2")
        assert _secure(c.url, "127.0.0.1")
        # 20 failed logins from 127.0.0.2, each claiming another client address
        codes = []
        for i in range(20):
            forged = {**FORGED, "X-Forwarded-For": f"1.2.3.{i}"}
            codes.append(Client(c.url, "127.0.0.2", forged).login(f"guess{i}", "nope").status_code)
        assert codes == [401] * 20, codes
        # the 21st, with yet another claim and a real user's right password: refused
        r = Client(c.url, "127.0.0.2", {"X-Forwarded-For": "5.6.7.8"}).login("otto")
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0, r.text[:300]
        # the claimed addresses got nothing counted: the proxy's client 1.2.3.4 logs in ...
        assert Client(c.url, "127.0.0.1", FORGED).login("otto").status_code == 303
        # ... and the proxy's word that the client is 127.0.0.2 meets its count
        as_guesser = {"X-Forwarded-For": "127.0.0.2"}
        assert Client(c.url, "127.0.0.1", as_guesser).login("ada").status_code == 429


def test_the_default_is_a_proxy_on_the_same_host(project: Project) -> None:
    """The daemon with --behind-proxy and no --trusted-proxy believes 127.0.0.1 and ::1 (the
    documented deploy keeps working), not 127.0.0.2; a peer whose headers are dropped is
    reported once (the hint for a proxy elsewhere), not once per request."""
    with_users(project)
    with daemon(project, args=["--behind-proxy"]) as d:
        base = d.url("").rstrip("/")
        assert _secure(base, "127.0.0.1")
        for _ in range(3):
            assert not _secure(base, "127.0.0.2")
        # other spellings from a client: dropped too (from the proxy, only X-Forwarded-*)
        for other in ({"Forwarded": "for=1.2.3.4;proto=https"}, {"X_Forwarded_Proto": "https"}):
            assert not _secure(base, "127.0.0.2", other), other
            assert not _secure(base, "127.0.0.1", other), other
        assert not _secure(base, "127.0.0.2", {"x-forwarded-proto": "https, https"})
        wait_for(lambda: d.named("http_proxy_headers_ignored"), timeout=10)
        (note,) = d.named("http_proxy_headers_ignored")
        assert note["peer"] == "127.0.0.2" and "--trusted-proxy" in note["hint"], note
        assert note["trusted_proxies"] == ["127.0.0.1", "::1"], note
        assert d.named("daemon_started")[0]["trusted_proxies"] == ["127.0.0.1", "::1"]
        # the proxy's own requests are never reported
        assert all(n["peer"] != "127.0.0.1" for n in d.named("http_proxy_headers_ignored"))


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="this host has no IPv6 loopback (::1)")
def test_ipv6_loopback_is_a_trusted_proxy_by_default_only(project: Project) -> None:
    """A same-host proxy connecting over ::1 is believed by default; once the proxies are
    named, ::1 is just another client."""
    with_users(project)
    for named, believed in (([], True), (["--trusted-proxy", "127.0.0.1"], False)):
        port = free_port()
        with daemon(project, args=["--behind-proxy", "--http", f"[::1]:{port}", *named]):
            assert _secure(f"http://[::1]:{port}", "::1") is believed, named


def test_trusted_proxies_named_repeated_or_comma_separated(project: Project) -> None:
    """Named proxies replace the default: 127.0.0.2 and 127.0.0.3 are believed, 127.0.0.1
    (not named) is seen as itself."""
    with_users(project)
    args = ["--behind-proxy", "--trusted-proxy", "127.0.0.2, 127.0.0.3", "--trusted-proxy", "::1"]
    with console(project, args) as c:
        assert _secure(c.url, "127.0.0.2")
        assert _secure(c.url, "127.0.0.3")
        assert not _secure(c.url, "127.0.0.1")


BAD = {
    "1.2.3": "expected the proxy's IP address",
    "proxy.example.com": "not a host name",
    "*": "trusting every peer is not offered",
    "10.0.0.0/8": "is a network",
    "127.0.0.1,": "empty address",
    "0.0.0.0": "no peer's address",
}


@pytest.mark.parametrize("command", ["console", "daemon"])
def test_a_bad_trusted_proxy_is_refused(project: Project, command: str) -> None:
    with_users(project)
    for value, words in BAD.items():
        r = project.run(command, "--behind-proxy", "--trusted-proxy", value, timeout=30)
        assert r.code == 2 and "'--trusted-proxy'" in r.err and words in r.err, (value, r.err)
        assert "Traceback" not in r.err + r.out
    # without --behind-proxy no X-Forwarded-* header counts: the option is refused
    r = project.run(command, "--trusted-proxy", "127.0.0.1", timeout=30)
    assert r.code == 2 and "--trusted-proxy" in r.err and "--behind-proxy" in r.err, r.err
    assert "Traceback" not in r.err + r.out
    helped = project.run(command, "--help", timeout=30)
    assert helped.code == 0 and "--trusted-proxy ADDR" in helped.out
    assert "127.0.0.1 and ::1" in " ".join(helped.out.split())


def test_address_units() -> None:
    assert proxy_address(" [::1] ") == "::1"
    assert proxy_address("::ffff:10.0.0.5") == "10.0.0.5"  # an IPv4-mapped peer is its IPv4
    assert proxy_address("2001:DB8::1") == "2001:db8::1"
    assert peer_address("::ffff:127.0.0.1") == peer_address("127.0.0.1")
    assert peer_address("unix:/run/x.sock") is None
    for bad in ("1.2.3", "proxy.example.com", "*", "10.0.0.0/8", "", " ", "0.0.0.0", "ff02::1"):
        with pytest.raises(ValueError):
            proxy_address(bad)
