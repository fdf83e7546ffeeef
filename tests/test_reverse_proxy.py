"""The documented deploy of the console: the shipped deploy/nginx.conf and deploy/Caddyfile run
for real (Debian's nginx and Caddy, ``.ci/nginx.sh``) in front of
``integrator daemon --behind-proxy --public-host console.example.com`` on loopback, over TLS
with a certificate the test makes. Only the site's ports, certificate paths and upstream port
are substituted (``support.reverse_proxy``), so what users copy is what is tested.

Through https: the login page, an operator's login whose cookie is ``Secure`` (the daemon sees
TLS through X-Forwarded-Proto), an action with its CSRF token (refused without it), the login
limiter counting the real client whatever X-Forwarded-For it forges, /metrics, /healthz and
/events/ kept off the console's site, plain http redirected. A missing proxy fails the test
with how to install it: it never skips.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
import requests
from support import Project, wait_for
from support.console import PASSWORDS, with_users
from support.daemon import DaemonProcess, daemon
from support.reverse_proxy import (
    CADDYFILE,
    CONSOLE_NAME,
    NGINX_CONF,
    Proxy,
    caddy_check_whole,
    caddy_site,
    nginx_check_whole,
    nginx_servers,
    pinned_session,
    running_caddy,
    running_nginx,
    self_signed,
)

PUBLIC = ["--behind-proxy", "--public-host", CONSOLE_NAME]
Runner = Callable[[Path, int, Path, Path], AbstractContextManager[Proxy]]
PROXIES: dict[str, Runner] = {"nginx": running_nginx, "caddy": running_caddy}


@pytest.fixture(params=sorted(PROXIES))
def deployed(
    request: pytest.FixtureRequest, project: Project, tmp_path: Path
) -> Iterator[tuple[Proxy, DaemonProcess, Path]]:
    """The daemon on a free loopback port with the documented flags, and the proxy in front of
    it; the certificate the client trusts."""
    with_users(project)
    cert, key = self_signed(tmp_path, CONSOLE_NAME)
    with (
        daemon(project, args=PUBLIC) as d,
        PROXIES[request.param](tmp_path, d.port, cert, key) as proxy,
    ):
        assert not d.named("console_not_served"), d.raw
        yield proxy, d, cert


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html[:500]
    return found[1]


def _login(s: requests.Session, proxy: Proxy, name: str, password: str) -> requests.Response:
    form = s.get(proxy.https("/login"), timeout=10)
    assert form.status_code == 200, (form.status_code, form.text[:300])
    return s.post(
        proxy.https("/login"),
        data={"name": name, "password": password, "csrf_token": _token(form.text)},
        timeout=10,
        allow_redirects=False,
    )


def test_the_console_through_the_documented_proxy(
    deployed: tuple[Proxy, DaemonProcess, Path],
) -> None:
    proxy, d, cert = deployed
    s = pinned_session(CONSOLE_NAME, cert)
    # the login page over TLS, with HSTS; anonymous pages send there
    page = s.get(proxy.https("/login"), timeout=10)
    assert page.status_code == 200 and 'name="password"' in page.text, page.text[:300]
    assert page.headers["Strict-Transport-Security"].startswith("max-age="), page.headers
    assert s.get(proxy.https("/api/flows"), timeout=10).status_code == 401

    # an operator logs in: the cookie is Secure (TLS at the proxy, told by X-Forwarded-Proto),
    # even when the client claims plain http itself
    s.headers["X-Forwarded-Proto"] = "http"
    r = _login(s, proxy, "otto", PASSWORDS["otto"])
    assert r.status_code == 303, (r.status_code, r.text[:300])
    cookie = r.headers["Set-Cookie"]
    assert "; Secure" in cookie and "HttpOnly" in cookie, cookie
    me = s.get(proxy.https("/api/me"), timeout=10)
    assert me.json() == {"name": "otto", "role": "operator"}

    # an action, as the dashboard's "Run now" form sends it: refused without the CSRF
    # token, done with it, in otto's name
    page = s.get(proxy.https("/"), timeout=10)
    assert page.status_code == 200 and 'action="/actions/run"' in page.text, page.text[:500]
    form = {"flow": "order_flow"}
    refused = s.post(proxy.https("/actions/run"), data=form, timeout=10)
    assert refused.status_code == 403 and "CSRF" in refused.text, refused.text[:300]
    done = s.post(
        proxy.https("/actions/run"), data={**form, "csrf_token": _token(page.text)}, timeout=10
    )
    assert done.status_code == 200, (done.status_code, done.text[:300])
    by_otto = s.post(
        proxy.https("/api/actions/run"),
        json=form,
        headers={"X-CSRF-Token": _token(page.text), "Accept": "application/json"},
        timeout=10,
    )
    assert by_otto.status_code == 200 and by_otto.json()["by"] == "otto", by_otto.text
    runs = wait_for(
        lambda: s.get(proxy.https("/api/runs"), timeout=10).json(), 20, "the run it started"
    )
    assert runs, runs

    # the daemon's counters, health and webhooks are not on the console's site, however
    # the path is spelled
    for path in (
        "/metrics",
        "/metrics?x=1",
        "//metrics",
        "/%6Detrics",
        "/./metrics",
        "/healthz",
        "/events/order_flow",
    ):
        r = s.get(proxy.https(path), timeout=10)
        assert r.status_code == 404 and "integrator_" not in r.text, (path, r.status_code)
    assert "integrator_" in requests.get(d.url("/metrics"), timeout=10).text  # on loopback

    # a page on another name (DNS rebinding through the proxy): not the console (nginx
    # passes the name on and the daemon answers 421; Caddy has no site for it: an empty 200)
    rebound = s.get(proxy.https("/login"), headers={"Host": "evil.example"}, timeout=10)
    assert 'name="password"' not in rebound.text and "Set-Cookie" not in rebound.headers
    assert rebound.status_code == {"nginx": 421, "caddy": 200}[proxy.name], rebound.text[:200]

    # plain http to the proxy: sent to https, never proxied
    plain = requests.get(
        proxy.http("/login"), headers={"Host": CONSOLE_NAME}, timeout=10, allow_redirects=False
    )
    assert plain.status_code in (301, 308), plain.status_code
    assert plain.headers["Location"].startswith(f"https://{CONSOLE_NAME}"), plain.headers
    assert "Set-Cookie" not in plain.headers

    # the daemon itself, reached directly over plain http by another name: 421
    direct = requests.get(d.url("/login"), headers={"Host": "evil.example"}, timeout=10)
    assert direct.status_code == 421

    # 20 failed logins per client in the window: a guesser sending a new X-Forwarded-For
    # chain with each is still one client (the address the proxy saw), and its 21st try, with
    # a real user's right password, is refused
    codes = []
    for i in range(20):
        guesser = pinned_session(CONSOLE_NAME, cert)
        guesser.headers["X-Forwarded-For"] = f"203.0.113.{i}, 198.51.100.{i}"
        codes.append(_login(guesser, proxy, f"guess{i}", "not-the-password").status_code)
    assert codes == [401] * 20, codes
    guesser = pinned_session(CONSOLE_NAME, cert)
    guesser.headers["X-Forwarded-For"] = "192.0.2.77"
    r = _login(guesser, proxy, "otto", PASSWORDS["otto"])
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0, r.text[:300]


def test_the_shipped_files_whole(tmp_path: Path) -> None:
    """Both files whole (the webhooks' site too) pass nginx -t and Caddy's validation, say
    how to start the daemon behind them, and keep the webhooks' site."""
    cert, key = self_signed(tmp_path, CONSOLE_NAME)
    nginx_check_whole(tmp_path, cert, key)
    caddy_check_whole(tmp_path)
    for text in (NGINX_CONF.read_text(), CADDYFILE.read_text()):
        assert "--behind-proxy --public-host console.example.com" in text
    (events,) = nginx_servers("integrator.example.com")
    assert "location /events/" in events
    assert "@events path /events/*" in caddy_site("integrator.example.com")
