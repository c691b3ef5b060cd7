"""Hostile input to the server's pages: timestamps no date type can hold, forged forms and
hostile query strings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from protocol import Envelope
from protocol.limits import MAX_TS
from protocol.timestamps import DISPLAY_MAX_MS, DISPLAY_OVERFLOW
from tests.hostile.conftest import Witness
from tests.signaling.conftest import PASSWORD, unique_name
from tests.signaling.test_pages import Browser, signed_in


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
