"""The device keys the local log (log.py) has learnt, with who vouched for each: this device,
the server, or a peer (whose claim never replaces the others')."""

from __future__ import annotations

from protocol import InvalidEnvelope, device_id_for, is_normalized_username, load_public_key
from protocol.envelope import DEVICE_ID
from protocol.sync import KnownDevice

from .log_file import LogFile

AUTHORITATIVE_SOURCES = frozenset({"self", "server"})
"""Sources of device keys that replace what peers said; a peer's claim never replaces them."""


class KeyStore(LogFile):
    """Device keys and their users."""

    # --- device keys ---------------------------------------------------------------------------

    def remember_key(self, device: str, user: str, public_key: str, source: str) -> bool:
        """Cache a device's key and user; True if the cache changed.

        The key must be the device's (InvalidEnvelope otherwise). `source` says who vouched for
        it ('self', 'server' or 'peer:<device>'): a key from the server or this device replaces
        any earlier entry, a peer's claim is kept only when nothing is known about the device.
        """
        if type(device) is not str or not DEVICE_ID.fullmatch(device):
            raise InvalidEnvelope("device id must be 32 lowercase hexadecimal digits")
        if not is_normalized_username(user):
            raise InvalidEnvelope(f"device {device}: user must be a user name in normal form")
        key_device = device_id_for(load_public_key(public_key).public_bytes_raw())
        if key_device != device:
            raise InvalidEnvelope(
                f"device {device}: the public key given belongs to device {key_device}"
            )
        now = int(self._clock() * 1000)
        with self._lock, self._write() as db:
            row = db.execute(
                "SELECT user, public_key, source FROM keys WHERE device = ?", (device,)
            ).fetchone()
            if row is not None:
                if row == (user, public_key, source) or source not in AUTHORITATIVE_SOURCES:
                    return False
            db.execute(
                "INSERT INTO keys (device, user, public_key, source, learnt_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (device) DO UPDATE SET user = excluded.user, "
                "public_key = excluded.public_key, source = excluded.source, "
                "learnt_at = excluded.learnt_at",
                (device, user, public_key, source, now),
            )
            return True

    def key_for(self, device: str) -> tuple[str, str] | None:
        """The (user, public_key) cached for a device, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT user, public_key FROM keys WHERE device = ?", (device,)
            ).fetchone()
        return None if row is None else (row[0], row[1])

    def vouched_key(self, device: str) -> tuple[str, str] | None:
        """The (user, public_key) of a device, only if the server (or this device itself)
        vouched for it; a peer's claim does not count. Rendezvous and relayed signals from a
        device unknown to the mesh are accepted only against such a key."""
        with self._lock:
            row = self._db.execute(
                "SELECT user, public_key FROM keys WHERE device = ? AND source IN "
                f"({', '.join('?' * len(AUTHORITATIVE_SOURCES))})",
                (device, *sorted(AUTHORITATIVE_SOURCES)),
            ).fetchone()
        return None if row is None else (row[0], row[1])

    def known_keys(self) -> list[KnownDevice]:
        """Every cached device key, by device id, to share with peers (`keys_frames_for`)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT device, user, public_key FROM keys ORDER BY device"
            ).fetchall()
        return [KnownDevice(*row) for row in rows]
