"""Accounts over the JSON API: registration, sign-in, bearer tokens and device keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from itsdangerous import URLSafeTimedSerializer

from protocol import DeviceKey, b64encode
from tests.signaling.conftest import PASSWORD, Account, ServerProcess, unique_name


def post(server: ServerProcess, path: str, body: Any) -> requests.Response:
    return requests.post(server.url + path, json=body, timeout=10)


def register(server: ServerProcess, username: Any, password: Any = PASSWORD) -> requests.Response:
    return post(server, "/api/register", {"username": username, "password": password})


def login(server: ServerProcess, username: Any, password: Any = PASSWORD) -> requests.Response:
    return post(server, "/api/login", {"username": username, "password": password})


def me(server: ServerProcess, token: str) -> requests.Response:
    return requests.get(server.url + "/api/me", headers={"Authorization": f"Bearer {token}"},
                        timeout=10)


def test_register_answers_201_with_a_token_that_works_for_me(server: ServerProcess) -> None:
    name = unique_name("reg")
    reply = register(server, name)
    assert reply.status_code == 201, reply.text
    assert reply.json()["user"] == {"username": name}
    assert me(server, reply.json()["token"]).json()["user"] == {"username": name}


def test_login_returns_a_token_that_works_for_me(server: ServerProcess) -> None:
    name = unique_name("login")
    assert register(server, name).status_code == 201
    reply = login(server, name)
    assert reply.status_code == 200, reply.text
    assert reply.json()["user"] == {"username": name}
    answer = me(server, reply.json()["token"])
    assert answer.status_code == 200
    assert answer.json() == {"user": {"username": name}, "devices": []}


def test_registered_name_is_normalised_and_login_finds_it(server: ServerProcess) -> None:
    suffix = unique_name("x")
    reply = register(server, f"\uff22ob-{suffix}")  # FULLWIDTH LATIN CAPITAL LETTER B
    assert reply.status_code == 201, reply.text
    assert reply.json()["user"]["username"] == f"bob-{suffix}"
    signed_in = login(server, f"bob-{suffix}")
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json()["user"]["username"] == f"bob-{suffix}"


def test_registering_a_taken_name_is_409(server: ServerProcess) -> None:
    name = unique_name("dup")
    assert register(server, name).status_code == 201
    again = register(server, name, "another long password")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "name_taken"


def test_registering_a_taken_name_in_another_case_is_409(server: ServerProcess) -> None:
    name = unique_name("case")
    assert register(server, name).status_code == 201
    again = register(server, name.upper())
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "name_taken"
    assert name in again.json()["error"]["message"]


@pytest.mark.parametrize(("username", "words"), [
    ("", "must not be empty"),
    ("   ", "must not be empty"),
    ("-dash-first", "must start with a letter or digit"),
    ("has space", "may contain only letters, digits"),
    ("semi;colon", "may contain only letters, digits"),
    ("x" * 33, "too long: at most 32"),
    (42, "must be a string"),
    (None, "must be a string"),
])
def test_invalid_user_name_is_400_with_a_clear_message(
    server: ServerProcess, username: Any, words: str,
) -> None:
    reply = register(server, username)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["code"] == "invalid_name"
    assert words in error["message"]


@pytest.mark.parametrize("password", ["short", "1234567", "", 12345678, None])
def test_short_or_missing_password_is_400_with_a_clear_message(
    server: ServerProcess, password: Any,
) -> None:
    reply = register(server, unique_name("pw"), password)
    assert reply.status_code == 400
    assert reply.json()["error"] == {
        "code": "invalid_password", "message": "password must be 8 to 1024 characters"}


def test_password_of_exactly_eight_characters_is_accepted(server: ServerProcess) -> None:
    name = unique_name("pw8")
    assert register(server, name, "12345678").status_code == 201
    assert login(server, name, "12345678").status_code == 200


def test_wrong_password_and_unknown_user_get_the_same_401(server: ServerProcess) -> None:
    name = unique_name("known")
    assert register(server, name).status_code == 201
    wrong_password = login(server, name, "not the password")
    unknown_user = login(server, unique_name("nobody"))
    assert wrong_password.status_code == unknown_user.status_code == 401
    assert wrong_password.json() == unknown_user.json() == {
        "error": {"code": "bad_credentials", "message": "wrong user name or password"}}


def test_login_with_an_invalid_name_gets_the_same_401(server: ServerProcess) -> None:
    reply = login(server, "<not a name>")
    assert reply.status_code == 401
    assert reply.json()["error"]["message"] == "wrong user name or password"


def test_api_without_a_token_is_401(server: ServerProcess) -> None:
    reply = requests.get(server.url + "/api/me", timeout=10)
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("header", [
    "Bearer garbage",
    "Bearer ",
    "Bearer eyJ1IjoxLCJlIjowfQ.Zm9v.YmFy",
    "Basic dXNlcjpwYXNz",
    "Bearer " + "x" * 600,
])
def test_api_with_a_garbage_bearer_token_is_401(server: ServerProcess, header: str) -> None:
    reply = requests.get(server.url + "/api/me", headers={"Authorization": header}, timeout=10)
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "unauthorized"


def test_api_with_a_token_signed_by_another_server_is_401(
    server: ServerProcess, accounts: Callable[[str], Account],
) -> None:
    forged = URLSafeTimedSerializer("some other secret", salt="gibberish-api-token").dumps(
        {"u": 1, "e": 0})
    accounts("victim")  # so that user ids exist to be forged
    assert me(server, forged).status_code == 401


def test_me_lists_the_registered_devices(accounts: Callable[[str], Account]) -> None:
    account = accounts("devs")
    answer = account.get("/api/me").json()
    assert answer["devices"] == [
        {"id": account.key.device_id, "public_key": account.key.public_key_b64, "label": ""}]


def test_registering_the_same_device_key_twice_is_idempotent(
    accounts: Callable[[str], Account],
) -> None:
    account = accounts("idem")
    again = account.post("/api/devices", json={"public_key": account.key.public_key_b64})
    assert again.status_code == 201, again.text
    assert again.json()["device"] == {
        "id": account.key.device_id, "public_key": account.key.public_key_b64}
    assert len(account.get("/api/me").json()["devices"]) == 1


def test_device_label_is_kept(accounts: Callable[[str], Account]) -> None:
    account = accounts("label")
    key = DeviceKey.generate()
    added = account.post("/api/devices", json={"public_key": key.public_key_b64,
                                               "label": "laptop"})
    assert added.status_code == 201, added.text
    devices = {d["id"]: d for d in account.get("/api/me").json()["devices"]}
    assert devices[key.device_id]["label"] == "laptop"


def test_device_key_registered_to_another_user_is_409(
    accounts: Callable[[str], Account],
) -> None:
    owner, thief = accounts("owner"), accounts("thief")
    reply = thief.post("/api/devices", json={"public_key": owner.key.public_key_b64})
    assert reply.status_code == 409
    assert reply.json()["error"]["code"] == "key_taken"
    assert [d["id"] for d in thief.get("/api/me").json()["devices"]] == [thief.key.device_id]


@pytest.mark.parametrize("public_key", [
    "not base64!",
    b64encode(b"\x01" * 31),
    b64encode(b"\x01" * 33),
    "",
    12345,
    None,
])
def test_malformed_device_key_is_400(accounts: Callable[[str], Account], public_key: Any) -> None:
    reply = accounts("badkey").post("/api/devices", json={"public_key": public_key})
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "invalid_key"
    assert "public_key" in reply.json()["error"]["message"]


def test_device_label_over_64_characters_is_400(accounts: Callable[[str], Account]) -> None:
    reply = accounts("longlabel").post(
        "/api/devices", json={"public_key": DeviceKey.generate().public_key_b64,
                              "label": "x" * 65})
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "invalid_label"


@pytest.mark.parametrize("body", ['{"username": "x", ', "[1, 2]", '"text"', "null", ""])
def test_malformed_json_body_is_400(server: ServerProcess, body: str) -> None:
    reply = requests.post(server.url + "/api/register", data=body,
                          headers={"Content-Type": "application/json"}, timeout=10)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["code"] == "invalid_json"
    assert "JSON" in error["message"]


def test_unknown_api_path_is_a_json_404(server: ServerProcess) -> None:
    reply = requests.get(server.url + "/api/no-such-thing", timeout=10)
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "not_found"


def test_wrong_method_on_the_api_is_a_json_405(server: ServerProcess) -> None:
    reply = requests.get(server.url + "/api/login", timeout=10)
    assert reply.status_code == 405
    assert reply.json()["error"]["code"] == "bad_method"
