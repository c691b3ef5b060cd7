"""The server-rendered pages, driven like a browser: a cookie session, CSRF tokens from the forms,
the history in display order with search and paging, and every piece of user text escaped."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest
import requests
from markupsafe import escape

from protocol import Envelope
from tests.signaling.conftest import (
    PASSWORD,
    Account,
    Peer,
    ServerProcess,
    signed_envelope,
    unique_name,
)

Accounts = Callable[[str], Account]
Peers = Callable[[Account], Peer]

CSRF_INPUT = re.compile(r'<input type="hidden" name="csrf_token" value="([^"]+)">')
MESSAGE_ID = re.compile(r'<li class="message" id="m-([0-9a-f]{32})-(\d+)">')
OLDER = re.compile(r'<a rel="prev" href="([^"]+)">')
NEWER = re.compile(r'<a rel="next" href="([^"]+)">')


class Browser:
    """A cookie-keeping HTTP session that fills in forms the way the pages' forms are sent."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()

    def get(self, path: str, **kwargs: object) -> requests.Response:
        return self.session.get(self.url + path, timeout=10, **kwargs)  # type: ignore[arg-type]

    def csrf_token(self) -> str:
        match = CSRF_INPUT.search(self.get("/").text)
        assert match, "no CSRF token on the start page"
        return match.group(1)

    def submit(self, path: str, fields: dict[str, str], *, csrf: bool = True) -> requests.Response:
        data = {"csrf_token": self.csrf_token(), **fields} if csrf else fields
        return self.session.post(self.url + path, data=data, allow_redirects=False, timeout=10)

    def sign_in(self, username: str, password: str = PASSWORD, next_: str = "",
                ) -> requests.Response:
        return self.submit("/login", {"username": username, "password": password,
                                      "next": next_})


@pytest.fixture
def browser(server: ServerProcess) -> Iterator[Browser]:
    made = Browser(server.url)
    yield made
    made.session.close()


def signed_in(browser: Browser, account: Account) -> Browser:
    assert browser.sign_in(account.username).status_code == 302
    return browser


def room_with(peers: Peers, account: Account, envelopes: list[dict[str, object]]) -> str:
    """Join the envelopes' room as `account` and upload them; returns the room's name."""
    room = str(envelopes[0]["room"])
    peer = peers(account)
    assert peer.join(room)["ok"]
    for start in range(0, len(envelopes), 100):
        results = peer.call("publish", {"envelopes": envelopes[start:start + 100]})["results"]
        assert all(r["ok"] for r in results), results
    return room


def shown_ids(page: str) -> list[tuple[str, int]]:
    return [(device, int(seq)) for device, seq in MESSAGE_ID.findall(page)]


def location_path(reply: requests.Response) -> str:
    location = urlsplit(reply.headers["Location"])
    return location.path + (f"?{location.query}" if location.query else "")


def test_sign_in_page_renders_both_forms_with_csrf_tokens(browser: Browser) -> None:
    reply = browser.get("/")
    assert reply.status_code == 200
    assert 'id="login-form"' in reply.text and 'id="register-form"' in reply.text
    assert len(CSRF_INPUT.findall(reply.text)) == 2


def test_register_form_creates_an_account_and_signs_in(browser: Browser) -> None:
    name = unique_name("page")
    reply = browser.submit("/register", {"username": name, "password": PASSWORD})
    assert reply.status_code == 302
    assert location_path(reply) == "/"
    start = browser.get("/")
    assert f'<span class="whoami">{name}</span>' in start.text
    assert "login-form" not in start.text


def test_sign_in_form_signs_in(browser: Browser, accounts: Accounts) -> None:
    account = accounts("page")
    reply = browser.sign_in(account.username)
    assert reply.status_code == 302
    assert f'<span class="whoami">{account.username}</span>' in browser.get("/").text


def test_sign_out_ends_the_session(browser: Browser, accounts: Accounts) -> None:
    signed_in(browser, accounts("page"))
    assert browser.submit("/logout", {}).status_code == 302
    assert "login-form" in browser.get("/").text


