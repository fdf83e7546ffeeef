"""The console with users: login and logout, roles, CSRF, API tokens, the login limit, binding,
and the actions (release, replay, resolve, run now), through real HTTP against ``integrator
console`` and the daemon, over a store filled by sandbox runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import requests
from support import Project, fault_rule, faults, stats, unsent, wait_for
from support.console import PASSWORDS, TOKENS, console, with_users
from support.daemon import daemon

from integrator.sandbox import Sandbox


class Browser:
    """A cookie session against a console, as a browser keeps one."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.s = requests.Session()
        self.csrf = ""

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.s.get(self.base + path, timeout=30, allow_redirects=False, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.s.post(self.base + path, timeout=60, allow_redirects=False, **kw)

    def token_of(self, html: str) -> str:
        found = re.search(r'name="csrf_token" value="([^"]+)"', html)
        assert found, html
        return found[1]

    def login(self, name: str, password: str | None = None) -> requests.Response:
        form = self.get("/login")
        assert form.status_code == 200, form.text
        r = self.post(
            "/login",
            data={
                "name": name,
                "password": PASSWORDS[name] if password is None else password,
                "csrf_token": self.token_of(form.text),
                "next": "/failures",
            },
        )
        if r.status_code == 303:
            self.csrf = self.token_of(self.get("/").text)
        return r


def _run(project: Project, *args: str) -> None:
    r = project.run("run-flow", "order_flow", "--no-progress", *args)
    assert r.code in (0, 1), r.err


def _quarantine(project: Project, sandbox: Sandbox) -> tuple[list[str], str]:
    """A run where the ERP refuses one order until it is quarantined; the fault then cleared."""
    numbers = unsent(sandbox)
    bad = numbers[1]
    project.edit_flow("max_attempts: 5", "max_attempts: 2\nbackoff_seconds: 0")
    fault_rule(sandbox.erp.url, action="status", route="create", status=400, numbers=[bad])
    _run(project)
    _run(project)
    assert project.state(bad) == "quarantined"
    faults(sandbox.erp.url, {})
    return numbers, bad


def _events(project: Project, number: str) -> list[str]:
    return [m for (m,) in project.sql(f"SELECT message FROM events WHERE order_number='{number}'")]


# ------------------------------------------------------------------ login, roles
def test_login_logout_and_the_three_refusals(project: Project, sandbox: Sandbox) -> None:
    _numbers, bad = _quarantine(project, sandbox)
    with_users(project)
    with console(project) as c:
        anon = Browser(c.url)
        # no session: a page sends to the login, the API says 401, an action 401
        r = anon.get("/failures")
        assert r.status_code == 303 and r.headers["Location"] == "/login?next=/failures"
        assert anon.get("/api/flows").status_code == 401
        r = anon.post("/api/actions/release", json={"flow": "order_flow"})
        assert r.status_code == 401 and "log in" in r.json()["detail"]
        assert anon.post("/actions/release", data={"flow": "order_flow"}).status_code == 401
        # a wrong password, an unknown user: the same answer
        assert anon.login("vera", "nope").status_code == 401
        assert anon.login("nobody", "viewer-pass-123").status_code == 401
        # a viewer reads, and is refused the operator's action (403), buttons or not
        vera = Browser(c.url)
        r = vera.login("vera")
        assert r.status_code == 303 and r.headers["Location"] == "/failures"
        cookie = r.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
        page = vera.get("/failures").text
        assert "vera (viewer)" in page and "Release</button>" not in page
        assert vera.get("/api/me").json() == {"name": "vera", "role": "viewer"}
        r = vera.post(
            "/api/actions/release",
            json={"flow": "order_flow"},
            headers={"X-CSRF-Token": vera.csrf},
        )
        assert r.status_code == 403 and "operator" in r.json()["detail"]
        assert vera.get("/api/users").status_code == 403  # admin only
        assert project.state(bad) == "quarantined"
        # an operator sees the button; an action without its CSRF token is refused (403)
        otto = Browser(c.url)
        assert otto.login("otto").status_code == 303
        assert "Release</button>" in otto.get("/failures").text
        r = otto.post("/actions/release", data={"flow": "order_flow"})
        assert r.status_code == 403 and "CSRF" in r.json()["detail"]
        assert project.state(bad) == "quarantined"
        # the admin lists users, never their secrets
        ada = Browser(c.url)
        assert ada.login("ada").status_code == 303
        users = ada.get("/api/users")
        assert users.status_code == 200
        assert {u["name"]: u["role"] for u in users.json()["users"]} == {
            "vera": "viewer",
            "otto": "operator",
            "ada": "admin",
        }
        assert "scrypt$" not in users.text and TOKENS["otto"] not in users.text
        # logout: the session is gone, and a copy of its cookie is dead too
        stolen = dict(vera.s.cookies)
        r = vera.post("/logout", data={"csrf_token": vera.csrf})
        assert r.status_code == 303 and r.headers["Location"] == "/login"
        assert vera.get("/api/flows").status_code == 401
        thief = requests.get(c.url + "/api/flows", cookies=stolen, timeout=10)
        assert thief.status_code == 401


def test_csrf_for_forms_htmx_and_api_and_tokens_without(project: Project, sandbox: Sandbox) -> None:
    _run(project, "--limit", "2")
    with_users(project)
    with console(project) as c:
        otto = Browser(c.url)
        assert otto.login("otto").status_code == 303
        run = {"flow": "order_flow"}  # run now: refused by the standalone console (409)
        # a form: without the hidden token 403, with another session's token 403, with it 409
        assert otto.post("/actions/run", data=run).status_code == 403
        other = Browser(c.url)
        assert other.login("ada").status_code == 303
        r = otto.post("/actions/run", data={**run, "csrf_token": other.csrf})
        assert r.status_code == 403
        r = otto.post("/actions/run", data={**run, "csrf_token": otto.csrf})
        assert r.status_code == 409 and "needs the daemon" in r.text
        # htmx: the header htmx sends (hx-headers on <body>)
        assert f"X-CSRF-Token&#34;: &#34;{otto.csrf}" in otto.get("/").text or (
            f'"X-CSRF-Token": "{otto.csrf}"' in otto.get("/").text
        )
        hx = {"HX-Request": "true"}
        assert otto.post("/actions/run", data=run, headers=hx).status_code == 403
        r = otto.post("/actions/run", data=run, headers={**hx, "X-CSRF-Token": otto.csrf})
        assert r.status_code == 409
        # the API with the cookie: the header too
        assert otto.post("/api/actions/run", json=run).status_code == 403
        r = otto.post("/api/actions/run", json=run, headers={"X-CSRF-Token": otto.csrf})
        assert r.status_code == 409 and "needs the daemon" in r.json()["detail"]
        # an API token: no cookie, no CSRF
        bearer = {"Authorization": f"Bearer {TOKENS['otto']}"}
        r = requests.post(c.url + "/api/actions/run", json=run, headers=bearer, timeout=10)
        assert r.status_code == 409
        r = requests.get(c.url + "/api/me", headers=bearer, timeout=10)
        assert r.json() == {"name": "otto", "role": "operator"}
        wrong = {"Authorization": "Bearer " + "z" * 40}
        r = requests.get(c.url + "/api/flows", headers=wrong, timeout=10)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
        # a viewer's token is a viewer
        vera = {"Authorization": f"Bearer {TOKENS['vera']}"}
        r = requests.post(c.url + "/api/actions/run", json=run, headers=vera, timeout=10)
        assert r.status_code == 403
        # a login without the form's token (a cross-site login form) is refused
        r = requests.post(
            c.url + "/login", data={"name": "otto", "password": PASSWORDS["otto"]}, timeout=10
        )
        assert r.status_code == 403
        # a next= elsewhere is not followed
        b = Browser(c.url)
        form = b.get("/login?next=//evil.example/x")
        assert 'value="/"' in form.text
        r = b.post(
            "/login",
            data={
                "name": "otto",
                "password": PASSWORDS["otto"],
                "csrf_token": b.token_of(form.text),
                "next": "https://evil.example/",
            },
        )
        assert r.status_code == 303 and r.headers["Location"] == "/"


def test_login_is_rate_limited_per_user(project: Project, sandbox: Sandbox) -> None:
    with_users(project)
    with console(project) as c:
        guesser = Browser(c.url)
        for _ in range(5):
            assert guesser.login("otto", "guess-guess").status_code == 401
        # the sixth, even with the right password, waits: 429 with Retry-After
        r = guesser.login("otto")
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
        assert "too many failed logins" in r.text
        # another user is not locked out by otto's guesser
        assert Browser(c.url).login("vera").status_code == 303


# ------------------------------------------------------------------- actions
def test_replay_a_quarantined_order_from_the_console(project: Project, sandbox: Sandbox) -> None:
    _numbers, bad = _quarantine(project, sandbox)
    assert bad not in sandbox.erp.received
    with_users(project)
    with console(project) as c:
        otto = Browser(c.url)
        assert otto.login("otto").status_code == 303
        page = otto.get(f"/orders/{bad}").text
        assert "Replay now</button>" in page
        r = otto.post(
            "/api/actions/replay", json={"number": bad}, headers={"X-CSRF-Token": otto.csrf}
        )
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["by"] == "otto" and answer["ok"] == 1 and answer["status"] == "ok"
    assert sandbox.erp.received[bad] == 1  # delivered, once
    assert stats(sandbox.erp.url)["duplicates"] == 0
    assert project.state(bad) == "done"
    assert any("otto" in m for m in _events(project, bad)), _events(project, bad)


def test_release_with_a_note_names_the_user(project: Project, sandbox: Sandbox) -> None:
    _numbers, bad = _quarantine(project, sandbox)
    with_users(project)
    with console(project) as c:
        otto = Browser(c.url)
        assert otto.login("otto").status_code == 303
        # a reason that matches nothing releases nothing
        r = otto.post(
            "/actions/release",
            data={"flow": "order_flow", "reason": "no such error", "csrf_token": otto.csrf},
        )
        assert r.status_code == 200 and "0 order(s)" in r.text
        assert project.state(bad) == "quarantined"
        r = otto.post(
            "/actions/release",
            data={
                "flow": "order_flow",
                "reason": "400",
                "note": "ERP fixed the VAT table",
                "csrf_token": otto.csrf,
            },
        )
        assert r.status_code == 200 and "1 order(s) of order_flow released" in r.text, r.text
    assert project.state(bad) == "failed"  # back where it was held: the next run takes it
    assert any("released by otto: ERP fixed the VAT table" in m for m in _events(project, bad))
    _run(project)
    assert sandbox.erp.received[bad] == 1 and project.state(bad) == "done"


def test_resolve_refusals_and_as_sent(project: Project, sandbox: Sandbox) -> None:
    _numbers, bad = _quarantine(project, sandbox)
    with_users(project)
    bearer = {"Authorization": f"Bearer {TOKENS['otto']}"}
    with console(project) as c:

        def post(body: dict[str, Any]) -> requests.Response:
            return requests.post(
                c.url + "/api/actions/resolve", json=body, headers=bearer, timeout=30
            )

        r = post({"number": bad, "as": "sent"})
        assert r.status_code == 400 and "erp_ref" in r.json()["detail"]
        r = post({"number": bad, "as": "maybe"})
        assert r.status_code == 400
        r = post({"number": "no-such-order", "as": "resend"})
        assert r.status_code == 409 and "not in the journal" in r.json()["detail"]
        r = post({"number": bad, "as": "sent", "erp_ref": "ERP-77"})
        assert r.status_code == 200 and r.json()["by"] == "otto", r.text
    assert project.state(bad) == "sent"
    assert any("resolved by otto" in m for m in _events(project, bad))


def test_run_now_in_the_daemon(project: Project, sandbox: Sandbox) -> None:
    numbers = unsent(sandbox)
    with_users(project)
    with daemon(project) as d:
        otto = Browser(d.url(""))
        assert otto.login("otto").status_code == 303
        assert "Run now</button>" in otto.get("/").text
        r = otto.post(
            "/api/actions/run", json={"flow": "order_flow"}, headers={"X-CSRF-Token": otto.csrf}
        )
        assert r.status_code == 200 and "queued" in r.json()["message"], r.text
        ended = wait_for(lambda: d.named("run_ended"), 60, "the queued run")
        assert ended[0]["flow"] == "order_flow" and ended[0]["status"] == "ok"
        r = otto.post(
            "/api/actions/run", json={"flow": "nope"}, headers={"X-CSRF-Token": otto.csrf}
        )
        assert r.status_code == 409
        # the daemon's own routes are untouched by login
        assert requests.get(d.url("/healthz"), timeout=5).status_code == 200
    assert all(sandbox.erp.received.get(n) == 1 for n in numbers)


# ---------------------------------------------------------- config and binding
def test_validate_refuses_bad_users(project: Project) -> None:
    cfg = project.root / "config.yaml"
    base = cfg.read_text()
    cfg.write_text(
        base
        + """
console:
  session_secret: short
  users:
    - {name: a, role: boss, password_hash: "scrypt$16384$8$1$abc$def"}
    - {name: b, role: viewer}
"""
    )
    r = project.run("validate")
    assert r.code != 0
    out = r.out + r.err
    assert "console.session_secret" in out and "in clear" in out
    assert "console.users[0].role" in out and "viewer, operator, admin" in out
    assert "console.users[0].password_hash" in out
    assert "console.users[1].password_hash" in out and "needs a password_hash" in out
    assert "Traceback" not in out


def _hash(project: Project, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "integrator", "console", "hash-password", "--stdin"],
        cwd=project.root,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **project.env},
    )


