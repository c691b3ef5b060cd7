"""Step timestamps of messages through the agent, for finding where a message's time goes
(`python -m bench.mesh --trace`). Off unless GIBBERISH_TRACE_DIR names a directory: then each
step appends `<message id> <step> <seconds>` to `trace-<pid>.tsv` there, the seconds read from
`time.perf_counter()` (CLOCK_MONOTONIC on Linux, so one clock for every process of the machine).
Off, a mark costs one comparison."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from contextvars import ContextVar

from protocol import Envelope

_DIR = os.environ.get("GIBBERISH_TRACE_DIR")
_fd: int | None = None
if _DIR:
    _fd = os.open(os.path.join(_DIR, f"trace-{os.getpid()}.tsv"),
                  os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

ON = _fd is not None
"""Whether marks are written (callers test it before computing what they would mark)."""

request_started: ContextVar[float] = ContextVar("request_started", default=0.0)
"""When the HTTP request being handled reached its handler (set by the UI when ON)."""


def mark(message_id: str, step: str, at: float | None = None) -> None:
    """Write that `message_id` reached `step` now (or at `at`, a perf_counter reading)."""
    if _fd is None:
        return
    when = time.perf_counter() if at is None else at
    os.write(_fd, f"{message_id}\t{step}\t{when:.6f}\n".encode())


def marks(envelopes: Iterable[Envelope], step: str) -> None:
    """Mark `step` for each of `envelopes`, at one time."""
    now = time.perf_counter()
    for env in envelopes:
        mark(env.id, step, now)


def committed(message_id: str) -> None:
    """An own post was committed: when its request reached the UI, and now."""
    mark(message_id, "http_in", request_started.get())
    mark(message_id, "committed")


def durable(message_id: str, fsync: tuple[float, float, float]) -> None:
    """An own post is durable: its fsync's times (`GroupSync.last_run`), and now."""
    for step, at in zip(("fsync_asked", "fsync_start", "fsync_end"), fsync, strict=True):
        mark(message_id, step, at)
    mark(message_id, "durable")


last_datagram = 0.0
"""When the last UDP datagram reached aioice (ON only): the wire end of a frame's arrival."""
sending = ""
"""The message whose frames the data channels send now (ON only; marked `udp_out`)."""


def _watch_datagrams() -> None:
    """Note when datagrams arrive, and when the first of a traced message's leaves."""
    from aioice.ice import StunProtocol

    received, send = StunProtocol.datagram_received, StunProtocol.send_data

    def datagram_received(self: StunProtocol, data: bytes | str, addr: tuple[str, int]) -> None:
        global last_datagram
        last_datagram = time.perf_counter()
        received(self, data, addr)

    async def send_data(self: StunProtocol, data: bytes, addr: tuple[str, int]) -> None:
        await send(self, data, addr)
        if sending:
            mark(sending, "udp_out")

    StunProtocol.datagram_received = datagram_received  # type: ignore[method-assign]
    StunProtocol.send_data = send_data  # type: ignore[method-assign]


if ON:
    _watch_datagrams()