def test_form_post_without_a_csrf_token_is_refused(browser: Browser, accounts: Accounts) -> None:
    account = accounts("page")
    browser.get("/")  # a session exists, but the form's token is not sent
    reply = browser.submit("/login", {"username": account.username, "password": PASSWORD},
                           csrf=False)
    assert reply.status_code == 400
    assert "CSRF" in reply.text
    assert "login-form" in browser.get("/").text


def test_form_post_with_a_wrong_csrf_token_is_refused(browser: Browser) -> None:
    browser.get("/")
    reply = browser.submit("/register", {"csrf_token": "forged", "username": unique_name("x"),
                                         "password": PASSWORD}, csrf=False)
    assert reply.status_code == 400


def test_wrong_password_shows_an_error_with_status_401(
    browser: Browser, accounts: Accounts,
) -> None:
    reply = browser.sign_in(accounts("page").username, "not the password")
    assert reply.status_code == 401
    assert '<p class="flash error" role="alert">wrong user name or password</p>' in reply.text


def test_history_redirects_to_sign_in_when_signed_out(browser: Browser) -> None:
    reply = browser.get("/rooms/lobby/history", allow_redirects=False)
    assert reply.status_code == 302
    assert location_path(reply) == "/?next=/rooms/lobby/history"


def test_sign_in_returns_to_the_page_asked_for(browser: Browser, accounts: Accounts) -> None:
    reply = browser.sign_in(accounts("page").username, next_="/rooms/lobby/history")
    assert reply.status_code == 302
    assert location_path(reply) == "/rooms/lobby/history"


@pytest.mark.parametrize("target", ["//evil.example", "https://evil.example/",
                                    "//evil.example/rooms/lobby/history", "/\\evil.example",
                                    "javascript:alert(1)"])
def test_sign_in_never_redirects_off_site(
    server: ServerProcess, browser: Browser, accounts: Accounts, target: str,
) -> None:
    reply = browser.sign_in(accounts("page").username, next_=target)
    assert reply.status_code == 302
    location = urlsplit(reply.headers["Location"])
    assert location.netloc in ("", urlsplit(server.url).netloc)
    assert location.path.startswith("/") and not location.path.startswith("//")
    assert "evil.example" not in location.netloc


def test_open_redirect_guard_sends_to_the_start_page(browser: Browser, accounts: Accounts) -> None:
    reply = browser.sign_in(accounts("page").username, next_="//evil.example")
    assert location_path(reply) == "/"


def test_history_shows_messages_in_display_order(
    browser: Browser, accounts: Accounts, peers: Peers,
) -> None:
    room = unique_name("room")
    alice, bob = accounts("alice"), accounts("bob")
    uploads = [
        signed_envelope(alice, room, 1, lamport=5),
        signed_envelope(alice, room, 2, lamport=2),
        signed_envelope(bob, room, 1, lamport=2),
        signed_envelope(bob, room, 2, lamport=9),
        signed_envelope(alice, room, 3, lamport=1),
        signed_envelope(bob, room, 3, lamport=5),
    ]
    peer_of_bob = peers(bob)
    assert peer_of_bob.join(room)["ok"]
    room_with(peers, alice, uploads)  # alice uploads bob's messages on his behalf
    expected = sorted((Envelope.from_dict(e) for e in uploads), key=lambda e: e.order_key)
    page = signed_in(browser, alice).get(f"/rooms/{room}/history")
    assert page.status_code == 200
    assert shown_ids(page.text) == [(e.device, e.seq) for e in expected]


def test_history_shows_text_author_and_time(
    browser: Browser, accounts: Accounts, peers: Peers,
) -> None:
    alice = accounts("alice")
    room = room_with(peers, alice, [signed_envelope(alice, unique_name("room"), 1,
                                                    text="hello there")])
    page = signed_in(browser, alice).get(f"/rooms/{room}/history").text
    assert f'<span class="author">{alice.username}</span>' in page
    assert '<p class="text">hello there</p>' in page
    assert '<time datetime="2023-11-14T22:13:20+00:00">2023-11-14 22:13 UTC</time>' in page


