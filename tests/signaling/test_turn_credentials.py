"""Short-lived TURN credentials (the TURN REST scheme coturn checks with `use-auth-secret`):
minted from TURN_SECRET for the signed-in user, handed out at join and by GET /api/config,
never the secret itself. coturn accepting them is tested in tests/network/test_turn.py."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from signaling.config import ConfigError, parse_turn_settings
from signaling.turn import TurnSettings, ice_servers_for, turn_ice_server, turn_password
from tests.signaling.conftest import (
    Account,
    Peer,
    ServerProcess,
    connect_peer,
    register_account,
    start_server,
    unique_name,
)

SECRET = "a-secret-shared-with-coturn"
URLS = "turn:198.51.100.1:3478?transport=udp,turns:turn.example.org:5349?transport=tcp"


def test_the_credential_is_base64_hmac_sha1_of_the_username_keyed_by_the_secret() -> None:
    # RFC 2104 test case 2 for HMAC-SHA1: key "Jefe", data "what do ya want for nothing?".
    assert base64.b64decode(turn_password("Jefe", "what do ya want for nothing?")).hex() == (
        "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")


def test_a_minted_entry_names_the_expiry_and_the_user_and_lasts_the_ttl() -> None:
    settings = TurnSettings(urls=("turn:198.51.100.1:3478",), secret=SECRET, ttl=600)
    entry = turn_ice_server(settings, "alice", now=1_700_000_000.7)
    assert entry["urls"] == ["turn:198.51.100.1:3478"]
    assert entry["username"] == "1700000600:alice"
    expected = hmac.new(SECRET.encode(), b"1700000600:alice", hashlib.sha1).digest()
    assert entry["credential"] == base64.b64encode(expected).decode()
    assert SECRET not in str(entry)


def test_the_static_servers_come_first_and_the_turn_entry_only_with_a_secret() -> None:
    stun = [{"urls": "stun:stun.example.org"}]
    assert ice_servers_for(stun, None, "alice", 0) == stun
    settings = TurnSettings(urls=("turn:t.example.org",), secret=SECRET)
    servers = ice_servers_for(stun, settings, "alice", 0)
    assert servers[0] == stun[0] and servers[1]["username"] == f"{settings.ttl}:alice"


def test_turn_settings_are_read_from_the_environment_and_checked() -> None:
    assert parse_turn_settings(None, None, None) is None
    settings = parse_turn_settings(URLS, SECRET, "120")
    assert settings == TurnSettings(urls=tuple(URLS.split(",")), secret=SECRET, ttl=120)
    with pytest.raises(ConfigError, match="TURN_URLS and TURN_SECRET"):
        parse_turn_settings(URLS, None, None)
    with pytest.raises(ConfigError, match="TURN_URLS and TURN_SECRET"):
        parse_turn_settings(None, SECRET, None)
    with pytest.raises(ConfigError, match="TURN_URLS"):
        parse_turn_settings("stun:s.example.org", SECRET, None)
    for ttl in ("0", "30", "90.5", "soon"):
        with pytest.raises(ConfigError, match="TURN_TTL"):
            parse_turn_settings(URLS, SECRET, ttl)


@pytest.fixture(scope="module")
def turn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server configured with a TURN secret and a static STUN entry."""
    workdir: Path = tmp_path_factory.mktemp("turn-server")
    running = start_server(workdir, {"TURN_URLS": URLS, "TURN_SECRET": SECRET, "TURN_TTL": "300",
                                     "ICE_SERVERS": '[{"urls": "stun:198.51.100.1:3478"}]'})
    yield running
    running.stop()


def _check_minted(servers: list[dict[str, str]], user: str, before: float) -> None:
    assert servers[0] == {"urls": "stun:198.51.100.1:3478"}
    turn = servers[1]
    assert turn["urls"] == URLS.split(",")
    expiry, name = turn["username"].split(":", 1)
    assert name == user
    assert before + 300 <= int(expiry) <= time.time() + 300
    assert turn["credential"] == turn_password(SECRET, turn["username"])


def test_api_config_mints_credentials_for_the_signed_in_user(
        turn_server: ServerProcess) -> None:
    account: Account = register_account(turn_server.url, "alice")
    before = int(time.time())
    reply = account.get("/api/config")
    assert reply.status_code == 200
    body = reply.json()
    assert body["ice_ttl"] == 300
    _check_minted(body["ice_servers"], account.username, before)
    assert SECRET not in reply.text


def test_join_hands_out_freshly_minted_credentials(turn_server: ServerProcess) -> None:
    account = register_account(turn_server.url, "bob")
    before = int(time.time())
    peer: Peer = connect_peer(account)
    try:
        reply = peer.join(unique_name("room"))
        assert reply["ok"], reply
        _check_minted(reply["ice_servers"], account.username, before)
        assert reply["ice_ttl"] == 300
    finally:
        peer.client.disconnect()
