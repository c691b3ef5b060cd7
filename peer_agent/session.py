"""What an agent keeps in its data dir to be itself across restarts: the device key (mode 0600)
and the server session, and signing in with either a password or the session kept."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from protocol import DeviceKey

from .signaling_client import Credentials, SignalingClient, SignInError

log = logging.getLogger("gibberish.agent")

KEY_FILE = "device.key"
SESSION_FILE = "session.json"

# How long a restart with a kept session waits for the server to sign it in.
SIGN_IN_TIMEOUT = 5.0


def server_address(url: str) -> tuple[str, int] | None:
    """The signaling server's host and port, from its URL (None if the URL has no host)."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return (parts.hostname, port) if parts.hostname else None


def load_or_create_key(data_dir: Path) -> DeviceKey:
    """The device key, made on first start and kept in the data dir with mode 0600."""
    path = data_dir / KEY_FILE
    if path.exists():
        return DeviceKey.from_private_bytes(path.read_bytes())
    key = DeviceKey.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes())
    return key


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


async def sign_in(client: SignalingClient, data_dir: Path, server_url: str, username: str,
                  password: str | None, register: bool) -> str:
    """Sign in with the password (keeping the session for next time), or with the session kept
    from last time when there is no password or the server cannot be reached; returns the user
    name the server knows. Raises SignInError when neither works."""
    session_path = data_dir / SESSION_FILE
    cached = json.loads(session_path.read_text()) if session_path.exists() else None
    if password is not None:
        try:
            # With a session kept from last time, a server that does not answer quickly
            # (frozen, overloaded) is not waited for: the kept session will do.
            async with asyncio.timeout(SIGN_IN_TIMEOUT if cached is not None else None):
                user = await client.sign_in(Credentials(username, password), register=register)
            _write_private(session_path, json.dumps({
                "server": server_url, "token": client.token, "username": user}))
            return user
        except SignInError:
            raise
        except (OSError, aiohttp.ClientError) as exc:
            # The server is unreachable (or died mid-request): fall back to the kept token.
            if cached is None:
                raise SignInError(f"cannot reach the server to sign in: {exc}") from exc
            log.warning("server unreachable (%s); using the session kept from last time", exc)
    if cached is None:
        raise SignInError("no password given and no session kept in the data dir")
    client.use_token(cached["token"], cached["username"])
    return str(cached["username"])