def test_history_room_name_is_normalised_by_redirect(
    browser: Browser, accounts: Accounts,
) -> None:
    room = unique_name("room")
    reply = signed_in(browser, accounts("page")).get(f"/rooms/{room.upper()}/history?q=x",
                                                     allow_redirects=False)
    assert reply.status_code == 302
    assert location_path(reply) == f"/rooms/{room}/history?q=x"


def test_history_of_a_room_nobody_joined_says_so(browser: Browser, accounts: Accounts) -> None:
    room = unique_name("room")
    page = signed_in(browser, accounts("page")).get(f"/rooms/{room}/history")
    assert page.status_code == 200
    assert f"Nobody has joined #{room} yet." in page.text


def test_history_search_shows_only_matching_messages(
    browser: Browser, accounts: Accounts, peers: Peers,
) -> None:
    alice = accounts("alice")
    room = unique_name("room")
    texts = ["apple pie", "banana split", "APPLE juice", "cherry"]
    room_with(peers, alice, [signed_envelope(alice, room, i + 1, text=t)
                             for i, t in enumerate(texts)])
    page = signed_in(browser, alice).get(f"/rooms/{room}/history", params={"q": "apple"})
    device = alice.key.device_id
    assert shown_ids(page.text) == [(device, 1), (device, 3)]
    assert 'value="apple"' in page.text


def test_history_search_treats_percent_and_underscore_literally(
    browser: Browser, accounts: Accounts, peers: Peers,
) -> None:
    alice = accounts("alice")
    room = unique_name("room")
    texts = ["100% sure", "1000 sure", "snake_case", "snakeXcase"]
    room_with(peers, alice, [signed_envelope(alice, room, i + 1, text=t)
                             for i, t in enumerate(texts)])
    signed_in(browser, alice)
    device = alice.key.device_id
    percent = browser.get(f"/rooms/{room}/history", params={"q": "0%"}).text
    underscore = browser.get(f"/rooms/{room}/history", params={"q": "e_c"}).text
    assert shown_ids(percent) == [(device, 1)]
    assert shown_ids(underscore) == [(device, 3)]


def test_history_search_treats_a_backslash_literally(
    browser: Browser, accounts: Accounts, peers: Peers,
) -> None:
    alice = accounts("alice")
    room = unique_name("room")
    texts = [r"C:\temp\%", "C:temp", r"a\_b", "a_b"]
    room_with(peers, alice, [signed_envelope(alice, room, i + 1, text=t)
                             for i, t in enumerate(texts)])
    signed_in(browser, alice)
    device = alice.key.device_id
    path = browser.get(f"/rooms/{room}/history", params={"q": "\\temp\\%"}).text
    escape = browser.get(f"/rooms/{room}/history", params={"q": "\\_"}).text
    assert shown_ids(path) == [(device, 1)]
    assert shown_ids(escape) == [(device, 3)]


def test_history_search_without_a_match_says_so(
    browser: Browser, accounts: Accounts, peers: Peers,
) -> None:
    alice = accounts("alice")
    room = room_with(peers, alice, [signed_envelope(alice, unique_name("room"), 1)])
    page = signed_in(browser, alice).get(f"/rooms/{room}/history", params={"q": "zebra"})
    assert shown_ids(page.text) == []
    assert "No message matches “zebra”." in page.text


@pytest.fixture
def room_of_120(accounts: Accounts, peers: Peers) -> tuple[Account, str, list[tuple[str, int]]]:
    """A room of 120 messages uploaded out of display order; returns its display order."""
    alice = accounts("alice")
    room = unique_name("room")
    envelopes = [signed_envelope(alice, room, seq, lamport=(seq * 37) % 120 + 1)
                 for seq in range(1, 121)]
    room_with(peers, alice, envelopes)
    ordered = sorted((Envelope.from_dict(e) for e in envelopes), key=lambda e: e.order_key)
    return alice, room, [(e.device, e.seq) for e in ordered]


