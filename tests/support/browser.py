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
def chrome() -> Iterator[Any]:
    """A headless Chromium (a fresh profile each time), quit at the end."""
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
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(driver: Any, check: Callable[[Any], T], message: str) -> T:
    """Wait (WebDriverWait, polling the page) until ``check`` gives a true value; return it."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.05).until(check, message)
