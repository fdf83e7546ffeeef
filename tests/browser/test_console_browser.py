"""The console in a real browser (Debian's headless chromium through Selenium), driven as a user
drives it: typing, clicking, following links, the htmx parts included. Each test checks what
the page shows against the truth behind it: the state store and the sandbox ERP's orders."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import quote

import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select
from support import ROOT, Project, fault_rule, faults, stats, unsent
from support.browser import chrome, fetch, login, page_changes, wait
from support.console import PASSWORDS, console, with_users
from support.daemon import daemon, unscheduled

from integrator.sandbox import SANDBOX_ENV, Sandbox

SECRETS = (
    SANDBOX_ENV["ERP_TOKEN"],
    SANDBOX_ENV["OMNITRON_PASSWORD"],
    PASSWORDS["otto"],
    PASSWORDS["vera"],
)


def _run(project: Project, *args: str) -> None:
    r = project.run("run-flow", "order_flow", "--no-progress", *args)
    assert r.code in (0, 1), r.err


def _quarantine(
    project: Project, sandbox: Sandbox, statuses: tuple[int, ...] = (400,)
) -> list[str]:
    """Runs where the ERP refuses one order per status (``statuses``) until each is
    quarantined; the fault then cleared. The orders' numbers, in the order of ``statuses``."""
    bad = unsent(sandbox)[1 : 1 + len(statuses)]
    project.edit_flow("max_attempts: 5", "max_attempts: 2\nbackoff_seconds: 0")
    rules = [
        {"action": "status", "route": "create", "status": status, "numbers": [number]}
        for status, number in zip(statuses, bad, strict=True)
    ]
    faults(sandbox.erp.url, {"rules": rules})
    _run(project)
    _run(project)
    assert [project.state(n) for n in bad] == ["quarantined"] * len(bad)
    faults(sandbox.erp.url, {})
    return bad


