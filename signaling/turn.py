"""Short-lived TURN credentials minted from a secret shared with the TURN server.

This is the "TURN REST API" scheme coturn implements with `use-auth-secret` and
`static-auth-secret`: the username is `<expiry as unix time>:<user>` and the credential is
base64(HMAC-SHA1(secret, username)). coturn recomputes the credential from the username and
refuses it once the expiry has passed, so a credential handed to a peer is worth nothing after
`ttl` seconds and nobody ever learns the secret. Pure code: the clock is passed in."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

DEFAULT_TURN_TTL = 3600
"""Seconds a minted credential stays valid (TURN_TTL); peers fetch new ones before then."""


@dataclass(frozen=True)
class TurnSettings:
    """The TURN servers to hand out (`TURN_URLS`), the secret shared with them
    (`TURN_SECRET`) and how long each minted credential lives (`TURN_TTL`, seconds)."""

    urls: tuple[str, ...]
    secret: str
    ttl: int = DEFAULT_TURN_TTL


def turn_username(user: str, expires_at: int) -> str:
    """The TURN REST username: the expiry (unix time, seconds) and the user, joined by ":"."""
    return f"{expires_at}:{user}"


def turn_password(secret: str, username: str) -> str:
    """The credential coturn expects for `username`: base64 of HMAC-SHA1 keyed with the secret."""
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def turn_ice_server(settings: TurnSettings, user: str, now: float) -> dict[str, Any]:
    """An RTCIceServer entry for `user`, valid from `now` for `settings.ttl` seconds."""
    username = turn_username(user, int(now) + settings.ttl)
    return {"urls": list(settings.urls), "username": username,
            "credential": turn_password(settings.secret, username)}


def ice_servers_for(static: list[dict[str, Any]], settings: TurnSettings | None, user: str,
                    now: float) -> list[dict[str, Any]]:
    """The ICE servers one signed-in user gets: the static `ICE_SERVERS`, then a freshly
    minted TURN entry when a shared secret is configured."""
    servers = list(static)
    if settings is not None:
        servers.append(turn_ice_server(settings, user, now))
    return servers
