"""The rooms a device joined, remembered in its data dir (`rooms.json`) so that a restart
joins them again, and the upgrade of a data dir from before rooms were remembered (one room
per agent): its rooms are read from its log and its roster cache."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from .roster import roster_file

log = logging.getLogger("gibberish.agent")

ROOMS_FILE = "rooms.json"
OLD_ROSTER_FILE = "peers.json"  # one room's roster cache, before rooms were remembered


def rooms_to_join(data_dir: Path, logged: Callable[[], list[str]],
                  asked: Iterable[str]) -> list[str]:
    """The rooms remembered, then those `asked` for (on the command line); a data dir from
    before rooms were remembered gives the rooms its log (`logged()`) and roster cache
    name."""
    remembered = load_rooms(data_dir)
    if remembered is None:
        remembered = logged()
        old = data_dir / OLD_ROSTER_FILE
        try:
            data = json.loads(old.read_text()) if old.exists() else None
        except (OSError, ValueError):
            data = None
        old_room = data.get("room") if isinstance(data, dict) else None
        if isinstance(old_room, str):
            if old_room not in remembered:
                remembered.append(old_room)
            target = data_dir / roster_file(old_room)
            if not target.exists():
                os.replace(old, target)
    wanted = list(remembered)
    for room in asked:
        if room not in wanted:
            wanted.append(room)
    return wanted


def load_rooms(data_dir: Path) -> list[str] | None:
    """The rooms remembered in `data_dir`, or None if none are (or the file is unreadable)."""
    path = data_dir / ROOMS_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        rooms = [r for r in data["rooms"] if isinstance(r, str)]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return None
    return rooms


def save_rooms(data_dir: Path, rooms: Iterable[str]) -> None:
    """Remember `rooms` in `data_dir`, replacing the file at once (written, synced, renamed)."""
    path = data_dir / ROOMS_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"rooms": list(rooms)}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
