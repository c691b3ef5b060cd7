"""`POST /session/token`: the browser peer trades its page session for a bearer token, and
only a page of this site can ask for one (CSRF token in the `X-CSRFToken` header)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
import requests

from tests.signaling.conftest import Account, ServerProcess
from tests.signaling.test_pages import Browser, signed_in

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


@pytest.fixture
def page_session(server: ServerProcess) -> Iterator[Browser]:
    made = Browser(server.url)
    yield made
    made.session.close()


def room_page_csrf(browser: Browser) -> str:
    """The CSRF token the browser peer's page carries for its scripts."""
    match = CSRF_META.search(browser.get("/rooms/lobby").text)
    assert match, "no csrf-token meta on the room page"
    return match.group(1)


def ask_token(browser: Browser, csrf: str | None) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if csrf is not None:
        headers["X-CSRFToken"] = csrf
    return browser.session.post(browser.url + "/session/token", data="{}", headers=headers,
                                timeout=10)


def test_signed_in_page_gets_a_bearer_token_that_the_api_accepts(
    page_session: Browser, accounts: Callable[[str], Account],
) -> None:
    alice = accounts("alice")
    browser = signed_in(page_session, alice)
    reply = ask_token(browser, room_page_csrf(browser))
    assert reply.status_code == 200, reply.text
    assert reply.json()["user"] == {"username": alice.username}
    me = requests.get(browser.url + "/api/me", timeout=10,
                      headers={"Authorization": f"Bearer {reply.json()['token']}"})
    assert me.status_code == 200
    assert me.json()["user"]["username"] == alice.username


def test_token_request_without_the_csrf_header_is_refused(
    page_session: Browser, accounts: Callable[[str], Account],
) -> None:
    browser = signed_in(page_session, accounts("alice"))
    reply = ask_token(browser, None)
    assert reply.status_code == 400
    assert '"token"' not in reply.text


def test_token_request_when_signed_out_is_refused(page_session: Browser) -> None:
    csrf = page_session.csrf_token()
    reply = ask_token(page_session, csrf)
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "unauthorized"


def test_room_page_sends_a_content_security_policy_without_inline_scripts(
    page_session: Browser, accounts: Callable[[str], Account],
) -> None:
    browser = signed_in(page_session, accounts("alice"))
    reply = browser.get("/rooms/lobby")
    policy = reply.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert reply.headers["Cache-Control"] == "no-store"
