"""Hostile input to the server's pages: timestamps no date type can hold, captured session
cookies, forged forms and hostile query strings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from protocol import Envelope
from protocol.limits import MAX_TS
from protocol.timestamps import DISPLAY_MAX_MS, DISPLAY_OVERFLOW
from tests.hostile.conftest import Witness
from tests.signaling.conftest import PASSWORD, unique_name
from tests.signaling.test_pages import Browser, signed_in
from tests.signaling.test_session_token import ask_token, room_page_csrf


@pytest.fixture
def browser(witness: Witness) -> Iterator[Browser]:
    made = Browser(witness.server.url)
    yield made
    made.session.close()


def test_history_shows_a_timestamp_past_any_date_type(witness: Witness,
                                                      browser: Browser) -> None:
    """ts = 2^53−1 is valid (docs/protocol.md) and stays in the append-only log for good; the
    history page used to answer 500 for the room from then on."""
    room = unique_name("room")
    assert witness.peer.join(room)["ok"]
    stamps = {1: MAX_TS, 2: DISPLAY_MAX_MS, 3: DISPLAY_MAX_MS + 1, 4: 0}
    for seq, ts in stamps.items():
        envelope = Envelope.create(witness.account.key, room=room,
                                   author=witness.account.username, seq=seq, lamport=seq,
                                   ts=ts, text=f"stamped {ts}").to_dict()
        assert witness.peer.call("publish", {"envelope": envelope})["ok"]
    signed_in(browser, witness.account)
    page = browser.get(f"/rooms/{room}/history")
    assert page.status_code == 200, page.text[:500]
    assert page.text.count(DISPLAY_OVERFLOW) == 2
    assert 'datetime="9999-12-31T23:59:59+00:00"' in page.text
    assert 'datetime="1970-01-01T00:00:00+00:00"' in page.text
    for ts in stamps.values():
        assert f"stamped {ts}" in page.text


def test_a_cookie_captured_before_sign_out_opens_nothing_after(witness: Witness,
                                                                browser: Browser) -> None:
    signed_in(browser, witness.account)
    history = f"/rooms/{witness.room}/history"
    assert browser.get(history, allow_redirects=False).status_code == 200
    token = ask_token(browser, room_page_csrf(browser)).json()["token"]
    captured = dict(browser.session.cookies)
    assert browser.submit("/logout", {}).status_code == 302

    thief = requests.Session()
    thief.cookies.update(captured)
    reply = thief.get(witness.server.url + history, allow_redirects=False, timeout=10)
    assert reply.status_code == 302
    assert reply.headers["Location"].startswith("/?next=")
    # The bearer token the page traded its session for dies with the session.
    api = requests.get(f"{witness.server.url}/api/rooms/{witness.room}/messages",
                       headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert api.status_code == 401
    thief.close()


def test_signing_out_one_browser_leaves_the_others_signed_in(witness: Witness,
                                                             browser: Browser) -> None:
    other = Browser(witness.server.url)
    try:
        signed_in(browser, witness.account)
        signed_in(other, witness.account)
        assert browser.submit("/logout", {}).status_code == 302
        page = other.get(f"/rooms/{witness.room}/history", allow_redirects=False)
        assert page.status_code == 200
    finally:
        other.session.close()


@pytest.mark.parametrize(("query", "status"), [
    pytest.param({"before": "garbage"}, 200, id="before-garbage"),
    pytest.param({"after": "9" * 40 + ".x.1"}, 200, id="after-huge"),
    pytest.param({"before": "1." + "d" * 5000 + ".1"}, 200, id="before-long-device"),
    pytest.param({"q": "%_\\"}, 200, id="search-like-wildcards"),
    pytest.param({"q": "x" * 10_000}, 200, id="search-10k"),
    pytest.param({"q": "<script>alert(1)</script>"}, 200, id="search-markup"),
])
def test_hostile_history_queries_render(witness: Witness, browser: Browser,
                                        query: dict[str, str], status: int) -> None:
    signed_in(browser, witness.account)
    page = browser.get(f"/rooms/{witness.room}/history", params=query)
    assert page.status_code == status
    assert "<script>alert" not in page.text


@pytest.mark.parametrize(("path", "status"), [
    pytest.param("/rooms/%00/history", 404, id="room-nul"),
    pytest.param("/rooms/" + "r" * 300 + "/history", 404, id="room-300-chars"),
    pytest.param("/rooms/..%2f..%2fetc/history", 404, id="room-traversal"),
])
def test_hostile_room_names_are_404(witness: Witness, browser: Browser, path: str,
                                    status: int) -> None:
    signed_in(browser, witness.account)
    assert browser.get(path).status_code == status


def test_sign_in_form_without_csrf_is_refused(witness: Witness, browser: Browser) -> None:
    reply = browser.submit("/login", {"username": witness.account.username,
                                      "password": PASSWORD}, csrf=False)
    assert reply.status_code == 400
    assert "CSRF" in reply.text


def test_sign_in_never_redirects_off_site(witness: Witness, browser: Browser) -> None:
    reply = browser.sign_in(witness.account.username, next_="//evil.example/x")
    assert reply.status_code == 302
    assert reply.headers["Location"] == "/"


def test_session_token_without_csrf_is_refused(witness: Witness, browser: Browser) -> None:
    signed_in(browser, witness.account)
    assert ask_token(browser, None).status_code == 400
