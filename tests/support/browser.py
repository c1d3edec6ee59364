"""Headless Chromium from Debian, driven by Selenium, that never downloads anything.

Selenium Manager is bypassed (the driver and the browser are given by path); the browser's
background services are off, and with ``offline=True`` every host but loopback goes through a
proxy on the discard port that nothing answers, so a page that needed the internet fails.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

__all__ = ["CHROMEDRIVER", "CHROMIUM", "chromium", "requested_urls"]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@contextmanager
def chromium(
    profile: Path, *, offline: bool = True, size: tuple[int, int] = (1200, 900)
) -> Iterator[Any]:
    """A headless Chromium WebDriver with browser and performance logs; quit on exit."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail(
            "the browser tests need Debian's chromium and chromium-driver (scripts/setup.sh)"
        )
    from selenium import webdriver  # noqa: PLC0415 - a dev-only dependency
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        "--metrics-recording-only",
        f"--user-data-dir={profile}",
        f"--window-size={size[0]},{size[1]}",
    ):
        options.add_argument(flag)
    if offline:
        # Chromium bypasses proxies for loopback on its own: the gateway is reached, nothing else.
        options.add_argument("--proxy-server=127.0.0.1:9")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        driver.set_page_load_timeout(20)
        driver.set_script_timeout(10)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def requested_urls(performance_log: list[dict[str, Any]]) -> list[str]:
    """Every URL the page asked the network for, from a ``performance`` log."""
    import json  # noqa: PLC0415

    urls = []
    for entry in performance_log:
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls
