"""WSGI entry point for gunicorn (see Procfile): `gunicorn 'signaling.wsgi:app'`."""

from . import create_app
from .presence import clear_presence

app = create_app()
with app.app_context():
    clear_presence(app)
