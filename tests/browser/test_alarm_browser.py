"""An alarm seen firing in a real browser: an operator runs the flow from the daemon's console
while the sandbox ERP refuses every order; the dashboard shows the alarm firing, the alarms
page its notice, and the webhook arrives once at a local receiver, in Slack's shape."""

from __future__ import annotations

import json
from typing import Any

from selenium.webdriver.common.by import By
from support import Project, faults, wait_for
from support.alarms import HOOK_TOKEN, Receiver, erp_refuses, with_alarms
from support.browser import chrome, wait
from support.console import PASSWORDS, with_users
from support.daemon import daemon, unscheduled

from integrator.sandbox import Sandbox


def _log_in(driver: Any, base: str, name: str) -> None:
    driver.get(base + "/login")
    driver.find_element(By.NAME, "name").send_keys(name)
    driver.find_element(By.NAME, "password").send_keys(PASSWORDS[name])
    driver.find_element(By.CSS_SELECTOR, "form#login button").click()
    wait(driver, lambda d: "/login" not in d.current_url, "the login to go through")


def _alarm_cell(driver: Any) -> Any:
    row = driver.find_element(By.XPATH, "//tr[td//a[normalize-space()='order_flow']]")
    return row.find_element(By.CSS_SELECTOR, "td.alarms")


def _run_now_until(driver: Any, base: str, state: str) -> None:
    """Click the dashboard's Run now for order_flow, then reload the dashboard until its
    alarm cell says ``state``."""
    row = driver.find_element(By.XPATH, "//tr[td//a[normalize-space()='order_flow']]")
    row.find_element(By.XPATH, ".//button[normalize-space()='Run now']").click()

    def shown(dr: Any) -> bool:
        dr.get(base + "/")
        return bool(_alarm_cell(dr).get_attribute("data-state") == state)

    wait(driver, shown, f"the dashboard to show the alarm {state}")


def test_an_alarm_fires_in_the_console_and_its_webhook_arrives(
    project: Project, sandbox: Sandbox, receiver: Receiver
) -> None:
    with_alarms(project, receiver)
    with_users(project)
    unscheduled(project)  # runs only from the Run now button: the notices are counted
    erp_refuses(sandbox)
    with daemon(project, args=["--alarm-interval", "600"]) as d, chrome() as driver:
        base = d.url("")
        _log_in(driver, base, "otto")
        driver.get(base + "/")
        # evaluated once at the start, before any run: nothing fires
        assert _alarm_cell(driver).get_attribute("data-state") in ("ok", "unknown")
        assert receiver.posts == []

        _run_now_until(driver, base, "firing")
        cell = _alarm_cell(driver).text
        assert "erp-errors" in cell and "firing since" in cell, cell

        wait_for(lambda: receiver.posts or None, 30, "the webhook")
        (post,) = receiver.posts
        assert post["path"] == f"/services/{HOOK_TOKEN}"
        body = json.loads(post["body"])
        assert "order_flow" in body["text"] and "erp-errors" in body["text"], body

        driver.find_element(By.LINK_TEXT, "erp-errors").click()
        wait(driver, lambda dr: "/alarms" in dr.current_url, "the alarms page")
        page = driver.find_element(By.TAG_NAME, "main").text
        assert "erp-errors" in page and "firing" in page.lower(), page
        assert HOOK_TOKEN not in driver.page_source  # the webhook's URL is a secret

        # the ERP heals; the next run ends the alarm: a recovery notice, no second firing
        faults(sandbox.erp.url, {})
        driver.get(base + "/")
        _run_now_until(driver, base, "ok")
        wait_for(lambda: len(receiver.posts) == 2 or None, 30, "the recovery notice")
        texts = [json.loads(p["body"])["text"] for p in receiver.posts]
        assert "[FIRING]" in texts[0] and "[RECOVERED]" in texts[1], texts
