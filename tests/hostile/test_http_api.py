"""Hostile requests to the server's JSON API: each gets its status and error code, the server
logs no traceback, and the room's legitimate messages stay, once each."""

from __future__ import annotations

import pytest
import requests

from protocol import DeviceKey, b64encode
from tests.hostile.conftest import Witness, json_error
from tests.signaling.conftest import PASSWORD

JSON = {"Content-Type": "application/json"}
DEEP = "[" * 30_000 + "]" * 30_000  # under the 64 KiB cap

# (path, raw body, headers, status, error code)
BODIES = [
    pytest.param("/api/login", DEEP, JSON, 400, "invalid_json", id="login-nested-30000"),
    pytest.param("/api/register", DEEP, JSON, 400, "invalid_json", id="register-nested-30000"),
    pytest.param("/api/login", '{"a":' * 10_000 + "1" + "}" * 10_000, JSON, 400, "invalid_json",
                 id="login-nested-objects"),
    pytest.param("/api/register", '{"username": ' + "9" * 5000 + "}", JSON, 400,
                 "invalid_json", id="register-5000-digits"),
    pytest.param("/api/login", '{"username": 1e999}', JSON, 400, "invalid_json",
                 id="login-huge-float"),
    pytest.param("/api/login", b'{"username": "\xff\xfe"}', JSON, 400, "invalid_json",
                 id="login-invalid-utf8"),
    pytest.param("/api/login", '{"username": NaN, "password": "x"}', JSON, 400, "invalid_json",
                 id="login-nan"),
    pytest.param("/api/register", '{"username": "a", "username": "b", "password": "x"}', JSON,
                 400, "invalid_json", id="register-repeated-key"),
    pytest.param("/api/register", '{"username": "\\ud800", "password": "' + PASSWORD + '"}',
                 JSON, 400, "invalid_json", id="register-lone-surrogate"),
    pytest.param("/api/login", b'\xef\xbb\xbf{"username": "a"}', JSON, 400, "invalid_json",
                 id="login-byte-order-mark"),
    pytest.param("/api/login", "[]", JSON, 400, "invalid_json", id="login-array"),
    pytest.param("/api/login", "", JSON, 400, "invalid_json", id="login-empty"),
    pytest.param("/api/login", "username=a&password=b",
                 {"Content-Type": "application/x-www-form-urlencoded"}, 400, "invalid_json",
                 id="login-form-encoded"),
    pytest.param("/api/login", '{"username": {"$ne": null}, "password": "x"}', JSON, 401,
                 "bad_credentials", id="login-operator-object"),
    pytest.param("/api/login", '{"username": "alice", "password": "' + "p" * 2000 + '"}',
                 JSON, 401, "bad_credentials", id="login-long-password"),
    pytest.param("/api/login", '{"x": "' + "a" * 70_000 + '"}', JSON, 413, "too_large",
                 id="login-over-64k"),
    pytest.param("/api/register", '{"username": "a\\u0000b", "password": "' + PASSWORD + '"}',
                 JSON, 400, "invalid_name", id="register-nul-in-name"),
    pytest.param("/api/register", '{"username": "' + "n" * 1000 + '", "password": "'
                 + PASSWORD + '"}', JSON, 400, "invalid_name", id="register-long-name"),
    pytest.param("/api/register", '{"username": "<script>", "password": "' + PASSWORD + '"}',
                 JSON, 400, "invalid_name", id="register-markup-name"),
    pytest.param("/api/register", '{"username": "shortpw", "password": "1234567"}', JSON, 400,
                 "invalid_password", id="register-short-password"),
    pytest.param("/api/register", '{"username": "numpw", "password": 12345678}', JSON, 400,
                 "invalid_password", id="register-number-password"),
]


@pytest.mark.parametrize(("path", "body", "headers", "status", "code"), BODIES)
def test_hostile_body_gets_a_clear_error(witness: Witness, path: str, body: str | bytes,
                                         headers: dict[str, str], status: int,
                                         code: str) -> None:
    reply = requests.post(witness.server.url + path, data=body, headers=headers, timeout=10)
    assert reply.status_code == status, reply.text[:500]
    assert json_error(reply)["code"] == code


def test_deeply_nested_login_names_the_reason(witness: Witness) -> None:
    reply = requests.post(witness.server.url + "/api/login", data=DEEP, headers=JSON,
                          timeout=10)
    assert reply.status_code == 400
    assert "nested too deeply" in json_error(reply)["message"]


KEY = DeviceKey.generate()

DEVICE_BODIES = [
    pytest.param({"public_key": b64encode(b"\x01" * 33)}, "invalid_key", id="key-33-bytes"),
    pytest.param({"public_key": ["not", "a", "string"]}, "invalid_key", id="key-list"),
    pytest.param({"public_key": "+/+/" * 11}, "invalid_key", id="key-standard-base64"),
    pytest.param({"public_key": KEY.public_key_b64, "label": "x" * 65}, "invalid_label",
                 id="label-65-chars"),
]


@pytest.mark.parametrize(("body", "code"), DEVICE_BODIES)
def test_hostile_device_registration_is_400(witness: Witness, body: object, code: str) -> None:
    reply = witness.account.post("/api/devices", json=body)
    assert reply.status_code == 400, reply.text
    assert json_error(reply)["code"] == code


@pytest.mark.parametrize("authorization", [
    pytest.param(None, id="no-token"),
    pytest.param("Bearer x.y.z", id="forged-token"),
    pytest.param("Bearer " + "A" * 4000, id="huge-token"),
    pytest.param("Basic dXNlcjpwYXNz", id="basic-auth"),
])
def test_api_without_a_valid_token_is_401(witness: Witness, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    reply = requests.get(f"{witness.server.url}/api/rooms/{witness.room}/messages",
                         headers=headers, timeout=10)
    assert reply.status_code == 401
    assert json_error(reply)["code"] == "unauthorized"


@pytest.mark.parametrize(("room", "query", "status", "code"), [
    pytest.param("{room}", {"after": "abc"}, 400, "invalid_argument", id="after-not-a-number"),
    pytest.param("{room}", {"limit": "1e9"}, 400, "invalid_argument", id="limit-exponent"),
    pytest.param("{room}", {"after": "9" * 30}, 200, None, id="after-huge"),
    pytest.param("{room}", {"limit": "-5"}, 200, None, id="limit-negative"),
    pytest.param("%25_", {}, 400, "invalid_room", id="room-like-wildcards"),
    pytest.param("r" * 300, {}, 400, "invalid_room", id="room-300-chars"),
    pytest.param("a%00b", {}, 400, "invalid_room", id="room-nul"),
])
def test_history_api_refuses_hostile_arguments(witness: Witness, room: str,
                                               query: dict[str, str], status: int,
                                               code: str | None) -> None:
    reply = witness.account.get(f"/api/rooms/{room.format(room=witness.room)}/messages",
                                params=query)
    assert reply.status_code == status, reply.text
    if code is not None:
        assert json_error(reply)["code"] == code
