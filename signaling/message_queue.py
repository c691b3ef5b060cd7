"""The Redis message queue that lets several server processes share Socket.IO events."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import socketio

# python-socketio's listener doubles its wait after each failure up to 60 s, so after a long
# Redis outage events between processes could stay lost for a minute after Redis is back.
MAX_RETRY_SECONDS = 2.0


class RedisQueue(socketio.RedisManager):  # type: ignore[misc]
    """python-socketio's Redis manager with the listener's retry wait capped at
    MAX_RETRY_SECONDS, and connection attempts bounded, so a process resumes cross-process
    events within seconds of Redis returning and never hangs a request on an unreachable
    Redis. Events for this process's own clients are delivered locally even while Redis is
    down (the manager handles an emit here before publishing it)."""

    def __init__(self, url: str, channel: str) -> None:
        super().__init__(url, channel=channel, redis_options={
            "socket_connect_timeout": 2, "socket_keepalive": True})

    def _redis_listen_with_retries(self) -> Iterator[Any]:
        # The loop of socketio.RedisManager._redis_listen_with_retries (5.18), with the cap.
        # listen() only ends when the subscription is gone, so every pass subscribes anew.
        retry_sleep = 0.25
        while True:
            try:
                self._redis_connect()
                self.pubsub.subscribe(self.channel)
                retry_sleep = 0.25
                yield from self.pubsub.listen()
            except Exception as exc:
                self._get_logger().error(
                    "Cannot receive from redis... retrying in %.2f secs", retry_sleep,
                    extra={"redis_exception": str(exc)})
                time.sleep(retry_sleep)
                retry_sleep = min(retry_sleep * 2, MAX_RETRY_SECONDS)