def test_hash_password_command(project: Project) -> None:
    r = _hash(project, "a-long-password\n")
    assert r.returncode == 0, r.stderr
    from integrator.console.users import verify_password

    line = r.stdout.strip()
    assert line.startswith("scrypt$") and verify_password("a-long-password", line)
    assert not verify_password("a-long-passwore", line)
    assert "a-long-password" not in r.stdout + r.stderr
    short = _hash(project, "short\n")
    assert short.returncode == 2 and "10 characters" in short.stderr


def test_binding_beyond_loopback(project: Project, sandbox: Sandbox) -> None:
    r = project.run("console", "--http", "0.0.0.0:0", timeout=30)
    assert r.code == 2 and "needs users" in r.err
    with_users(project)
    r = project.run("console", "--http", "0.0.0.0:0", timeout=30)
    assert r.code == 2 and "--behind-proxy" in r.err and "--public-host" in r.err
    r = project.run("console", "--http", "0.0.0.0:0", "--behind-proxy", timeout=30)
    assert r.code == 2 and "--public-host" in r.err
    args = ["--behind-proxy", "--public-host", "console.example.com"]
    with console(project, args) as c:
        # the proxy's Host is answered; another name is not (DNS rebinding)
        host = {"Host": "console.example.com"}
        ok = requests.get(c.url + "/login", headers=host, timeout=10)
        assert ok.status_code == 200
        evil = requests.get(c.url + "/login", headers={"Host": "evil.example"}, timeout=10)
        assert evil.status_code == 421
        # TLS at the proxy (X-Forwarded-Proto: https): the session cookie is Secure (a client
        # would send it back over HTTPS only: the test sends it by hand)
        tls = {**host, "X-Forwarded-Proto": "https"}
        form = requests.get(c.url + "/login", headers=tls, timeout=10)
        assert "Secure" in form.headers["Set-Cookie"]
        cookie = form.headers["Set-Cookie"].split(";", 1)[0]
        login = requests.post(
            c.url + "/login",
            headers={**tls, "Cookie": cookie},
            data={
                "name": "otto",
                "password": PASSWORDS["otto"],
                "csrf_token": Browser(c.url).token_of(form.text),
            },
            allow_redirects=False,
            timeout=10,
        )
        assert login.status_code == 303 and "Secure" in login.headers["Set-Cookie"]
        # without the proxy's word, plain HTTP: no Secure flag (a client cannot claim https
        # unless --behind-proxy)
        plain = requests.get(c.url + "/login", headers=host, timeout=10)
        assert "Secure" not in plain.headers["Set-Cookie"]


