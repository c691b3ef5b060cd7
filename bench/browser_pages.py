"""The browser benchmark's stage (bench/browser.py): the server and Debian's Chromium in the
sealed network namespace, users signed in each in a profile of their own, rooms opened, the
plain RTCDataChannel between two pages that every figure is set beside, and what a page shows
(joined and uploaded, its last message)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from bench import browser_scripts as js
from launcher import ServerProcess
from launcher.server import OPEN_LIMITS
from tests.browser.conftest import launch_chromium, sign_in
from tests.browser.sealed_network import SealedNetwork
from tests.browser.stack import PASSWORD

LONG = 120_000  # ms: seeding and syncing a long room on a shared 2-core machine
SERVER_ENV = {**OPEN_LIMITS, "RATELIMIT_SIGNAL": "1000000 per 10 seconds",
              "RATELIMIT_PUBLISH": "1000000 per 10 seconds"}


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


class Bench:
    """One server, one Chromium, the users and their browser profiles."""

    def __init__(self, browser: Browser, server: ServerProcess) -> None:
        self.browser = browser
        self.server = server
        self.contexts: list[BrowserContext] = []
        self.errors: list[str] = []

    def user_page(self, name: str, init_script: str | None = None) -> Page:
        """A fresh browser profile of a newly registered user, signed in through the form."""
        reply = requests.post(f"{self.server.url}/api/register",
                              json={"username": name, "password": PASSWORD}, timeout=30)
        assert reply.status_code == 201, reply.text
        context = self.browser.new_context(viewport={"width": 1280, "height": 800})
        self.contexts.append(context)
        if init_script:
            context.add_init_script(script=init_script)
        page = context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{name}: {exc}"))
        sign_in(page, self.server, name)  # type: ignore[arg-type]
        return page

    def open_room(self, page: Page, room: str) -> None:
        """Open the browser peer for `room` in a signed-in page and wait until it is ready."""
        page.goto(f"{self.server.url}/rooms/{room}")
        page.wait_for_selector("#chat[data-ready]", timeout=LONG)
        state = page.get_attribute("#chat", "data-ready")
        assert state == "yes", page.inner_text("#chat")

    def close(self) -> None:
        for context in self.contexts:
            context.close()


def floor_echo(bench: Bench, count: int, gap: int = 0) -> list[float]:
    """Two plain pages of the same Chromium, one ordered RTCDataChannel, `count` echoes, back
    to back or each `gap` ms after the one before."""
    pages = []
    for _ in range(2):
        context = bench.browser.new_context()
        bench.contexts.append(context)
        page = context.new_page()
        page.goto(bench.server.url + "/")
        pages.append(page)
    offer = pages[0].evaluate(js.FLOOR_OFFER)
    answer = pages[1].evaluate(js.FLOOR_ANSWER, offer)
    pages[0].evaluate(js.FLOOR_ACCEPT, answer)
    pages[0].evaluate(js.FLOOR_ECHO, {"count": 20, "start": 0})  # warm-up
    samples: list[float] = pages[0].evaluate(js.FLOOR_ECHO,
                                             {"count": count, "start": 20, "gap": gap})
    for page in pages:
        page.close()
    return samples


def floor_links(page: Page, pairs: int, tries: int) -> list[float]:
    return [float(page.evaluate(js.FLOOR_LINKS, {"pairs": pairs})) for _ in range(tries)]


def ready_and_quiet(page: Page) -> bool:
    """The page has joined and its outbox is empty (nothing left to upload)."""
    return bool(page.evaluate(
        "() => { const b = document.getElementById('server-banner');"
        " return !!b && b.dataset.state === 'connected' && b.dataset.outbox === '0'; }"))


def last_text(page: Page) -> str:
    return str(page.evaluate(
        "() => document.querySelector('#messages > .message:last-child .text')?.textContent"
        " || ''"))


@contextmanager
def chromium_in_sealed_network(work: Path) -> Iterator[tuple[Browser, ServerProcess]]:
    """The sealed namespace, the server inside it, Debian's Chromium launched as the browser
    tests launch it (tests/browser/conftest.py `chromium`)."""
    network = SealedNetwork()
    try:
        server = ServerProcess(work / "server", env=SERVER_ENV, ready_timeout=90)
        server.start()
        try:
            with sync_playwright() as playwright:
                browser = launch_chromium(playwright)
                try:
                    yield browser, server
                finally:
                    browser.close()
        finally:
            server.stop()
    finally:
        network.leave()
