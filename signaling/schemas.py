"""Validated shapes of the Socket.IO requests (pydantic), with their size limits."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from protocol import MAX_BATCH, InvalidName, normalize_room
from protocol.rendezvous import publish_refusal

DEVICE_ID = r"^[0-9a-f]{32}$"
# host:port, IPv4/hostname or [IPv6]; what a peer publishes as its rendezvous address.
RENDEZVOUS = r"^(\[[0-9a-fA-F:.]{2,45}\]|[A-Za-z0-9.-]{1,100}):[0-9]{1,5}$"
MAX_SIGNAL_BYTES = 16_384


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class RoomField(Request):
    room: str = Field(max_length=256)

    @field_validator("room")
    @classmethod
    def _normalise(cls, value: str) -> str:
        try:
            return normalize_room(value)
        except InvalidName as exc:
            raise ValueError(str(exc)) from exc


class JoinRequest(RoomField):
    device: str = Field(pattern=DEVICE_ID)
    rendezvous: str | None = Field(default=None, pattern=RENDEZVOUS)

    @field_validator("rendezvous")
    @classmethod
    def _dialable(cls, value: str | None) -> str | None:
        # Only what some agent would dial (protocol.rendezvous): an IP address, never a
        # link-local, metadata, multicast or unspecified one.
        refusal = None if value is None else publish_refusal(value)
        if refusal is not None:
            raise ValueError(refusal)
        return value


class LeaveRequest(RoomField):
    pass


class SignalRequest(RoomField):
    """An offer, answer or ICE candidate for one other device of the room. The sender is not
    part of the request: the server sets it from the connection."""

    to: str = Field(pattern=DEVICE_ID)
    kind: Literal["offer", "answer", "candidate"]
    payload: dict[str, Any]

    @field_validator("payload")
    @classmethod
    def _bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value, separators=(",", ":"))) > MAX_SIGNAL_BYTES:
            raise ValueError(f"signal payload larger than {MAX_SIGNAL_BYTES} bytes")
        return value


class PublishRequest(Request):
    """One envelope, or a batch of up to MAX_BATCH; each is validated by protocol.Envelope."""

    envelope: dict[str, Any] | None = None
    envelopes: list[dict[str, Any]] | None = Field(default=None, max_length=MAX_BATCH)

    def items(self) -> list[dict[str, Any]]:
        if (self.envelope is None) == (self.envelopes is None):
            raise ValueError("send either 'envelope' or 'envelopes'")
        return [self.envelope] if self.envelope is not None else list(self.envelopes or [])


def first_error(exc: Exception) -> str:
    """A one-line description of a pydantic validation error, naming the field."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        items: list[Any] = errors()
        if items:
            loc = ".".join(str(p) for p in items[0].get("loc", ())) or "request"
            return f"{loc}: {items[0].get('msg', 'invalid')}"
    return str(exc)