def test_a_client_cannot_claim_https_without_behind_proxy(
    project: Project, sandbox: Sandbox
) -> None:
    with_users(project)
    with console(project) as c:
        r = requests.get(c.url + "/login", headers={"X-Forwarded-Proto": "https"}, timeout=10)
        assert r.status_code == 200 and "Secure" not in r.headers["Set-Cookie"]


def test_without_users_nothing_changes(project: Project, sandbox: Sandbox) -> None:
    _run(project, "--limit", "2")
    with console(project) as c:
        assert c.get("/api/flows").status_code == 200
        r = requests.post(c.url + "/api/actions/run", json={"flow": "order_flow"}, timeout=10)
        assert r.status_code == 405  # read-only: no action without users
        assert c.get("/login").status_code == 303
        assert "Release</button>" not in c.page("/failures")


def test_the_daemon_serves_the_console_beyond_loopback_only_with_users(
    project: Project,
) -> None:
    with_users(project)
    args = ["--http", "0.0.0.0:0", "--behind-proxy"]
    with daemon(project, args=args) as d:  # users, but no --public-host: not served
        assert d.named("console_not_served")
    with daemon(project, args=[*args, "--public-host", "console.example.com"]) as d:
        assert not d.named("console_not_served")
        port = d.named("daemon_started")[0]["http"].rsplit(":", 1)[1]
        base = f"http://127.0.0.1:{port}"
        host = {"Host": "console.example.com"}
        r = requests.get(base + "/api/flows", headers=host, timeout=5)
        assert r.status_code == 401  # served, and it wants a login
        bearer = {**host, "Authorization": f"Bearer {TOKENS['vera']}"}
        r = requests.get(base + "/api/flows", headers=bearer, timeout=5)
        assert r.status_code == 200 and r.json()["where"] == "daemon"
        r = requests.get(base + "/api/flows", headers={"Host": "evil.example"}, timeout=5)
        assert r.status_code == 421