def _text(driver: Any, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def _no_secret(driver: Any) -> None:
    source = driver.page_source
    for secret in SECRETS:
        assert secret not in source, f"{secret!r} is in the page {driver.current_url}"


def _me(driver: Any) -> tuple[int, str]:
    """``GET /api/me`` from the page: who the browser's session is (401 without one)."""
    status, text = driver.execute_async_script(
        """const done = arguments[0];
fetch("/api/me", {credentials: "same-origin"})
  .then(r => r.text().then(t => done([r.status, t]))).catch(e => done([0, String(e)]));"""
    )
    return int(status), str(text)


def _csrf(driver: Any) -> str:
    """The CSRF token the page holds (htmx's header on <body>), as a script in it finds it."""
    token = driver.execute_script(
        "return JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token'];"
    )
    assert isinstance(token, str) and len(token) > 20, token
    return token


def _shown_seconds(value: float) -> str:
    """A duration as the console writes it (under a minute)."""
    assert value < 60, value
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def _last_run(project: Project) -> dict[str, Any]:
    row = project.sql(
        "SELECT id, status, orders_ok, orders_failed, orders_skipped, started_at, ended_at "
        "FROM runs ORDER BY id DESC LIMIT 1"
    )[0]
    keys = ("id", "status", "ok", "failed", "skipped", "started_at", "ended_at")
    run = dict(zip(keys, row, strict=True))
    start, end = (dt.datetime.fromisoformat(str(run[k])) for k in ("started_at", "ended_at"))
    run["seconds"] = (end - start).total_seconds()
    return run


# ----------------------------------------------------------------------- 1. log in
def test_log_in_wrong_password_next_and_log_out(project: Project, sandbox: Sandbox) -> None:
    _run(project, "--limit", "2")
    with_users(project)
    with console(project) as c, chrome() as driver:
        # a protected page sends to the login, remembering where the user was going
        driver.get(c.url + "/failures?flow=order_flow")
        wait(driver, lambda d: "/login" in d.current_url, "the login page")
        assert "next=/failures" in driver.current_url
        # a wrong password: the console's error, the login form again, and no session
        login(driver, c.url, "otto", "not-his-password", "/failures?flow=order_flow")
        assert "wrong user name or password" in _text(driver, ".error")
        assert driver.find_elements(By.ID, "login")
        assert _me(driver)[0] == 401
        assert "not-his-password" not in driver.page_source
        # the right one lands on the page asked for, as that user
        login(driver, c.url, "otto", PASSWORDS["otto"], "/failures?flow=order_flow")
        assert driver.current_url == c.url + "/failures?flow=order_flow"
        assert _text(driver, "h1") == "Failures of order_flow"
        assert _text(driver, ".who") == "otto (operator)"
        assert json.loads(_me(driver)[1]) == {"name": "otto", "role": "operator"}
        _no_secret(driver)
        # log out: the button ends the session; a protected page sends back to the login
        page_changes(
            driver,
            driver.find_element(By.CSS_SELECTOR, "form.logout button").click,
            "the page after logging out",
        )
        assert driver.current_url == c.url + "/login"
        assert _me(driver)[0] == 401
        driver.get(c.url + "/runs")
        wait(driver, lambda d: "/login?next=/runs" in d.current_url, "the login page again")
        assert not driver.find_elements(By.CSS_SELECTOR, ".who")


# -------------------------------------------------------- 2. the dashboard after a run
def test_dashboard_after_a_run_and_run_now_from_the_daemon(
    project: Project, sandbox: Sandbox
) -> None:
    numbers = unsent(sandbox)
    # a schedule that does not fire during the test: the only daemon run is the button's
    unscheduled(project)
    _run(project, "--limit", "3")
    first = _last_run(project)
    assert (first["status"], first["ok"], first["failed"]) == ("ok", 3, 0)
    with_users(project)
    with daemon(project) as d, chrome() as driver:
        base = d.url("")
        login(driver, base, "otto", PASSWORDS["otto"], "/")
        row = driver.find_element(By.CSS_SELECTOR, 'tr.flow[data-flow="order_flow"]')
        cells = [td.text for td in row.find_elements(By.TAG_NAME, "td")]
        # last run, status, ok / failed / skipped, duration: as the store holds them
        assert cells[3].startswith(f"#{first['id']} ")
        assert cells[4] == "ok"
        assert cells[5] == f"{first['ok']} / {first['failed']} / {first['skipped']}"
        assert cells[6] == _shown_seconds(first["seconds"])
        assert "0 3 29 2 *" in cells[1], cells  # the schedule
        _no_secret(driver)
        # run now: the button queues a run in the daemon; one slow order (the ERP takes
        # 8 s to write it) keeps the run going while the browser follows it (wide enough for
        # a loaded CI machine: the browser's steps until the live view take 1-3 s there)
        slow = numbers[-1]
        fault_rule(sandbox.erp.url, action="latency", route="create", seconds=8, numbers=[slow])
        page_changes(
            driver,
            row.find_element(By.CSS_SELECTOR, "form.run button").click,
            "the run now's answer",
        )
        assert "is queued" in _text(driver, ".action-result"), driver.page_source

        def new_run(drv: Any) -> Any:
            drv.get(base + "/runs?flow=order_flow")
            found = drv.find_elements(By.CSS_SELECTOR, "tr.run")
            fresh = found and found[0].get_attribute("data-run") != str(first["id"])
            return found[0] if fresh else None

        latest = wait(driver, new_run, "the queued run on the runs page")
        run_id = int(latest.get_attribute("data-run"))
        assert run_id > first["id"]
        # its page while it runs: the live part (htmx, polled) shows orders as they finish,
        # then the page reloads itself to show the stored run
        page_changes(driver, latest.find_element(By.TAG_NAME, "a").click, "the run's page")
        wait(
            driver,
            lambda drv: drv.find_elements(By.CSS_SELECTOR, "#live tr[data-seq] td.ok"),
            "orders finishing in the live view",
        )
        assert project.sql(f"SELECT status FROM runs WHERE id = {run_id}") == [("running",)]
        wait(
            driver,
            lambda drv: _text(drv, "h1").endswith(": ok"),
            "the run's page showing it ended ok",
        )
        assert not driver.find_elements(By.CSS_SELECTOR, "#live tr[data-seq]")
        done = _last_run(project)
        assert done["id"] == run_id and done["status"] == "ok"
        assert done["ok"] == len(numbers) - 3
        assert f"{done['ok']} ok, 0 failed" in driver.page_source
        # the runs page's filters (htmx: the table changes, the URL follows)
        driver.get(base + "/runs")
        assert len(driver.find_elements(By.CSS_SELECTOR, "tr.run")) == 2
        Select(driver.find_element(By.NAME, "status")).select_by_value("failed")
        wait(driver, lambda drv: "No run matches." in _text(drv, "#runs"), "no failed run")
        assert "status=failed" in driver.current_url
        Select(driver.find_element(By.NAME, "status")).select_by_value("ok")
        wait(
            driver,
            lambda drv: len(drv.find_elements(By.CSS_SELECTOR, "#runs tr.run")) == 2,
            "the two ok runs",
        )
        # and the dashboard shows it as the last run
        driver.get(base + "/")
        row = driver.find_element(By.CSS_SELECTOR, 'tr.flow[data-flow="order_flow"]')
        cells = [td.text for td in row.find_elements(By.TAG_NAME, "td")]
        assert cells[3].startswith(f"#{run_id} ")
        assert cells[5] == f"{done['ok']} / 0 / {done['skipped']}"
        assert cells[6] == _shown_seconds(done["seconds"])
    # the truth behind it: every order in the ERP once
    assert stats(sandbox.erp.url)["duplicates"] == 0
    assert sorted(sandbox.erp.received) == sorted(numbers)


# ------------------------------------------------------------- 3. an order's timeline
def test_order_timeline_from_the_search_form_masks_secrets(
    project: Project, sandbox: Sandbox
) -> None:
    number = unsent(sandbox)[0]
    # the order carries the ERP's token and Omnitron's password into its payload and a log
    # attribute (a careless script): the console must mask both wherever they show
    project.misbehave_for(
        number,
        f'data["customer"]["first_name"] = "tok {SANDBOX_ENV["ERP_TOKEN"]}"',
        f'attributes["log.auth"] = "pw {SANDBOX_ENV["OMNITRON_PASSWORD"]}"',
    )
    _run(project)
    assert project.state(number) == "done"
    assert sandbox.erp.received[number] == 1
    stored = project.sql(f"SELECT request_json FROM journal WHERE order_number = '{number}'")[0][0]
    assert SANDBOX_ENV["ERP_TOKEN"] in stored  # the store keeps what was sent; the page masks
    with_users(project)
    with console(project) as c, chrome() as driver:
        login(driver, c.url, "vera", PASSWORDS["vera"], "/orders")
        # the search form (htmx: the results replace the page, the URL follows)
        box = driver.find_element(By.CSS_SELECTOR, "main input[name=q]")
        box.send_keys(number[:-1])
        driver.find_element(By.CSS_SELECTOR, "main form button").click()
        wait(driver, lambda d: "q=" in d.current_url, "the URL of the search (hx-push-url)")
        link = wait(
            driver,
            lambda d: d.find_elements(By.LINK_TEXT, number),
            "the order in the search results",
        )[0]
        assert len(driver.find_elements(By.TAG_NAME, "header")) == 1  # one page, not two
        page_changes(driver, link.click, "the order's page")
        assert _text(driver, "h1") == f"Order {number}"
        journal = driver.find_element(By.CSS_SELECTOR, 'section.journal[data-flow="order_flow"]')
        assert journal.find_element(By.CSS_SELECTOR, "h2 span").text == project.state(number)
        # the events, as the store has them
        events = [
            r.find_elements(By.TAG_NAME, "td")[5].text
            for r in driver.find_elements(By.CSS_SELECTOR, "#events tr.event")
        ]
        want = [
            m or ""
            for (m,) in project.sql(
                f"SELECT message FROM events WHERE order_number = '{number}' ORDER BY id"
            )
        ]
        assert sorted(events) == sorted(want) and events
        # the log. attributes: the script's, the post script's, the leak masked
        logged = {
            r.find_elements(By.TAG_NAME, "td")[3].text: r.find_elements(By.TAG_NAME, "td")[4].text
            for r in driver.find_elements(By.CSS_SELECTOR, "#log-attributes tr")[1:]
        }
        assert logged["log.outcome"].startswith("sent as "), logged
        pk = next(o["pk"] for o in sandbox.omnitron.orders.values() if o["number"] == number)
        items = [i for i in sandbox.omnitron.items.values() if i["order"] == pk]
        assert logged["log.lines"] == str(len(items)) and items
        assert "log.auth" in logged and SANDBOX_ENV["OMNITRON_PASSWORD"] not in logged["log.auth"]
        # the ERP request and answer: the payload sent, masked
        request = _text(driver, "pre.erp-request")
        assert f'"order_number": "{number}"' in request
        assert '"first_name"' in request and SANDBOX_ENV["ERP_TOKEN"] not in request
        assert driver.find_elements(By.CSS_SELECTOR, "pre.erp-answer")
        _no_secret(driver)
        # a header search box on every page finds it too (Enter submits)
        driver.find_element(By.CSS_SELECTOR, "header input[name=q]").send_keys(number + "\n")
        wait(driver, lambda d: d.find_elements(By.LINK_TEXT, number), "the header's search")
        # the JSON the page is built from is masked the same way
        driver.get(c.url + f"/api/orders/{number}")
        _no_secret(driver)


# ------------------------------------------------ 4. replay a quarantined order
def test_replay_a_quarantined_order_and_a_viewer_cannot(project: Project, sandbox: Sandbox) -> None:
    (bad,) = _quarantine(project, sandbox)
    assert bad not in sandbox.erp.received
    with_users(project)
    with console(project) as c:
        # a viewer: no action buttons, and a forged POST from her browser is refused
        with chrome() as driver:
            login(driver, c.url, "vera", PASSWORDS["vera"], "/failures")
            assert "quarantined" in driver.page_source and bad in driver.page_source
            assert not driver.find_elements(By.CSS_SELECTOR, "form.action")
            driver.find_element(By.LINK_TEXT, bad).click()
            wait(driver, lambda d: f"Order {bad}" in d.title, "the order's page")
            assert not driver.find_elements(By.CSS_SELECTOR, "form.action")
            token = _csrf(driver)
            form = {"number": bad, "flow": "order_flow", "csrf_token": token}
            status, text = fetch(driver, "/actions/replay", form=form)
            assert status == 403 and "viewer" in text, (status, text)
            status, text = fetch(
                driver, "/api/actions/replay", json_body={"number": bad},
                headers={"X-CSRF-Token": token},
            )  # fmt: skip
            assert status == 403 and "operator" in text, (status, text)
            status, text = fetch(
                driver, "/actions/release", form={"flow": "order_flow", "csrf_token": token}
            )
            assert status == 403, (status, text)
        assert project.state(bad) == "quarantined" and bad not in sandbox.erp.received
        # an operator: from the failures page to the order, replay, and see it delivered
        with chrome() as driver:
            login(driver, c.url, "otto", PASSWORDS["otto"], "/failures?flow=order_flow")
            group = driver.find_element(By.CSS_SELECTOR, "tr.failure")
            assert group.find_elements(By.TAG_NAME, "td")[1].text == "quarantined"
            assert group.find_elements(By.CSS_SELECTOR, "form.release")  # an operator's
            page_changes(driver, group.find_element(By.LINK_TEXT, bad).click, "the order")
            assert _text(driver, "section.journal h2 span") == "quarantined"
            replay = driver.find_element(By.CSS_SELECTOR, "form.replay")
            notes = replay.find_elements(By.NAME, "note")
            if notes:
                notes[0].send_keys("ERP fixed its VAT table")
            page_changes(
                driver, replay.find_element(By.TAG_NAME, "button").click, "the replay's answer"
            )
            result = _text(driver, ".action-result")
            assert f"order {bad} replayed in run" in result and ": ok" in result, result
            page_changes(driver, driver.find_element(By.LINK_TEXT, "Back").click, "the order")
            assert _text(driver, "section.journal h2 span") == "done"
            assert "replay" in _text(driver, "#events").lower()
            assert "otto" in _text(driver, "#events")
            _no_secret(driver)
    assert project.state(bad) == "done"
    assert sandbox.erp.received[bad] == 1  # in the ERP exactly once
    assert stats(sandbox.erp.url)["duplicates"] == 0


def test_release_with_a_note_from_the_failures_page(project: Project, sandbox: Sandbox) -> None:
    """Two orders quarantined for two errors: the operator releases one group with a note;
    the other stays quarantined, and the next run delivers the released one, once."""
    refused, invalid = _quarantine(project, sandbox, (400, 422))
    with_users(project)
    with console(project) as c, chrome() as driver:
        login(driver, c.url, "otto", PASSWORDS["otto"], "/failures?flow=order_flow")
        groups = driver.find_elements(By.CSS_SELECTOR, "tr.failure")
        assert len(groups) == 2, [g.text for g in groups]
        group = next(g for g in groups if "422" in g.text)
        assert invalid in group.text and refused not in group.text
        group.find_element(By.NAME, "note").send_keys("ERP fixed the VAT table")
        page_changes(
            driver, group.find_element(By.TAG_NAME, "button").click, "the release's answer"
        )
        result = _text(driver, ".action-result")
        assert "1 order(s) of order_flow released" in result, result
        page_changes(driver, driver.find_element(By.LINK_TEXT, "Back").click, "the failures")
        left = driver.find_elements(By.CSS_SELECTOR, "tr.failure")
        states = {
            r.find_elements(By.TAG_NAME, "td")[5].text: r.find_elements(By.TAG_NAME, "td")[1].text
            for r in left
        }
        assert states == {refused: "quarantined", invalid: "failed"}, states
    assert project.state(invalid) == "failed" and project.state(refused) == "quarantined"
    messages = [
        m for (m,) in project.sql(f"SELECT message FROM events WHERE order_number = '{invalid}'")
    ]
    assert any("released by otto: ERP fixed the VAT table" in (m or "") for m in messages)
    _run(project)
    assert project.state(invalid) == "done" and sandbox.erp.received[invalid] == 1
    assert refused not in sandbox.erp.received and project.state(refused) == "quarantined"
    assert stats(sandbox.erp.url)["duplicates"] == 0


# ------------------------------------------------------------------ 5. the workbench
def test_workbench_runs_a_script_and_shows_its_error(project: Project, sandbox: Sandbox) -> None:
    recorded = (ROOT / "flows/tests/order_flow/with_discount.order.json").read_text()
    number = json.loads(recorded)["number"]
    # the script reads an attribute the user gives (the page shows what the script set)
    script_file = project.root / "scripts" / "enrich_order.py"
    text = script_file.read_text()
    assert "    return data" in text
    script_file.write_text(text.replace(
        "    return data",
        '    attributes["log.tag"] = "tagged " + attributes.get("channel.tag", "-")\n'
        "    return data",
    ))  # fmt: skip
    with_users(project)
    with console(project) as c, chrome() as driver:
        login(driver, c.url, "vera", PASSWORDS["vera"], "/workbench")
        form = driver.find_element(By.ID, "bench")
        target = Select(form.find_element(By.NAME, "target"))
        script = next(
            o for o in target.options if "enrich_order.py" in o.text and "order_flow" in o.text
        )
        target.select_by_value(str(script.get_attribute("value")))
        # paste the order (as a paste does: the whole text at once), add an attribute
        box = form.find_element(By.NAME, "input")
        driver.execute_script(
            "arguments[0].value = arguments[1]; "
            "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));",
            box,
            recorded,
        )
        form.find_element(By.NAME, "attributes").send_keys("channel.tag=browser-test")
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait(driver, lambda d: d.find_elements(By.ID, "outcome"), "the script's result")
        assert not driver.find_elements(By.ID, "error"), _text(driver, "#result")
        data = json.loads(_text(driver, "#result-data"))
        attributes = json.loads(_text(driver, "#attributes"))
        order = json.loads(recorded)
        gross = sum(float(i["price"]) for i in order["orderitem_set"])
        assert data["number"] == number and data["source_system"] == "omnitron"
        assert float(data["gross_amount"]) == gross
        assert attributes["log.tag"] == "tagged browser-test"
        assert attributes["log.lines"] == str(len(order["orderitem_set"]))
        # nothing called out, nothing written: the store holds no run, the ERP no order
        assert project.sql("SELECT count(*) FROM runs") == [(0,)]
        assert sandbox.erp.received == {}
        # a script that raises: its error, with its line, on the page
        project.misbehave_for(number, 'raise ValueError("no VAT code for this customer")')
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        error = wait(driver, lambda d: d.find_elements(By.ID, "error"), "the script's error")
        text = error[0].text
        assert "ValueError: no VAT code for this customer" in text, text
        line = next(
            i
            for i, s in enumerate(
                (project.root / "scripts/enrich_order.py").read_text().split("\n"), 1
            )
            if "no VAT code" in s
        )
        assert f"line {line}" in text, text
        _no_secret(driver)


def test_workbench_without_users_traces_a_recorded_order_and_runs_golden_tests(
    project: Project, sandbox: Sandbox
) -> None:
    """The console without users (loopback, read-only): its own page's htmx requests still
    run the workbench (the guard takes them from its own origin), and nothing calls out."""
    expected = json.loads((ROOT / "flows/tests/order_flow/with_discount.expected.json").read_text())
    with console(project) as c, chrome() as driver:
        driver.get(c.url + "/workbench")
        form = driver.find_element(By.ID, "bench")
        Select(form.find_element(By.NAME, "target")).select_by_value("order_flow|flow")
        Select(form.find_element(By.NAME, "recorded")).select_by_value("order_flow/with_discount")
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        payload = wait(driver, lambda d: d.find_elements(By.ID, "erp-payload"), "the ERP payload")[
            0
        ]
        assert not driver.find_elements(By.ID, "error"), _text(driver, "#result")
        assert json.loads(payload.text) == expected  # the golden file's payload
        # the golden tests: their status on the page
        driver.find_element(By.CSS_SELECTOR, "#golden button").click()
        cases = wait(
            driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#golden-cases tr td.ok"),
            "the golden cases",
        )  # fmt: skip
        assert cases and not driver.find_elements(By.CSS_SELECTOR, "#golden-cases td.failed")
        assert "0 failed" in _text(driver, "#golden-result")
    # trace mode: nothing reached the ERP or Omnitron's mark, nothing in the store
    assert sandbox.erp.received == {}
    assert stats(sandbox.omnitron.url)["unsent"] == len(unsent(sandbox))
    assert not (project.root / "state" / "integrator.db").exists() or project.sql(
        "SELECT count(*) FROM runs"
    ) == [(0,)]


# ------------------------------------------- htmx answers that are not a success
def test_htmx_parts_show_refusals_and_send_an_ended_session_to_the_login(
    project: Project, sandbox: Sandbox
) -> None:
    """An htmx request the server refuses shows why where its answer goes (before, htmx
    dropped every 4xx silently: Run did nothing); one without a session (it expired, or the
    user logged out in another tab) sends the page to the login, and back after it (before,
    the button did nothing, and a polled part would have swapped the login page into itself)."""
    with_users(project)
    with console(project) as c, chrome() as driver:
        login(driver, c.url, "vera", PASSWORDS["vera"], "/workbench?flow=order_flow")
        first = driver.current_window_handle
        # the same user logs in again in another tab: the first tab's CSRF token is old
        driver.switch_to.new_window("tab")
        login(driver, c.url, "vera", PASSWORDS["vera"], "/")
        driver.switch_to.window(first)
        form = driver.find_element(By.ID, "bench")
        Select(form.find_element(By.NAME, "recorded")).select_by_value("order_flow/with_discount")
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        problem = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#result #problem"),
                       "the refusal where the result goes")[0]  # fmt: skip
        assert "CSRF token is missing or wrong: reload the page" in problem.text
        assert "{" not in problem.text  # words, not the API's JSON
        assert not driver.find_elements(By.CSS_SELECTOR, "#result header")  # not a whole page
        # reloading the page, as told, makes it work
        driver.refresh()
        form = driver.find_element(By.ID, "bench")
        Select(form.find_element(By.NAME, "recorded")).select_by_value("order_flow/with_discount")
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait(driver, lambda d: d.find_elements(By.ID, "erp-payload"), "the result")
        # the session ends (expired, or logged out elsewhere): Run leads to the login
        driver.delete_cookie("integrator_session")
        form = driver.find_element(By.ID, "bench")
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait(driver, lambda d: "/login" in d.current_url, "the login page")
        assert driver.find_elements(By.ID, "login")
        login_form = driver.find_element(By.ID, "login")
        assert login_form.find_element(By.NAME, "next").get_attribute("value") == (
            "/workbench?flow=order_flow"
        )
        login_form.find_element(By.NAME, "name").send_keys("vera")
        login_form.find_element(By.NAME, "password").send_keys(PASSWORDS["vera"])
        page_changes(driver, login_form.find_element(By.TAG_NAME, "button").click, "back")
        assert driver.current_url == c.url + "/workbench?flow=order_flow"
        # a search (htmx, the whole body) without a session: the login page, not a page in
        # a page
        driver.get(c.url + "/orders")
        driver.delete_cookie("integrator_session")
        driver.find_element(By.CSS_SELECTOR, "main input[name=q]").send_keys("2026")
        driver.find_element(By.CSS_SELECTOR, "main form button").click()
        wait(driver, lambda d: "/login" in d.current_url, "the login page")
        assert len(driver.find_elements(By.TAG_NAME, "header")) == 1
        # the console's own errors to an htmx request (a bad filter): words for its target
        login(driver, c.url, "vera", PASSWORDS["vera"], "/runs")
        cookie = {"integrator_session": str(driver.get_cookie("integrator_session")["value"])}
        hx = {"HX-Request": "true", "HX-Current-URL": c.url + "/runs"}
        r = requests.get(c.url + "/runs?since=soon", headers=hx, cookies=cookie, timeout=10)
        assert r.status_code == 400 and r.text.startswith('<p class="note failed" id="problem">')
        assert "?since= takes a date" in r.text and "<header>" not in r.text
        r = requests.get(c.url + "/api/runs?since=soon", headers=hx, cookies=cookie, timeout=10)
        assert r.status_code == 400 and "?since=" in r.json()["detail"]  # the API: JSON
        # the way back after the login is a local path, whatever HX-Current-URL claims
        for claimed, back in (
            ("https://evil.example/x?y=1", "/x?y=1"),
            ("http://127.0.0.1//evil.example/", "/"),
            ("javascript:alert(1)", "/"),
        ):
            r = requests.post(
                c.url + "/workbench/run",
                headers={"HX-Request": "true", "HX-Current-URL": claimed},
                timeout=10,
            )
            assert r.status_code == 401, (claimed, r.text)
            assert r.headers["HX-Redirect"] == "/login?next=" + quote(back, safe="/"), claimed
