"""Delivery that needs no particular link: when a device pulls what it lacks, from a linked
peer or from the server. Pure rules, the clock passed in; the caller carries out the effects.

A device learns that a message exists which it lacks in three ways, and pulls it:

- **a linked peer's digest** (`{"t": "vvd"}`) differs from the digest of its own vector: it
  pulls from that peer (not while a pull from it is under way);
- **a linked peer's version vector** holds an entry above its own: it pulls from that peer
  (not while a pull from it is under way: that answer comes later on the same ordered channel,
  so it covers the vector);
- **the server names ids** it lacks (the `stored` broadcast): it pulls from the server's
  history after SERVER_PULL_DELAY, unless a peer delivered them meanwhile. An id whose author
  has an open channel to us (the caller says which, `linked`) waits LINKED_SERVER_PULL_DELAY
  instead: its author sent it on that ordered channel, so it is on its way, and a channel that
  fails pulls from the author when it opens again. Under load a live message can take longer
  than SERVER_PULL_DELAY, and reading the server then fetched every message twice.

A pull from a peer is our version vector sent to it; the peer answers with batches, the last
with `more: false`. At most one pull per peer is under way: it ends with that last batch, when
the link goes down, or after PULL_TIMEOUT. A channel that opens and a gap in the log after a
live message pull too (a gap again after the pull under way).

Every `interval` seconds each linked peer gets our digest, so logs that differ are noticed at
a bounded cost (one small frame per link and interval). Fresh messages make it sooner, no
sooner than HINT_GAP after the last, for each linked peer that may lack them: one whose own
link report does not show an open channel to every author. So with the server down a message
travels within milliseconds through any peer linked to both sides.

Receipts (`ack`) name only what the receiver got from us, so they never name a message we lack.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeAlias

from .vector import VersionVector, holds_more

SYNC_INTERVAL = 3.0
"""Seconds between two digests on a link, by default."""
HINT_GAP = 0.25
"""Least seconds between two digests on a link when fresh messages ask for one sooner."""
PULL_TIMEOUT = 10.0
"""Seconds after which a pull whose answer never ended counts as over."""
SERVER_PULL_DELAY = 0.2
"""Seconds the server's word waits, so a message already on its way from a peer is not
fetched from the server as well."""
LINKED_SERVER_PULL_DELAY = 2.0
"""Seconds it waits for an id whose author has an open channel to us (see above)."""


@dataclass(frozen=True, slots=True)
class SendDigest:
    """Send the digest of our version vector to `device`."""

    device: str


@dataclass(frozen=True, slots=True)
class Pull:
    """Send our version vector to `device`: it answers with the envelopes we lack."""

    device: str


@dataclass(frozen=True, slots=True)
class PullServer:
    """Read the server's history after our last cursor."""


Effect: TypeAlias = SendDigest | Pull | PullServer


def lacking(ids: Iterable[str], ours: VersionVector) -> set[str]:
    """The ids `device:seq` above our vector: messages we lack (malformed ids are skipped)."""
    found: set[str] = set()
    for message_id in ids:
        device, _, seq = message_id.partition(":")
        if seq.isascii() and seq.isdigit() and int(seq) > ours.get(device):
            found.add(message_id)
    return found


@dataclass(slots=True)
class _Link:
    digest_at: float
    last_digest: float | None = None
    pulling_since: float | None = None
    again: bool = False