# ------------------------------------------------------------------ the workbench
def test_a_viewer_runs_the_workbench_only_with_the_csrf_token(project: Project) -> None:
    """With users the workbench is one route of the role table: a viewer may use it ("read
    and test"), its runs are state-changing (CSRF with a cookie session), a token needs none."""
    with_users(project)
    body = {"flow": "order_flow", "recorded": "with_discount"}
    with console(project) as c:
        anon = requests.post(c.url + "/api/workbench/run", json=body, timeout=10)
        assert anon.status_code == 401
        vera = Browser(c.url)
        assert vera.login("vera").status_code == 303
        page = vera.get("/workbench")
        assert page.status_code == 200 and 'hx-post="/workbench/run"' in page.text
        assert vera.csrf in page.text  # htmx sends it (hx-headers on <body>)
        # the cookie alone, even with htmx's header or a JSON body: refused
        r = vera.post("/api/workbench/run", json=body)
        assert r.status_code == 403 and "CSRF" in r.json()["detail"]
        form = {"target": "order_flow|flow", "recorded": "with_discount"}
        r = vera.post("/workbench/run", data=form, headers={"HX-Request": "true"})
        assert r.status_code == 403 and "CSRF" in r.text  # words for the page (htmx)
        r = vera.post("/api/workbench/golden", json={}, headers={"X-CSRF-Token": "x" * 43})
        assert r.status_code == 403
        # with the session's token: it runs
        csrf = {"X-CSRF-Token": vera.csrf}
        r = vera.post("/api/workbench/run", json=body, headers=csrf)
        assert r.status_code == 200 and r.json()["erp_payload"], r.text
        r = vera.post("/workbench/run", data=form, headers={"HX-Request": "true", **csrf})
        assert r.status_code == 200 and "result_data" in r.text
        r = vera.post("/api/workbench/golden", json={}, headers=csrf)
        assert r.status_code == 200 and r.json()["passed"] >= 1, r.text
        # the live API is a read for a viewer
        assert vera.get("/api/live").status_code == 200
        # a viewer still may not act on orders
        r = vera.post("/api/actions/run", json={"flow": "order_flow"}, headers=csrf)
        assert r.status_code == 403 and "operator" in r.json()["detail"]
        # an API token: no cookie, no CSRF
        bearer = {"Authorization": f"Bearer {TOKENS['vera']}"}
        r = requests.post(c.url + "/api/workbench/run", json=body, headers=bearer, timeout=60)
        assert r.status_code == 200, r.text


