"""Every console page in a real browser: no Content-Security-Policy refusal, no script error,
htmx loaded, and its htmx parts (the live part's polling, the runs' filters, the search, the
workbench's forms) working once.

A CSP refusal or a script error breaks the htmx parts silently: a button that does nothing, a
live part that never moves. The browser says so only in its log, so both tests keep it
(``goog:loggingPrefs``) and read it after each page, and a recorder added to every document
before its own scripts (CDP) keeps ``securitypolicyviolation`` events and uncaught errors.

The pages are not a list written here: they are the console's GET routes (its Flask url_map)
outside ``/api/`` and ``/static/``, each path parameter filled from a store that sandbox runs
filled (a run that ended, a run still going, an order delivered, an order quarantined). A new
page with a parameter nobody fills fails the walk and says which."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select
from support import Project, fault_rule, faults, unsent, wait_for
from support.alarms import Receiver, with_alarms
from support.browser import chrome, login, wait
from support.console import PASSWORDS, TOKENS, console, with_users
from support.daemon import daemon, unscheduled

from integrator.console.app import ConsoleSource, create_app
from integrator.sandbox import Sandbox

# added to every document before its own scripts: what the page itself refuses or throws
RECORDER = """
window.__csp = [];
window.__errors = [];
window.__settled = 0;
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} `
    + `at ${e.sourceFile}:${e.lineNumber}`);
});
window.addEventListener("error", (e) => { window.__errors.push(String(e.message)); });
window.addEventListener("unhandledrejection", (e) => {
  window.__errors.push("unhandled rejection: " + String(e.reason));
});
document.addEventListener("htmx:afterSettle", () => { window.__settled += 1; });
"""

# attributes whose code the CSP refuses only when it runs: event handlers (on click...), htmx's
# hx-on handlers, javascript: URLs, hx-vals/hx-vars/hx-headers evaluated as script ("js:")
INLINE_CODE = r"""
return Array.from(document.querySelectorAll("*")).flatMap((el) =>
  Array.from(el.attributes)
    .filter((a) => /^(data-)?(on|hx-on)/i.test(a.name)
      || /^\s*javascript:/i.test(a.value)
      || (/^(data-)?hx-(vals|vars|headers)$/i.test(a.name) && /^\s*js:/i.test(a.value)))
    .map((a) => `<${el.tagName.toLowerCase()} ${a.name}="${a.value}">`));
"""

# the words of the browser's log that mean a page is broken, whatever the entry's level
BROKEN = ("Content Security Policy", "Refused to", "Uncaught", "htmx:")

# pages htmx loads into another page (the run's live part, polled there): opened alone they
# are a fragment, without base.html's script, so htmx is not expected in them
FRAGMENTS = frozenset({"run_live_fragment"})

# the query strings each page is opened with besides none (its filters)
QUERIES: dict[str, Sequence[str]] = {
    "runs_page": ("?flow=order_flow&status=ok",),
    "failures_page": ("?flow=order_flow",),
    "alarms_page": ("?flow=order_flow",),
    "workbench_page": ("?flow=order_flow",),
    "login_form": ("?next=/runs",),
}


def html_routes() -> list[tuple[str, str, frozenset[str]]]:
    """The console's GET pages: (rule, endpoint, path parameters), from its url_map."""

    def unused() -> Any:
        raise AssertionError("building the app reads nothing")

    guard = create_app(
        ConsoleSource(store=unused, redactor=unused, log_dir=unused, schedules=unused)
    )
    found = []
    flask_app: Any = guard.app  # the guard's WSGI app is the console's Flask app
    for rule in flask_app.url_map.iter_rules():
        if "GET" not in (rule.methods or ()) or rule.rule.startswith(("/api/", "/static/")):
            continue
        found.append((rule.rule, rule.endpoint, frozenset(rule.arguments)))
    return sorted(found)


def urls(values: Mapping[str, Sequence[str]]) -> list[tuple[str, str]]:
    """Every page as (endpoint, path with its query), each parameter filled with each of its
    values; a parameter without values is a page this walk cannot open: it fails."""
    out: list[tuple[str, str]] = []
    for rule, endpoint, arguments in html_routes():
        missing = arguments - set(values)
        assert not missing, (
            f"the console's page {rule} ({endpoint}) takes {sorted(missing)}: give this test "
            "values for it (from the sandbox runs), so the page is walked"
        )
        paths = [rule]
        for name in sorted(arguments):
            paths = [
                re.sub(rf"<(?:[a-z]+:)?{name}>", quote(v, safe=""), p)
                for p in paths
                for v in values[name]
            ]
        for path in paths:
            out += [(endpoint, path + q) for q in ("", *QUERIES.get(endpoint, ()))]
    return out


# ------------------------------------------------------------------------- checks
def csp_directives(header: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            parsed[words[0].lower()] = words[1:]
    return parsed


def assert_strict(header: str) -> None:
    """The console's CSP: scripts only from its own origin (no inline script, no eval, no
    other host or scheme), styles likewise, never framed, no <base>, forms to itself."""
    d = csp_directives(header)
    assert d.get("default-src") == ["'self'"], header
    for kind in ("script-src", "style-src"):
        sources = d.get(kind, d["default-src"])
        assert sources == ["'self'"], f"{kind}: {sources} in {header!r}"
    assert d.get("frame-ancestors") == ["'none'"], header
    assert d.get("base-uri") == ["'none'"], header  # default-src does not cover it
    assert d.get("form-action") == ["'self'"], header  # nor this


class Checker:
    """Opens pages in ``driver`` and checks each: its log, the recorder, htmx, its header."""

    def __init__(self, driver: Any, base: str) -> None:
        self.driver, self.base = driver, base
        self.seen: list[str] = []
        self.polled: list[str] = []  # the pages whose polled part htmx swapped in
        self.header: str | None = None
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORDER})

    def _http(self, path: str) -> requests.Response:
        cookies = {c["name"]: c["value"] for c in self.driver.get_cookies()}
        return requests.get(self.base + path, cookies=cookies, timeout=10, allow_redirects=False)

    def open(self, endpoint: str, path: str, status: int = 200) -> None:
        """Open ``path``; wait for the document, htmx (unless a fragment) and, when the page
        polls or loads a part, for htmx's first swap; then check it."""
        answer = self._http(path)
        assert answer.status_code == status, (path, answer.status_code, answer.text[:300])
        if not 300 <= status < 400:  # a redirect's page is where the browser lands
            assert answer.headers["Content-Type"].startswith("text/html"), (path, answer.headers)
        header = answer.headers["Content-Security-Policy"]
        assert self.header in (None, header), f"{path} has another CSP: {header!r}"
        self.header = header
        self.driver.get(self.base + path)
        wait(
            self.driver,
            lambda d: d.execute_script("return document.readyState") == "complete",
            f"{path} loaded",
        )
        if endpoint not in FRAGMENTS:
            wait(
                self.driver,
                lambda d: d.execute_script(
                    "return typeof window.htmx === 'object' && typeof htmx.version === 'string'"
                ),
                f"htmx running in {path}",
            )
            polls = self.driver.execute_script(
                "return !!document.querySelector("
                '\'[hx-trigger*="every"], [hx-trigger*="load"], [hx-trigger*="revealed"]\')'
            )
            if polls:
                self.swapped(f"{path}'s polled part")
                self.polled.append(path)
        self.check(path, status)
        self.seen.append(path)

    def inline_code(self) -> list[str]:
        """Code in the page's markup the CSP refuses only when it runs (an event handler
        attribute fires on its event, an hx-on handler or a javascript: URL on use): none."""
        found: list[str] = self.driver.execute_script(INLINE_CODE)
        return found

    def swapped(self, what: str, at_least: int = 1) -> None:
        """Wait until htmx has swapped ``at_least`` answers into this document."""
        wait(
            self.driver,
            lambda d: (d.execute_script("return window.__settled") or 0) >= at_least,
            f"htmx's swap of {what}",
        )

    def check(self, where: str, status: int = 200) -> None:
        """Nothing refused, thrown or logged as broken since the last check."""
        recorded = self.driver.execute_script(
            "return [window.__csp || ['the recorder did not run'], window.__errors || []]"
        )
        assert recorded == [[], []], f"{where}: CSP refusals, errors: {recorded}"
        problems = [e.text for e in self.driver.find_elements(By.ID, "problem")]
        assert not problems, f"{where}: an htmx part answered with a refusal: {problems}"
        code = self.inline_code()
        assert not code, f"{where}: code in its markup, which the CSP refuses when it runs: {code}"
        bad = []
        for entry in self.driver.get_log("browser"):
            message = str(entry.get("message", ""))
            if "/favicon.ico" in message:  # the browser asks for one; the console has none
                continue
            if status != 200 and f"status of {status}" in message:  # the page's own status
                continue
            if entry.get("level") == "SEVERE" or any(w in message for w in BROKEN):
                bad.append(message)
        assert not bad, f"{where}: the browser's log says {bad}"


def _run(project: Project, *args: str) -> None:
    r = project.run("run-flow", "order_flow", "--no-progress", *args)
    assert r.code in (0, 1), r.err


def _filled(project: Project, sandbox: Sandbox) -> tuple[str, str, str]:
    """Runs that leave an ended run with its log, delivered orders and a quarantined one:
    (the run's id, a delivered order, the quarantined order)."""
    numbers = unsent(sandbox)
    _run(project, "--limit", "3")
    (ended,) = project.sql("SELECT max(id) FROM runs")[0]
    (done,) = project.sql("SELECT order_number FROM journal WHERE state = 'done' LIMIT 1")[0]
    bad = numbers[4]
    project.edit_flow("max_attempts: 5", "max_attempts: 2\nbackoff_seconds: 0")
    fault_rule(sandbox.erp.url, action="status", route="create", status=400, numbers=[bad])
    _run(project, "--limit", "4")
    _run(project, "--limit", "4")
    assert project.state(bad) == "quarantined"
    faults(sandbox.erp.url, {})
    return str(ended), str(done), bad


def _walk(c: Checker, values: Mapping[str, Sequence[str]]) -> None:
    for endpoint, path in urls(values):
        c.open(endpoint, path)
    # the error page, for a run and a page that do not exist
    c.open("error", "/runs/999999", status=404)
    c.open("error", "/no-such-page", status=404)


def _htmx_parts(c: Checker, number: str) -> None:
    """The pages' htmx forms, each once: the runs' filter, the order search, the workbench's
    trace of a recorded order and its golden tests."""
    d = c.driver
    c.open("runs_page", "/runs")
    Select(d.find_element(By.NAME, "status")).select_by_value("ok")
    c.swapped("the runs' filter")
    c.check("the runs' filter")
    c.open("orders_page", "/orders")
    box = d.find_element(By.CSS_SELECTOR, "main form[hx-get] input[name=q]")  # not the header's
    box.send_keys(number, Keys.ENTER)
    c.swapped("the order search")
    wait(d, lambda drv: number in drv.page_source, "the order found")
    c.check("the order search")
    c.open("workbench_page", "/workbench")
    # the styles are a file the CSP takes: they apply; htmx's indicator is hidden until its
    # request goes (its styles are console.css's, not the inline <style> htmx would inject)
    header = d.find_element(By.TAG_NAME, "header")
    assert header.value_of_css_property("background-color") == "rgba(38, 50, 56, 1)"
    indicator = d.find_element(By.CSS_SELECTOR, "#bench .htmx-indicator")
    assert indicator.value_of_css_property("visibility") == "hidden"
    form = d.find_element(By.ID, "bench")
    Select(form.find_element(By.NAME, "target")).select_by_value("order_flow|flow")
    Select(form.find_element(By.NAME, "recorded")).select_by_value("order_flow/with_discount")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(d, lambda drv: drv.find_elements(By.ID, "erp-payload"), "the workbench's trace")
    c.check("the workbench's trace")
    d.find_element(By.CSS_SELECTOR, "#golden button").click()
    wait(d, lambda drv: drv.find_elements(By.CSS_SELECTOR, "#golden-cases"), "the golden tests")
    c.check("the golden tests")


@pytest.fixture
def receiver_project(project: Project) -> Iterator[tuple[Project, Receiver]]:
    r = Receiver()
    with_alarms(project, r)
    yield project, r
    r.close()


# ------------------------------------------------------------------------- tests
def test_every_page_of_the_daemon_console_as_an_admin(
    receiver_project: tuple[Project, Receiver], sandbox: Sandbox
) -> None:
    project, _receiver = receiver_project
    ended, done, bad = _filled(project, sandbox)
    # a schedule that never fires here: the only daemon run is the one asked for below, kept
    # going by one slow order (the ERP takes long to write it) while its page polls
    unscheduled(project)
    with_users(project)
    slow = unsent(sandbox)[-1]
    fault_rule(sandbox.erp.url, action="latency", route="create", seconds=60, numbers=[slow])
    with daemon(project) as dm, chrome(browser_log=True) as driver:
        base = dm.url("")
        c = Checker(driver, base)
        driver.get(base + "/login")  # the login page, before a session
        c.check("/login")
        login(driver, base, "ada", PASSWORDS["ada"], "/")
        c.check("logging in")
        queued = requests.post(
            base + "/api/actions/run",
            json={"flow": "order_flow"},
            headers={"Authorization": f"Bearer {TOKENS['otto']}"},
            timeout=10,
        )
        assert queued.status_code == 200, queued.text

        def running() -> str | None:
            runs = requests.get(
                base + "/api/runs?status=running",
                timeout=5,
                headers={"Authorization": f"Bearer {TOKENS['otto']}"},
            )
            rows = runs.json()["runs"]
            return str(rows[0]["id"]) if rows else None  # fmt: skip

        live = wait_for(running, 30, "the daemon's run")
        values = {"run_id": (live, ended), "number": (done, bad)}
        _walk(c, values)
        # the live part polled (its page first: the walk opens it while the run goes)
        assert f"/runs/{live}" in c.polled, c.polled
        _htmx_parts(c, done)
        assert c.header is not None
        assert_strict(c.header)


def test_every_page_of_the_standalone_console_without_users(
    project: Project, sandbox: Sandbox
) -> None:
    ended, done, bad = _filled(project, sandbox)
    with console(project) as con, chrome(browser_log=True) as driver:
        c = Checker(driver, con.url)
        values = {"run_id": (ended,), "number": (done, bad)}
        for endpoint, path in urls(values):
            # without users the login page sends to the dashboard
            c.open(endpoint, path, status=303 if endpoint == "login_form" else 200)
        c.open("error", "/runs/999999", status=404)
        _htmx_parts(c, done)
        assert c.header is not None
        assert_strict(c.header)


def test_the_walk_knows_every_page() -> None:
    """The pages the walk opens are the console's, read from its url_map: a new GET page is
    walked (or fails for want of parameter values), never forgotten."""
    endpoints = {e for _r, e, _a in html_routes()}
    assert {"dashboard", "run_page", "run_live_fragment", "order_page", "workbench_page"} <= (
        endpoints
    )
    assert not any(r.startswith("/api/") for r, _e, _a in html_routes())
    with pytest.raises(AssertionError, match="takes"):
        urls({"run_id": ("1",)})  # no order number: the order's page cannot be opened
