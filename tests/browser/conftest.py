"""Fixtures of the browser tests: a sealed network namespace for the whole package, Debian's
Chromium driven by Playwright (never a downloaded browser), the real server and agents.

Without root, `ip`, Chromium or the Socket.IO client copied by `scripts/bootstrap`, the
package is skipped with the reason on a developer's machine, and fails in CI (CI=true)."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from tests.browser.sealed_network import SealedNetwork, unavailable_reason
from tests.browser.stack import PASSWORD, Server
from tests.helpers import ROOT, require

CHROMIUM_PATHS = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
SOCKET_IO_CLIENT = ROOT / "static" / "vendor" / "socket.io.esm.min.js"
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
MDNS_FEATURE = "WebRtcHideLocalIpsWithMdns"

# From the shared notes on WebRTC here: no GPU or sandbox in these containers, and no
# background lookups of Google's hosts. Everyday Chromium runs with these alone.
EVERYDAY_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
# The suite's usual Chromium also allows loopback in peer connections (and has mDNS hiding off).
CHROMIUM_ARGS = [*EVERYDAY_ARGS, "--allow-loopback-in-peer-connection"]


def chromium_path() -> str | None:
    override = os.environ.get("GIBBERISH_CHROMIUM")
    for path in ((override,) if override else CHROMIUM_PATHS):
        if path and os.access(path, os.X_OK):
            return path
    return None


def missing_prerequisite() -> str | None:
    """What keeps the browser tests from running here, or None."""
    if chromium_path() is None:
        return "Debian's chromium is not installed (apt-get install chromium)"
    if not SOCKET_IO_CLIENT.exists():
        return "static/vendor/socket.io.esm.min.js is missing (scripts/bootstrap runs npm ci)"
    return unavailable_reason()


@pytest.fixture(scope="package", autouse=True)
def sealed_network() -> Iterator[SealedNetwork]:
    """Every browser test runs inside one sealed network namespace (see sealed_network.py)."""
    reason = missing_prerequisite()
    require(reason, "browser tests need a sealed network and Chromium")
    network = SealedNetwork()
    try:
        yield network
    finally:
        network.leave()


def playwright_disabled_features(playwright: Playwright, executable: str) -> str:
    """The `--disable-features` list Playwright passes to Chromium, read back from a first
    launch's chrome://version. Chromium honours only the last such switch, so ours must be
    merged into it rather than added beside it."""
    browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
    try:
        page = browser.new_page()
        page.goto("chrome://version")
        command_line = page.inner_text("#command_line")
    finally:
        browser.close()
    found = re.findall(r"--disable-features=(\S+)", command_line)
    assert found, f"no --disable-features in {command_line!r}"
    return str(found[-1])


@pytest.fixture(scope="package")
def playwright_driver(sealed_network: SealedNetwork) -> Iterator[Playwright]:
    """Playwright, started once for the package's browsers."""
    started = sync_playwright().start()
    try:
        yield started
    finally:
        started.stop()


def launch_chromium(playwright: Playwright) -> Browser:
    """Debian's Chromium, headless, with WebRTC's mDNS address hiding off (call it inside the
    sealed namespace)."""
    executable = chromium_path()
    assert executable is not None
    theirs = playwright_disabled_features(playwright, executable)
    return playwright.chromium.launch(
        executable_path=executable,
        ignore_default_args=[f"--disable-features={theirs}"],
        args=[*CHROMIUM_ARGS, f"--disable-features={theirs},{MDNS_FEATURE}"],
    )


@pytest.fixture(scope="package")
def chromium(playwright_driver: Playwright) -> Iterator[Browser]:
    """Headless Chromium with WebRTC's mDNS address hiding off, launched inside the namespace."""
    browser = launch_chromium(playwright_driver)
    yield browser
    browser.close()


@pytest.fixture(scope="package")
def everyday_chromium(playwright_driver: Playwright) -> Iterator[Browser]:
    """Headless Chromium as people run it: host addresses hidden behind mDNS `.local` names
    and no loopback in peer connections, launched inside the namespace."""
    executable = chromium_path()
    assert executable is not None
    browser = playwright_driver.chromium.launch(executable_path=executable, args=EVERYDAY_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="package")