class CatchUp:
    """What a device pulls, from whom and when; `due(now)` says what the clock made due and
    `next_due()` when to ask again."""

    def __init__(self, interval: float = SYNC_INTERVAL, hint_gap: float = HINT_GAP,
                 pull_timeout: float = PULL_TIMEOUT,
                 server_delay: float = SERVER_PULL_DELAY) -> None:
        if interval <= 0:
            raise ValueError("the digest interval must be positive")
        self.interval = interval
        self.hint_gap = hint_gap
        self.pull_timeout = pull_timeout
        self.server_delay = server_delay
        self._links: dict[str, _Link] = {}
        self._named: set[str] = set()
        self._server_at: float | None = None
        self._named_linked: set[str] = set()  # named, their authors linked to us
        self._linked_at: float | None = None
        self._server_pulling = False

    # -- links ------------------------------------------------------------------------------

    def link_up(self, device: str, now: float) -> list[Effect]:
        """A data channel to `device` opened: pull from it, and compare digests from now on."""
        self._links[device] = _Link(digest_at=now + self.interval)
        return self._pull(device, now)

    def link_down(self, device: str) -> None:
        """The data channel to `device` closed: nothing more is sent or awaited on it."""
        self._links.pop(device, None)

    def pulling(self, device: str, now: float) -> bool:
        """Whether a pull from `device` is under way."""
        link = self._links.get(device)
        return link is not None and self._in_flight(link, now)

    # -- what the peers say -----------------------------------------------------------------

    def digest_received(self, device: str, theirs: str, ours: str, now: float) -> list[Effect]:
        """A linked peer's digest: if it differs from ours, one of us lacks something. We pull;
        if it is the peer that lacks, our vector tells it so and it pulls in turn."""
        link = self._links.get(device)
        if link is None or theirs == ours or self._in_flight(link, now):
            return []
        return self._pull(device, now)

    def vector_received(self, device: str, theirs: VersionVector, ours: VersionVector,
                        now: float) -> list[Effect]:
        """A linked peer's vector (its pull): besides answering it, pull if it holds more."""
        link = self._links.get(device)
        if link is None or not holds_more(theirs, ours) or self._in_flight(link, now):
            return []
        return self._pull(device, now)

    def answer_ended(self, device: str, now: float) -> list[Effect]:
        """The last batch of a peer's answer (`more: false`) arrived: the pull is over."""
        link = self._links.get(device)
        if link is None:
            return []
        link.pulling_since = None
        if link.again:
            link.again = False
            return self._pull(device, now)
        return []

    def gap_seen(self, device: str, now: float) -> list[Effect]:
        """A live message from `device` left a gap in the log: pull from it (again, once the
        pull under way ends)."""
        link = self._links.get(device)
        if link is None:
            return []
        if self._in_flight(link, now):
            link.again = True
            return []
        return self._pull(device, now)

    def fresh(self, source: str | None, authors: Iterable[str],
              reports: Mapping[str, frozenset[str] | None], now: float) -> None:
        """Fresh messages by `authors` arrived from `source` (a peer, or None for the server):
        a linked peer may lack them unless it reports an open channel to every author, so its
        digest is due soon. `reports` maps a peer to the devices it reports open channels to
        (None: no report yet)."""
        authors = set(authors)
        for device, link in self._links.items():
            if device == source:
                continue
            linked = reports.get(device)
            if all(a == device or (linked is not None and a in linked) for a in authors):
                continue
            earliest = now if link.last_digest is None else link.last_digest + self.hint_gap
            link.digest_at = min(link.digest_at, max(now, earliest))

    # -- what the server says ---------------------------------------------------------------

    def server_named(self, ids: Iterable[str], ours: VersionVector, now: float,
                     linked: Collection[str] = ()) -> None:
        """The server stored these ids; those we lack are fetched from it soon, unless a peer
        brings them first (later for ids whose author is one of the `linked` devices)."""
        missing = lacking(ids, ours)
        on_their_way = {m for m in missing if m.partition(":")[0] in linked}
        missing -= on_their_way
        if missing:
            self._named |= missing
            if self._server_at is None:
                self._server_at = now + self.server_delay
        if on_their_way:
            self._named_linked |= on_their_way
            if self._linked_at is None:
                self._linked_at = now + LINKED_SERVER_PULL_DELAY

    def linked(self) -> frozenset[str]:
        """The devices with an open channel to us (`link_up`, not yet `link_down`)."""
        return frozenset(self._links)

    def server_pull_ended(self) -> None:
        """The history read for a PullServer finished (or failed)."""
        self._server_pulling = False

    # -- the clock --------------------------------------------------------------------------

    def due(self, now: float, ours: VersionVector, server_up: bool) -> list[Effect]:
        """What is due at `now`: digests to send, and a server pull for named ids still lacking."""
        effects: list[Effect] = []
        for device in sorted(self._links):
            link = self._links[device]
            if now >= link.digest_at:
                effects.append(SendDigest(device))
                link.last_digest = now
                link.digest_at = now + self.interval
        if not server_up:
            # A server that is down cannot be read; once back, the join reads its history.
            self._named.clear()
            self._server_at = None
            self._named_linked.clear()
            self._linked_at = None
        due_now = ((self._named and self._server_at is not None and now >= self._server_at)
                   or (self._named_linked and self._linked_at is not None
                       and now >= self._linked_at))
        if due_now and not self._server_pulling:
            # Checked against our vector only now, once: the named ids can number as many as
            # the room's messages (a long upload), and the clock ticks on every event. One
            # read of the history after our cursor brings every id named so far.
            if lacking(self._named, ours) or lacking(self._named_linked, ours):
                effects.append(PullServer())
                self._server_pulling = True
            self._named.clear()
            self._server_at = None
            self._named_linked.clear()
            self._linked_at = None
        return effects

    def next_due(self) -> float | None:
        """When `due` next has something to say (None: only after new input)."""
        times = [link.digest_at for link in self._links.values()]
        if not self._server_pulling:
            if self._named and self._server_at is not None:
                times.append(self._server_at)
            if self._named_linked and self._linked_at is not None:
                times.append(self._linked_at)
        return min(times) if times else None

    # -- inside -----------------------------------------------------------------------------

    def _pull(self, device: str, now: float) -> list[Effect]:
        link = self._links.get(device)
        if link is None:
            return []
        link.pulling_since = now
        return [Pull(device)]

    def _in_flight(self, link: _Link, now: float) -> bool:
        return link.pulling_since is not None and now - link.pulling_since < self.pull_timeout
