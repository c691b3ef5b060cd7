"""`python -m signaling --host H --port P`: migrate the database, then serve (development).

Production runs the same app under gunicorn (see Procfile)."""

from __future__ import annotations

import argparse
import logging
import socket
from typing import Any

from flask_migrate import upgrade
from werkzeug.serving import WSGIRequestHandler, make_server

from . import create_app
from .presence import start_presence


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m signaling",
        description="Run the Gibberish signaling and history server (development server).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000,
                        help="port to bind (default 5000; 0 picks a free one)")
    parser.add_argument("--no-migrate", action="store_true",
                        help="do not apply database migrations at start")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = create_app()
    if not args.no_migrate:
        with app.app_context():
            upgrade()
    start_presence(app)
    # Werkzeug's threaded server, as socketio.run uses in threading mode; made here so that
    # --port 0 can pick a free port and print it (tests and scripts read this line).
    server = make_server(args.host, args.port, app, threaded=True,
                         request_handler=RequestHandler)
    print(f"Gibberish server listening on http://{args.host}:{server.server_port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
