"""Errors the server reports to clients, as `{"error": {"code", "message"}}` bodies or acks."""

from __future__ import annotations

from typing import Any

from protocol.errors import ProtocolError


class ApiError(Exception):
    """A request the server refuses, with an HTTP status and words the user can act on."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def error_body(exc: Exception) -> dict[str, Any]:
    """The JSON error for an ApiError or a ProtocolError (Socket.IO acks add `ok: False`)."""
    if isinstance(exc, ApiError):
        return exc.body()
    if isinstance(exc, ProtocolError):
        return {"error": {"code": exc.code, "message": str(exc)}}
    return {"error": {"code": "internal", "message": "internal error"}}
