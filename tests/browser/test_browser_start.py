"""The browser the console's tests use starts here, offline, on Debian's packages."""

from __future__ import annotations

from support import Project
from support.browser import chrome, wait
from support.console import console


def test_chromium_opens_the_standalone_console(project: Project) -> None:
    with console(project) as c, chrome() as driver:
        driver.get(c.url + "/")
        wait(driver, lambda d: "Dashboard" in d.title, "the dashboard's title")
        assert "order_flow" in driver.page_source  # the project's flow is listed
