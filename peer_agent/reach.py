"""Staying in reach without the server: signals relayed by peers, rendezvous sessions, and
dialling cached peers' rendezvous addresses while the server is unreachable.

While the server is unreachable nothing is dropped: failed links keep retrying, their offers
and answers relayed by peers (`relay.py`), and an agent with no live link knocks at a cached
peer's rendezvous address (`rendezvous.py`) to get back into the mesh."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING, Any

from protocol import ProtocolError
from protocol.relay import Sender, SignalFrame, parse_signal_frame
from protocol.rendezvous import is_address

from .mesh import LinkState, PeerInfo

if TYPE_CHECKING:
    from .agent import Agent

log = logging.getLogger("gibberish.agent")

# With the server unreachable, a link down this long while other links work is dialled
# directly at the peer's rendezvous address: no relay has reached it.
DIRECT_DIAL_AFTER = 8.0
# Rendezvous attempts while the server is unreachable: first after about half a second,
# doubling to at most this, with jitter.
DIAL_INTERVAL_MAX = 5.0


class Reach:
    """The agent's ways back into the mesh when the server cannot help."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        # When each link went down, for DIRECT_DIAL_AFTER.
        self.down_since: dict[str, float] = {}
        # Devices whose last signal found no path at all: their offer went nowhere.
        self.unrouted: set[str] = set()
        self._hello_sent: dict[str, float] = {}

    def vouched_peer(self, device: str) -> PeerInfo | None:
        """The device as the server once vouched for it, or None."""
        vouched = self.agent.store.vouched_key(device)
        return None if vouched is None else PeerInfo(vouched[0], device, vouched[1])

    def send_direct(self, device: str, text: str) -> bool:
        """Send a frame to a neighbour: its rendezvous session if any, else its data channel."""
        agent = self.agent
        if agent.rendezvous is not None and agent.rendezvous.send(device, text):
            return True
        return agent.mesh.send(device, text)

    def neighbours(self) -> list[str]:
        """Devices with a direct path: a rendezvous session or an open data channel."""
        agent = self.agent
        devices = set(agent.rendezvous.sessions) if agent.rendezvous is not None else set()
        devices |= {d for d, link in agent.mesh.links.items()
                    if link.state == LinkState.CONNECTED}
        return sorted(devices)

    def on_path_frame(self, via: PeerInfo, text: str) -> None:
        """A frame from a rendezvous session: only relay frames travel there."""
        try:
            frame = parse_signal_frame(text)
        except ProtocolError as exc:
            self.agent.refuse_frame(via.user, via.device, str(exc))
            return
        self.on_relay_frame(via.user, via.device, frame)

    def on_relay_frame(self, user: str, device: str, frame: SignalFrame) -> None:
        """A relay frame from a neighbour: passed on, or taken if it is addressed to us."""
        mine = self.agent.relay.receive(Sender(user, device), frame)
        if mine is not None and mine.sender is not None:
            self.agent.spawn(self._on_relayed_signal(mine.sender, mine.kind, mine.payload))

    async def _on_relayed_signal(self, sender: Sender, kind: str,
                                 payload: dict[str, Any]) -> None:
        """A signal that came through a peer (or a rendezvous session) rather than the server.

        A sender the mesh does not know is taken in only if the server once vouched for its
        key (it may have restarted while the server is down)."""
        agent = self.agent
        if sender.device == agent.key.device_id:
            return
        if sender.device not in agent.roster:
            info = self.vouched_peer(sender.device)
            if info is None or info.user != sender.user or not agent.server.admits(info.user):
                agent.refused["unknown_sender"] += 1
                log.warning("relayed %s from unknown device %s refused", kind, sender.device[:8])
                agent.timeline.add(
                    "refused", f"refused a relayed {kind} from unknown device "
                    f"{sender.device[:8]}", reason="unknown_sender")
                return
            agent.roster[info.device] = info
            agent.mesh.update_roster(agent.roster.values())
            agent.push_state()
        if kind == "hello":
            address = payload.get("rendezvous")
            if isinstance(address, str) and agent.known.set_address(sender.device, address):
                agent.known.save()
            # It has no link to us: an offer of ours under way went to its previous process,
            # and a link we think open leads there too.
            agent.mesh.nudge(sender.device, force=True)
            agent.mesh.probe(sender.device)
            return
        await agent.mesh.handle_signal(sender.user, sender.device, kind, payload)

    def on_rendezvous_session(self, peer: PeerInfo, up: bool, address: str) -> None:
        """A rendezvous session opened or closed."""
        agent = self.agent
        agent.timeline.add(
            "rendezvous", f"rendezvous session with {peer.user} {'open' if up else 'closed'}",
            user=peer.user, device=peer.device, state="open" if up else "closed")
        if up:
            if address and is_address(address) and agent.known.set_address(peer.device, address):
                agent.known.save()
            self.on_new_path()
        agent.push_state()

    def on_new_path(self) -> None:
        """A neighbour appeared while links are down: offer where this side offers, and say
        hello where it waits for an offer, so the other side offers now."""
        agent = self.agent
        now = time.monotonic()
        address = agent.rendezvous.address if agent.rendezvous is not None else None
        for device, link in agent.mesh.links.items():
            if link.state == LinkState.CONNECTED:
                continue
            if link.offerer:
                agent.mesh.nudge(device, force=device in self.unrouted)
            elif now - self._hello_sent.get(device, 0.0) > 1.0:
                # "hello" is a relay-only kind: the server carries offers, answers and
                # candidates, and announces arrivals itself (peer_joined).
                self._hello_sent[device] = now
                agent.relay.send(device, "hello", {"rendezvous": address or ""})

    async def keep_in_reach(self) -> None:
        """While the server is unreachable, keep a way into the mesh: an agent with no live
        link and no rendezvous session dials the cached peers' rendezvous addresses until one
        answers; a link that stays down while others work is dialled directly."""
        agent = self.agent
        delay = 0.5
        while True:
            await asyncio.sleep(delay * random.uniform(0.75, 1.25))
            if agent.client.joined or agent.rendezvous is None:
                delay = 0.5
                continue
            if await self._dial_someone():
                delay = 0.5
            else:
                delay = min(DIAL_INTERVAL_MAX, delay * 2)

    async def _dial_someone(self) -> bool:
        agent = self.agent
        assert agent.rendezvous is not None
        sessions = agent.rendezvous.sessions
        links = agent.mesh.links
        if not sessions and all(link.state != LinkState.CONNECTED for link in links.values()):
            for known in agent.known.peers():
                if known.device != agent.key.device_id and known.rendezvous and (
                        await agent.rendezvous.dial(known.rendezvous, known.info)):
                    return True
            return False
        now = time.monotonic()
        for device, link in links.items():
            peer = agent.known.get(device)
            if (link.state == LinkState.CONNECTED or device in sessions or peer is None
                    or not peer.rendezvous
                    or now - self.down_since.get(device, now) < DIRECT_DIAL_AFTER):
                continue
            if await agent.rendezvous.dial(peer.rendezvous, peer.info):
                return True
        return False
