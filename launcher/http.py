"""JSON over HTTP to the launched processes: plain urllib, never through a proxy (everything
the launcher starts listens on this machine)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class HttpError(RuntimeError):
    """A JSON call failed: refused, timed out, or answered with an error `status`."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def call(method: str, url: str, body: dict[str, Any] | None = None, token: str | None = None,
         timeout: float = 10.0) -> Any:
    """One JSON request; returns the decoded answer or raises HttpError saying what failed."""
    request = urllib.request.Request(url, method=method)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with _OPENER.open(request, data=data, timeout=timeout) as reply:
            return json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as exc:
        with exc:
            detail = exc.read(300).decode(errors="replace").strip()
        raise HttpError(f"{method} {url}: HTTP {exc.code} {detail}".rstrip(), exc.code) from None
    except urllib.error.URLError as exc:
        raise HttpError(f"{method} {url}: {exc.reason}") from None
    except (OSError, ValueError) as exc:  # timeouts, resets, a body that is not JSON
        raise HttpError(f"{method} {url}: {exc!r}") from None
