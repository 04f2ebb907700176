"""A headless Chromium driven by Selenium, for the playground's tests (tests/browser/).

The browser and its driver are found on this machine, never downloaded: CHROME_BIN and
CHROMEDRIVER name them, or they are looked up on PATH (Debian's `chromium` and `chromium-driver`
packages; on GitHub's runners Google Chrome, with chromedriver in CHROMEWEBDRIVER).
"""

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

REQUIRE_BROWSER = os.environ.get("REQUIRE_BROWSER") == "1"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def unavailable(reason: str) -> None:
    """Skip the test, or fail it when REQUIRE_BROWSER=1 asks for the browser tests to run."""
    if REQUIRE_BROWSER:
        pytest.fail(f"REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


def first_found(*names: str) -> str | None:
    """The first of these commands (or paths) that is an executable file."""
    return next(filter(None, map(shutil.which, names)), None)


def find_chrome() -> tuple[str, str]:
    """The paths of the browser and of chromedriver; skips the test if either is missing."""
    browsers = [os.environ["CHROME_BIN"]] if "CHROME_BIN" in os.environ else BROWSERS
    drivers = ["chromedriver"]
    if "CHROMEWEBDRIVER" in os.environ:  # the directory GitHub's runners keep it in
        drivers.append(str(Path(os.environ["CHROMEWEBDRIVER"]) / "chromedriver"))
    if "CHROMEDRIVER" in os.environ:
        drivers = [os.environ["CHROMEDRIVER"]]
    browser, driver = first_found(*browsers), first_found(*drivers)
    if browser is None:
        unavailable("no Chromium found: install chromium, or set CHROME_BIN")
    if driver is None:
        unavailable("no chromedriver found: install chromium-driver, or set CHROMEDRIVER")
    return browser, driver


@contextmanager
def headless_chrome(width: int = 1280, height: int = 860) -> Iterator[webdriver.Chrome]:
    browser, driver_path = find_chrome()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    # --no-sandbox: Chromium's sandbox cannot start as root, as CI containers run.
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    # The page's console, for the tests to see script errors and content policy violations.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Both paths are given, so Selenium Manager has nothing to look up; offline, it could not
    # download a browser or a driver even if it tried.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")
        driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        yield driver
    finally:
        driver.quit()