def test_without_users_only_the_workbench_takes_a_post(project: Project) -> None:
    """No users, no login: the workbench's runs from the console's own pages only; every
    other POST (the actions, login) refused as before, whatever headers it carries."""
    body = {"flow": "order_flow", "recorded": "with_discount"}
    own = {"HX-Request": "true"}
    with console(project) as c:
        for origin in ("http://evil.example", "null", "http://localhost.evil.example"):
            r = requests.post(c.url + "/api/workbench/run", json=body, timeout=10,
                              headers={"Origin": origin})  # fmt: skip
            assert r.status_code == 403 and "may not act" in r.json()["detail"], origin
        r = requests.post(c.url + "/workbench/golden", data={}, timeout=10)  # a plain form
        assert r.status_code == 403
        r = requests.post(c.url + "/api/workbench/run", json=body, timeout=60,
                          headers={"Origin": c.url})  # fmt: skip
        assert r.status_code == 200 and r.json()["erp_payload"], r.text
        for path in ("/api/actions/run", "/actions/release", "/login", "/logout"):
            r = requests.post(c.url + path, json={"flow": "order_flow"}, timeout=10,
                              headers={**own, "Origin": c.url})  # fmt: skip
            assert r.status_code == 405, (path, r.status_code, r.text)


def test_only_the_workbench_takes_a_large_body(project: Project) -> None:
    """A login or an action's body stays small (64 KiB); a workbench run may send more."""
    with_users(project)
    big = {"a": "x" * 200_000}
    with console(project) as c:
        vera = Browser(c.url)
        assert vera.login("vera").status_code == 303
        csrf = {"X-CSRF-Token": vera.csrf}
        r = vera.post("/api/workbench/run", json={"flow": "order_flow", "input": big},
                      headers=csrf)  # fmt: skip
        assert r.status_code == 200, r.text
        otto = Browser(c.url)
        assert otto.login("otto").status_code == 303
        r = otto.post("/api/actions/run", json={"flow": "order_flow", **big},
                      headers={"X-CSRF-Token": otto.csrf})  # fmt: skip
        assert r.status_code == 413
        r = requests.post(c.url + "/login", data={"name": "vera", "password": "x" * 100_000},
                          timeout=10)  # fmt: skip
        assert r.status_code == 413