def server(sealed_network: SealedNetwork, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[Server]:
    """One server for the tests that never stop it (each test uses its own names)."""
    running = Server(tmp_path_factory.mktemp("browser-server"))
    running.start()
    yield running
    running.stop()


@pytest.fixture
def own_server(sealed_network: SealedNetwork, tmp_path: Path) -> Iterator[Server]:
    """A server of the test's own, which it may kill and start again on the same port."""
    running = Server(tmp_path / "server")
    running.start()
    yield running
    running.stop()


OpenPage = Callable[..., Page]


def page_opener(browser: Browser) -> Iterator[OpenPage]:
    """Open pages of `browser`, each in a fresh browser profile (its own cookies and
    IndexedDB, so its own device key). Uncaught script errors in any page fail the test."""
    contexts = []
    errors: list[str] = []

    def make(viewport: dict[str, int] | None = None) -> Page:
        context = browser.new_context(viewport=viewport or DESKTOP)  # type: ignore[arg-type]
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))
        return page

    yield make
    for context in contexts:
        context.close()
    assert not errors, f"uncaught errors in the pages: {errors}"


@pytest.fixture
def open_page(chromium: Browser) -> Iterator[OpenPage]:
    """Open a page of the suite's usual Chromium in a fresh profile."""
    yield from page_opener(chromium)


@pytest.fixture
def open_everyday_page(everyday_chromium: Browser) -> Iterator[OpenPage]:
    """Open a page of everyday Chromium (mDNS hiding on, no loopback) in a fresh profile."""
    yield from page_opener(everyday_chromium)


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def sign_in(page: Page, server: Server, name: str, password: str = PASSWORD,
            next_path: str | None = None) -> None:
    """Sign in through the start page's form, as a person would, and wait to be taken on."""
    query = f"?next={next_path}" if next_path else ""
    page.goto(f"{server.url}/{query}")
    page.fill("#login-username", name)
    page.fill("#login-password", password)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(f"{server.url}{next_path or '/'}")


def screenshot(page: Page, name: str) -> list[Path]:
    """Save the page at phone (390x844) and desktop (1280x800) sizes under
    artifacts/screenshots/ (git ignores it; CI keeps it), then restore the viewport."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    before = page.viewport_size
    paths = []
    for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
        page.set_viewport_size(size)  # type: ignore[arg-type]
        # Let the layout settle for the new size before the picture is taken.
        page.evaluate("() => new Promise((r) => requestAnimationFrame(() => "
                      "requestAnimationFrame(r)))")
        path = SCREENSHOTS / f"{name}-{label}.png"
        page.screenshot(path=str(path))
        paths.append(path)
    if before is not None:
        page.set_viewport_size(before)
    return paths


def join_room_page(page: Page, server: Server, name: str, room: str) -> str:
    """Sign `name` in and open the browser peer for `room`; returns the page's device id once
    it has joined."""
    sign_in(page, server, name, next_path=f"/rooms/{room}")
    page.wait_for_selector("#chat[data-ready]", timeout=60_000)
    chat = page.locator("#chat")
    assert chat.get_attribute("data-ready") == "yes", page.inner_text("#chat")
    device = chat.get_attribute("data-device")
    assert device
    return device


def send_from_page(page: Page, text: str) -> None:
    """Type `text` into the chat page's composer and send it, as a person would; returns once
    the composer is cleared (the page took it)."""
    page.fill("#composer-text", text)
    page.press("#composer-text", "Enter")
    expect(page.locator("#composer-text")).to_have_value("", timeout=60_000)


def browser_texts(page: Page) -> list[str]:
    """The texts of the messages a chat page holds, top to bottom. Their text content, not
    innerText: a message out of view is not laid out (`content-visibility: auto`), and
    innerText, which follows the layout, is empty for it."""
    texts: list[str] = page.locator("#messages .message .text").all_text_contents()
    return texts


def state_of(page: Page) -> dict[str, Any]:
    """What a chat page shows in its member list: user -> link state."""
    result: dict[str, Any] = page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('#members .member[data-state]')]"
        ".map((li) => [li.querySelector('.member-name').textContent, li.dataset.state]))")
    return result


# Navigate to the room `u` with no other room kept for the user `name` (so none rejoined).
ONE_ROOM_ONLY = """([u, name]) => {
  localStorage.setItem(`gibberish:${name}:rooms`, '{"rooms": []}');
  location.href = u;
}"""
