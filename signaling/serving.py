"""Werkzeug's threaded server as the development server runs it (`python -m signaling`, and
bench/bare_relay.py beside it, so the two are measured alike)."""

from __future__ import annotations

import socket
from typing import Any

from flask import Flask
from werkzeug.serving import WSGIRequestHandler, make_server


class RequestHandler(WSGIRequestHandler):
    """Werkzeug's handler, but a connection whose WebSocket session has ended is closed, and
    small writes go out at once.

    simple-websocket ends a session on Werkzeug by raising ConnectionError; Werkzeug then reads
    the socket as a keep-alive HTTP connection and blocks on the client's last WebSocket frames
    (logging them as a bad request), so the client's close handshake stalls until it gives up.
    """

    def setup(self) -> None:
        super().setup()
        # Werkzeug leaves Nagle's algorithm on (gunicorn turns it off): a WebSocket frame
        # written while the client has not yet acknowledged the previous one (a signal relayed
        # just after an ack) then waits for the client's delayed ACK, 40 ms on Linux.
        if self.connection.family in (socket.AF_INET, socket.AF_INET6):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_dropped(self, error: BaseException,
                           environ: dict[str, Any] | None = None) -> None:
        self.close_connection = True
        super().connection_dropped(error, environ)


def serve(app: Flask, host: str, port: int, name: str) -> None:
    """Serve `app` on Werkzeug's threaded server until interrupted, after printing
    `<name> listening on http://host:port/` (tests and scripts read the port from it)."""
    server = make_server(host, port, app, threaded=True, request_handler=RequestHandler)
    print(f"{name} listening on http://{host}:{server.server_port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
