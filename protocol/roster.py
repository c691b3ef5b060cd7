"""Who is in a room, merged from the server's presence events in whatever order they arrive.

A peer learns the roster three ways: the `join` reply (a snapshot taken while its join ran),
`peer_joined` and `peer_left` events, and the sender of a relayed `signal` (the server vouches
for it). Nothing orders these against each other: a `peer_joined` or an offer can arrive before
the join reply that does not list its device yet, and a `peer_left` before a reply that still
does. Rebuilding the roster from the join reply loses the first kind (the pair is never linked);
this module merges them instead:

- Every entry carries the device's presence `epoch` (the server's presence row id, which grows
  with every join of a device). A newer epoch replaces an older one; an event about an older
  epoch than the one known is stale and ignored. Entries without an epoch (an older server)
  are taken as they come.
- `peer_left` leaves a tombstone, the epoch that left: an entry of that epoch or older, from a
  reply or event that arrives later, is stale.
- Each join request opens a `generation`. The join reply removes only entries learned before
  its request went out (a previous connection's roster) that it does not list and that are not
  kept for another reason (an open data channel); anything learned since is at least as fresh as
  the snapshot and stays.

static/chat/roster.js is the browser's port; tests run both through the same interleavings.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RosterEntry:
    """One device of the room, with the presence epoch and the generation it was learned in."""

    user: str
    device: str
    public_key: str
    epoch: int | None
    generation: int


def epoch_of(value: Any) -> int | None:
    """The presence epoch a server event gives, or None for a missing or malformed one."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53:
        return value
    return None


def kept_on_join(learned: Mapping[str, int], listed: Collection[str], generation: int,
                 keep: Collection[str]) -> set[str]:
    """The devices that stay after the join reply of `generation`: those it lists, those
    learned (`learned[device]` is the generation) since its request went out, and `keep`."""
    return {d for d, g in learned.items() if d in listed or g >= generation or d in keep}


class Roster:
    """The room's other devices for device `me`, merged by epoch and generation."""

    def __init__(self, me: str) -> None:
        self.me = me
        self.generation = 0
        self._entries: dict[str, RosterEntry] = {}
        self._gone: dict[str, int] = {}

    def __contains__(self, device: object) -> bool:
        return device in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, device: str) -> RosterEntry | None:
        return self._entries.get(device)

    def entries(self) -> list[RosterEntry]:
        """The devices listed, in the order they were first learned."""
        return list(self._entries.values())

    def begin_join(self) -> int:
        """A join request is going out: the generation its reply belongs to."""
        self.generation += 1
        return self.generation

    def joined(self, peer: Mapping[str, Any]) -> bool:
        """Take a `peer_joined` peer (or a signal's sender); whether the roster changed."""
        device, epoch = str(peer.get("device", "")), epoch_of(peer.get("epoch"))
        if not device or device == self.me:
            return False
        if epoch is not None and self._gone.get(device, -1) >= epoch:
            return False
        known = self._entries.get(device)
        if known is not None and known.epoch is not None and epoch is not None \
                and known.epoch > epoch:
            return False
        entry = RosterEntry(str(peer.get("user", "")), device, str(peer.get("public_key", "")),
                            epoch if epoch is not None else (known.epoch if known else None),
                            self.generation)
        self._entries[device] = entry
        return known is None or (known.user, known.public_key) != (entry.user, entry.public_key)

    def left(self, device: str, epoch: Any = None) -> bool:
        """Take a `peer_left`; whether the device was removed."""
        number = epoch_of(epoch)
        if number is not None:
            self._gone[device] = max(self._gone.get(device, -1), number)
        known = self._entries.get(device)
        if known is None:
            return False
        if number is not None and known.epoch is not None and known.epoch > number:
            return False
        del self._entries[device]
        return True

    def snapshot(self, peers: Iterable[Mapping[str, Any]], generation: int,
                 keep: Collection[str] = ()) -> None:
        """Merge the reply to the join request of `generation`; `keep` are devices to keep
        even if it does not list them (their data channel is open)."""
        listed = set()
        for peer in peers:
            self.joined(peer)
            listed.add(str(peer.get("device", "")))
        learned = {d: e.generation for d, e in self._entries.items()}
        stay = kept_on_join(learned, listed, generation, keep)
        for device in list(self._entries):
            if device not in stay:
                del self._entries[device]
