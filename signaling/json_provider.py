"""The server's JSON decoding: every request body goes through `protocol.strict_json`.

Flask decodes request bodies with the app's JSON provider; Werkzeug turns a ValueError from it
into a decoding failure, and the request class below turns that failure into a 400
`invalid_json` that says what is wrong. So a body nested 30,000 levels deep, a 5,000-digit
number or invalid UTF-8 gets a clear refusal wherever it is read: in a view, or earlier in a
rate limiter's key function."""

from __future__ import annotations

from typing import Any, NoReturn

from flask import Request
from flask.json.provider import DefaultJSONProvider

from protocol.strict_json import loads

from .errors import ApiError


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider, decoding with the strict policy (raises InvalidJson)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads(s)


class ApiRequest(Request):
    """A request whose body, when it is not the JSON asked for, is a 400 `invalid_json`."""

    def on_json_loading_failed(self, e: ValueError | None) -> NoReturn:
        if e is None:
            raise ApiError(400, "invalid_json",
                           "the request body must be JSON (Content-Type: application/json)")
        raise ApiError(400, "invalid_json", f"the request body is not accepted: {e}")
