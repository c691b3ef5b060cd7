"""WSGI entry point for gunicorn (see Procfile): `gunicorn 'signaling.wsgi:app'`.

Importing it starts this process's presence heartbeat (signaling/presence.py); migrations run
separately (the Procfile's `release:` line), so a fresh database is not touched here."""

from . import create_app
from .presence import start_presence

app = create_app()
start_presence(app)
