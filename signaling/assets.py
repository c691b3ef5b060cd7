"""The page's static files at an address that names their version, kept by the browser for
good: `/static/v/<version>/<file>`, where the version is a hash of everything under static/.

A room page imports a score of JavaScript modules. Under their plain `/static/<file>` addresses
(Flask's own route, still served) the browser asks the server again for each one on every page
load, and the server answers each with "not modified": going from one room's page to another
cost as many requests as there are modules, and a busy server let the joins, offers and
answers of the pages opening wait behind them. Under a versioned address a module is fresh for
a year (`immutable`), so a page opened again loads them without asking; a new version (any
file changed) has a new address. Modules import one another by relative paths, so they all
share the page's version. An address naming another version (a page loaded before an upgrade)
still gets today's file, without the long lifetime."""

from __future__ import annotations

import hashlib
from pathlib import Path

from flask import Blueprint, Flask, current_app, send_from_directory, url_for
from werkzeug.wrappers import Response

KEEP_S = 365 * 24 * 3600

bp = Blueprint("assets", __name__)


def static_version(folder: Path) -> str:
    """A short hash of every file under `folder`, its path and its bytes."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@bp.get("/static/v/<version>/<path:filename>")
def asset(version: str, filename: str) -> Response:
    folder = current_app.static_folder
    assert folder is not None
    if version != current_app.config["STATIC_VERSION"]:
        return send_from_directory(folder, filename, max_age=0)
    response = send_from_directory(folder, filename, max_age=KEEP_S)
    response.cache_control.immutable = True
    return response


def asset_url(filename: str) -> str:
    """The versioned address of a file under static/ (templates: `asset_url('style.css')`)."""
    return url_for("assets.asset", version=current_app.config["STATIC_VERSION"],
                   filename=filename)


def init_app(app: Flask) -> None:
    assert app.static_folder is not None
    app.config.setdefault("STATIC_VERSION", static_version(Path(app.static_folder)))
    app.register_blueprint(bp)
    app.jinja_env.globals["asset_url"] = asset_url
