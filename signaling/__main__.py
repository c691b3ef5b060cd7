"""`python -m signaling --host H --port P`: migrate the database, then serve (development).

Production runs the same app under gunicorn (see Procfile)."""

from __future__ import annotations

import argparse
import logging

from flask_migrate import upgrade

from . import create_app
from .presence import start_presence
from .serving import serve


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
    serve(app, args.host, args.port, "Gibberish server")


if __name__ == "__main__":
    main()
