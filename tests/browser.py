"""Headless Chromium driven by Selenium, for the chat page's tests and screenshots.

The browser is Debian's ``chromium`` with its ``chromium-driver`` (.ci/run installs both);
nothing is downloaded: the driver and the browser are named by path, so Selenium Manager
is never asked for one.
"""

from __future__ import annotations

import shutil
from typing import Any, Optional, Tuple

import pytest

BROWSER = "chromium"
DRIVER = "chromedriver"


def paths() -> Tuple[str, str]:
    """The browser and driver executables; the test is skipped without them."""
    browser, driver = shutil.which(BROWSER), shutil.which(DRIVER)
    if browser is None or driver is None:
        pytest.skip("chromium or chromedriver missing: apt-get install chromium chromium-driver")
    return browser, driver


def chromium(width: int = 1100, height: int = 900, dark: Optional[bool] = None) -> Any:
    """A headless Chromium window; ``dark``: the colour scheme the page is told the system uses."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed: pip install selenium==4.51.0 (make installs it)")
    browser, driver = paths()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--no-first-run", "--disable-extensions", f"--window-size={width},{height}",
                "--force-device-scale-factor=1"):
        options.add_argument(arg)
    chrome = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    if dark is not None:
        set_dark(chrome, dark)
    return chrome


def set_dark(chrome: Any, dark: bool) -> None:
    """What ``prefers-color-scheme`` says on the page from now on."""
    chrome.execute_cdp_cmd("Emulation.setEmulatedMedia", {
        "features": [{"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]})
