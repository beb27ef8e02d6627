"""A headless Chromium driven by Selenium, for tests of what annotators see. Chromium and its driver
are Debian's (deploy/chromium.sh installs them, once)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def ensure_chromium() -> tuple[str, str]:
    """The chromium and chromedriver executables; installs them if missing."""
    subprocess.run(["bash", str(ROOT / "deploy" / "chromium.sh")], check=True)
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser is None or driver is None:
        raise RuntimeError("deploy/chromium.sh ran, but chromium or chromedriver is not on PATH")
    return browser, driver


@contextmanager
def headless_chromium(width: int = 1400, height: int = 1000) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},{height}"):  # fmt: skip
        options.add_argument(argument)
    chrome = webdriver.Chrome(options=options, service=Service(driver))
    try:
        yield chrome
    finally:
        chrome.quit()


def wait_for(check: Any, timeout: float = 60.0, what: str = "the page") -> Any:
    """Polls ``check`` until it returns something truthy (no fixed sleeps: the machine's speed varies)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)