def test_paging_older_walks_the_history_without_gaps_or_repeats(
    browser: Browser, room_of_120: tuple[Account, str, list[tuple[str, int]]],
) -> None:
    account, room, ordered = room_of_120
    signed_in(browser, account)
    pages: list[list[tuple[str, int]]] = []
    path: str | None = f"/rooms/{room}/history"
    while path is not None:
        text = browser.get(path).text
        pages.insert(0, shown_ids(text))
        older = OLDER.search(text)
        path = html.unescape(older.group(1)) if older else None
    assert [len(p) for p in pages] == [20, 50, 50]
    assert [m for p in pages for m in p] == ordered


def test_paging_newer_walks_back_to_the_newest_page(
    browser: Browser, room_of_120: tuple[Account, str, list[tuple[str, int]]],
) -> None:
    account, room, ordered = room_of_120
    signed_in(browser, account)
    text = browser.get(f"/rooms/{room}/history").text
    assert NEWER.search(text) is None
    while (older := OLDER.search(text)) is not None:
        text = browser.get(html.unescape(older.group(1))).text
    pages = [shown_ids(text)]
    while (newer := NEWER.search(text)) is not None:
        text = browser.get(html.unescape(newer.group(1))).text
        pages.append(shown_ids(text))
    assert [len(p) for p in pages] == [20, 50, 50]
    assert [m for p in pages for m in p] == ordered


def test_paging_keeps_the_search(
    browser: Browser, accounts: Accounts, peers: Peers,
) -> None:
    alice = accounts("alice")
    room = unique_name("room")
    envelopes = [signed_envelope(alice, room, seq, text=("even" if seq % 2 == 0 else "odd")
                                 + f" {seq}") for seq in range(1, 121)]
    room_with(peers, alice, envelopes)
    signed_in(browser, alice)
    text = browser.get(f"/rooms/{room}/history", params={"q": "even"}).text
    seen = shown_ids(text)
    while (older := OLDER.search(text)) is not None:
        text = browser.get(html.unescape(older.group(1))).text
        seen = shown_ids(text) + seen
    assert [seq for _, seq in seen] == list(range(2, 121, 2))


@pytest.mark.parametrize("token", ["junk", "1.2", "a.b.c", "1.x.1.1", "\u00b2.abc.1",
                                   "99999999999999999999.abc.1", "9" * 5000 + ".abc.1"],
                         ids=["junk", "two parts", "letters", "four parts", "superscript two",
                              "past 2**63", "5000 digits"])
def test_malformed_page_token_shows_the_newest_page(
    browser: Browser, accounts: Accounts, peers: Peers, token: str,
) -> None:
    alice = accounts("alice")
    room = unique_name("room")
    room_with(peers, alice, [signed_envelope(alice, room, seq) for seq in (1, 2)])
    signed_in(browser, alice)
    for direction in ("before", "after"):
        page = browser.get(f"/rooms/{room}/history", params={direction: token})
        assert page.status_code == 200, (direction, page.status_code)
        assert shown_ids(page.text) == [(alice.key.device_id, 1), (alice.key.device_id, 2)]


@pytest.mark.parametrize("text", ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>",
                                  '"><svg onload=alert(1)>'])
def test_message_text_is_rendered_escaped(
    browser: Browser, accounts: Accounts, peers: Peers, text: str,
) -> None:
    alice = accounts("alice")
    room = room_with(peers, alice, [signed_envelope(alice, unique_name("room"), 1, text=text)])
    page = signed_in(browser, alice).get(f"/rooms/{room}/history").text
    assert f'<p class="text">{escape(text)}</p>' in page
    assert text not in page


