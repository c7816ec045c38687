"""A real browser for the web pages: Playwright driving Debian's Chromium against the live test server.

`make test` installs Chromium (scripts/install-system-deps.sh) and Playwright (requirements-dev.txt);
Playwright's own browser download is never used.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("OCR_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def chromium(live_server, transactional_db, _orm_beside_the_browser):
    # Per test, after the database is set up and stopped before it is torn down: while Playwright runs,
    # its event loop sits in this thread, and Django refuses ORM calls from a thread with a running loop.
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-system-deps.sh (make test does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(autouse=True)
def _orm_beside_the_browser(monkeypatch):
    # Playwright's sync API keeps an event loop in this thread; the test's own ORM calls are still
    # synchronous and alone, so Django's guard against ORM calls from async code does not apply.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


class Visit:
    """A browser context (one person) that records every request it makes."""

    def __init__(self, browser, base_url: str, viewport=DESKTOP):
        self.base_url = base_url
        self.context = browser.new_context(viewport=viewport, base_url=base_url, accept_downloads=True,
                                           locale="en-GB")
        self.requests: list[str] = []
        self.context.on("request", lambda request: self.requests.append(request.url))
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)

    def sign_in_as(self, user) -> Visit:
        """The session cookie of a signed-in user (signing in through the form is tested on its own)."""
        from django.test import Client

        client = Client()
        client.force_login(user)
        self.context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value,
                                   "url": self.base_url}])
        return self

    def outside_requests(self) -> list[str]:
        return [url for url in self.requests if not url.startswith((self.base_url, "data:", "blob:"))]

    def unlabelled_controls(self) -> list[str]:
        """Visible controls without an accessible name."""
        return self.page.evaluate("""() => [...document.querySelectorAll(
              'input:not([type=hidden]), select, textarea, button, a[href]')]
            .filter(el => el.offsetParent !== null)
            .filter(el => !((el.labels && el.labels.length) || el.getAttribute('aria-label')
                            || el.textContent.trim()))
            .map(el => el.outerHTML.slice(0, 80))""")

    def fits_width(self) -> bool:
        return self.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")

    def screenshot(self, name: str, full_page: bool = False) -> None:
        """Written into docs/ (the README shows them); pages show no clock, so unchanged pages match."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / name), full_page=full_page, animations="disabled",
                             caret="hide")

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(chromium, live_server, transactional_db):
    """visit(user=None, viewport=DESKTOP) -> Visit; every visit is closed after the test."""
    opened: list[Visit] = []

    def open_visit(user=None, viewport=DESKTOP) -> Visit:
        v = Visit(chromium, live_server.url, viewport)
        opened.append(v)
        return v.sign_in_as(user) if user is not None else v

    yield open_visit
    for v in opened:
        v.close()
