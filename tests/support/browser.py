"""A real browser for the console's tests: Debian's chromium, headless, driven by Selenium.

The driver is ``/usr/bin/chromedriver`` (Debian's chromium-driver), passed explicitly, and
Selenium Manager is kept offline (``SE_OFFLINE``): nothing here may download a browser or a
driver. ``.ci/browser.sh`` installs both packages; without them the browser tests fail and say
how to install them (they are part of the feature, not optional).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT_SECONDS = 30.0  # an upper bound for a page's change: the waits end as soon as it is seen

T = TypeVar("T")

# the flags the machine's probe found necessary: no sandbox as root, no GPU, and nothing that
# reaches out (this machine's network is closed; Chromium would retry its own hosts)
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--window-size=1280,900",
)


def missing() -> str | None:
    """Why no browser can start here, or None."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists():
            return (
                f"{path} is missing: install Debian's {package} "
                "(bash .ci/browser.sh installs chromium and chromium-driver)"
            )
    return None


@contextmanager
def chrome(*, browser_log: bool = False) -> Iterator[Any]:
    """A headless Chromium (a fresh profile each time), quit at the end.

    ``browser_log``: keep the page's console and the browser's own messages (CSP refusals,
    uncaught errors, failed loads) for ``driver.get_log("browser")``, each call giving what
    came since the last one."""
    reason = missing()
    if reason:
        raise AssertionError(reason)
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager: never download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="integrator-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    if browser_log:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(driver: Any, check: Callable[[Any], T], message: str) -> T:
    """Wait (WebDriverWait, polling the page) until ``check`` gives a true value; return it.

    An element missing, or gone stale under ``check`` (htmx swapped it, the page reloaded
    itself) is a "not yet", as a false value is."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(
        driver,
        WAIT_SECONDS,
        poll_frequency=0.05,
        ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
    ).until(check, message)


def page_changes(driver: Any, act: Callable[[], object], message: str) -> None:
    """Do ``act`` (a click that submits a form or follows a link) and wait for the next page:
    the old document's root goes stale when the browser has replaced it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    old = driver.find_element(By.TAG_NAME, "html")
    act()
    wait(driver, ec.staleness_of(old), message)


def login(driver: Any, base: str, name: str, password: str, target: str = "/") -> None:
    """Open the login page (``next=target``), type the user's name and password, submit it
    and wait for the next page (the target, or the login page again with its error)."""
    from urllib.parse import quote

    from selenium.webdriver.common.by import By

    driver.get(f"{base}/login?next={quote(target, safe='/')}")
    form = driver.find_element(By.ID, "login")
    form.find_element(By.NAME, "name").send_keys(name)
    form.find_element(By.NAME, "password").send_keys(password)
    page_changes(driver, form.find_element(By.TAG_NAME, "button").click, "the login's answer")


def fetch(
    driver: Any,
    path: str,
    *,
    form: dict[str, str] | None = None,
    json_body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    """``fetch()`` run by the page itself (its origin, its cookies): a POST of a form or a
    JSON body; the answer's status and text. What a script in the user's browser can do."""
    script = """
const [path, form, json, headers, done] = arguments;
let body;
const h = Object.assign({}, headers);
if (form !== null) { body = new URLSearchParams(form); }
else { body = JSON.stringify(json); h["Content-Type"] = "application/json"; }
fetch(path, {method: "POST", body: body, headers: h, credentials: "same-origin",
             redirect: "manual"})
  .then(r => r.text().then(t => done([r.status, t])))
  .catch(e => done([0, String(e)]));
"""
    status, text = driver.execute_async_script(script, path, form, json_body, headers or {})
    return int(status), str(text)