def test_script_in_message_text_is_escaped_as_lt_script(
    browser: Browser, accounts: Accounts, peers: Peers,
) -> None:
    alice = accounts("alice")
    room = room_with(peers, alice, [signed_envelope(alice, unique_name("room"), 1,
                                                    text="<script>alert(1)</script>")])
    page = signed_in(browser, alice).get(f"/rooms/{room}/history").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>" not in page


def test_search_query_is_rendered_escaped(browser: Browser, accounts: Accounts) -> None:
    query = '"><script>alert(1)</script>'
    page = signed_in(browser, accounts("page")).get(
        f"/rooms/{unique_name('room')}/history", params={"q": query}).text
    assert "<script>" not in page
    assert f'value="{escape(query)}"' in page


def test_user_name_with_a_script_tag_is_refused_and_shown_escaped(browser: Browser) -> None:
    reply = browser.submit("/register", {"username": "<script>alert(1)</script>",
                                         "password": PASSWORD})
    assert reply.status_code == 400
    assert "user name must start with a letter or digit, not &#39;&lt;&#39;" in reply.text
    assert "<script>" not in reply.text
    assert "login-form" in browser.get("/").text


def test_user_name_with_a_script_tag_inside_is_refused_and_shown_escaped(
    browser: Browser,
) -> None:
    reply = browser.submit("/register", {"username": "bob<script>", "password": PASSWORD})
    assert reply.status_code == 400
    assert "&#39;&lt;&#39;" in reply.text
    assert "<script>" not in reply.text


def test_next_field_is_rendered_escaped(browser: Browser) -> None:
    page = browser.get("/", params={"next": '"><script>alert(1)</script>'}).text
    assert "<script>" not in page
    assert 'value="&#34;&gt;&lt;script&gt;' in page


def test_room_page_renders_for_a_signed_in_user(browser: Browser, accounts: Accounts) -> None:
    room = unique_name("room")
    page = signed_in(browser, accounts("page")).get(f"/rooms/{room}")
    assert page.status_code == 200
    assert f'<h1 class="room-title" id="room-title">#{room}</h1>' in page.text


MODULE_SRC = re.compile(
    r'<script type="module" src="(/static/v/([0-9a-f]{12})/chat/browser-main\.js)">')


def test_the_room_pages_modules_are_kept_by_the_browser_under_a_versioned_address(
    browser: Browser, accounts: Accounts,
) -> None:
    """The page names its modules under /static/v/<version>/: fresh for a year, so a page
    opened again loads them without asking; a module it imports by a relative path shares the
    version. Another version's address still gets the file, without the long lifetime, and the
    plain /static/ address still works."""
    page = signed_in(browser, accounts("assets")).get(f"/rooms/{unique_name('room')}").text
    found = MODULE_SRC.search(page)
    assert found, page
    main, version = found.group(1), found.group(2)
    assert f'href="/static/v/{version}/style.css"' in page
    kept = browser.get(main)
    assert kept.status_code == 200
    assert "immutable" in kept.headers["Cache-Control"]
    assert "max-age=31536000" in kept.headers["Cache-Control"]
    imported = browser.get(f"/static/v/{version}/chat/ui.js")  # as "./ui.js" from main
    assert imported.status_code == 200 and "immutable" in imported.headers["Cache-Control"]
    other = browser.get("/static/v/000000000000/chat/browser-main.js")
    assert other.status_code == 200 and other.content == kept.content
    assert "immutable" not in other.headers["Cache-Control"]
    plain = browser.get("/static/chat/browser-main.js")
    assert plain.status_code == 200 and plain.content == kept.content
    assert browser.get(f"/static/v/{version}/../../pyproject.toml").status_code == 404


def test_start_page_lists_the_rooms_the_user_joined(
    browser: Browser, accounts: Accounts, peers: Peers,
) -> None:
    alice = accounts("alice")
    room = room_with(peers, alice, [signed_envelope(alice, unique_name("room"), 1)])
    page = signed_in(browser, alice).get("/").text
    assert f'<a href="/rooms/{room}/history">#{room}</a>' in page
