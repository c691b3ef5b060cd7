"""The JSON the agent's UI reads: its state (server link, outbox, peers and their links), messages
with how far each of ours has got, pages of the log, the timeline and a message's path; and the
note a page may add to the timeline. Built from the agent's parts; decides nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from protocol import Envelope
from protocol.paging import order_token, parse_order_token

from .mesh import Link, LinkState
from .records import NOTE_MAX_CHARS
from .ui_input import UIError

if TYPE_CHECKING:
    from .agent import Agent


def message_dict(agent: Agent, env: Envelope) -> dict[str, Any]:
    """A message as the UI shows it, with its delivery if it is ours."""
    return {
        "id": env.id, "author": env.author, "device": env.device, "seq": env.seq,
        "lamport": env.lamport, "ts": env.ts, "text": env.text,
        "mine": env.device == agent.key.device_id,
        "delivery": delivery_dict(agent, env),
    }


def delivery_dict(agent: Agent, env: Envelope) -> dict[str, Any] | None:
    """How many peers acknowledged our message and whether the server has it (None if the
    message is not ours)."""
    if env.device != agent.key.device_id:
        return None
    return delivery_of(agent, env.id)


def delivery_of(agent: Agent, message_id: str) -> dict[str, Any]:
    """The delivery of our message `message_id` (see `delivery_dict`)."""
    d = agent.core.delivery.get(message_id)
    on_server = (d.server if d else False) or agent.store.on_server(agent.room, message_id)
    reached = len(d.peers) if d else 0
    return {"peers_reached": reached, "peers_total": len(agent.roster), "server": on_server}


def state(agent: Agent) -> dict[str, Any]:
    """The agent's state for `GET /api/state` and the UI's live updates."""
    links = agent.mesh.links if agent.mesh is not None else {}
    reported = agent.core.reported
    peers = []
    for device, info in sorted(agent.roster.items(), key=lambda kv: kv[1].user):
        link = links.get(device)
        peers.append({
            "user": info.user, "device": device,
            "state": link.state.value if link else LinkState.CONNECTING.value,
            "rtt_ms": link.rtt_ms if link else None,
            "path": _path_dict(link),
            "connect_ms": link.connect_ms if link else None,
            "on_server": device in agent.present,
            "links": [report.to_dict() for report in reported.get(device, ())],
        })
    # Devices of the room known from earlier rosters that are neither linked nor listed
    # by the server now: gone, or not back yet.
    offline = [{"user": k.user, "device": k.device}
               for k in sorted(agent.known.peers(), key=lambda k: (k.user, k.device))
               if k.device not in agent.roster and k.device != agent.key.device_id]
    client = agent.client
    if client.joined:
        server_state = "connected"
    else:
        server_state = "down" if client.unreachable else "connecting"
    rendezvous = agent.rendezvous
    return {
        "user": agent.user, "device": agent.key.device_id, "room": agent.room,
        "kind": agent.kind, "members": sorted(agent.members) if agent.members is not None else None,
        "rooms": agent.device.rooms_list(),
        "started_at": agent.started_at,
        "server": {"url": agent.config.server_url, "connected": client.joined,
                   "state": server_state, "outbox": agent.outbox.pending()},
        "rendezvous": {
            "address": rendezvous.address if rendezvous else None,
            "sessions": sorted(rendezvous.sessions) if rendezvous else [],
            "relayed": agent.relay.forwarded,
            "refused": rendezvous.refused if rendezvous else 0,
            "dials_refused": rendezvous.dials_refused if rendezvous else 0,
        },
        "peers": peers,
        "offline": offline,
        "refused": dict(agent.refused),
    }


def messages_page(agent: Agent, before: str | None, limit: int) -> dict[str, Any]:
    """Up to `limit` messages before the page token `before` (the newest without one), in the
    display order, and the token of the page before them."""
    key = parse_order_token(before)
    if before and key is None:
        raise UIError(400, "invalid_argument", "before must be a page token lamport.device.seq")
    rows = agent.store.page(agent.room, key, limit + 1)
    more = len(rows) > limit
    rows = rows[-limit:]
    older = order_token(rows[0].order_key) if more and rows else None
    return {"messages": [message_dict(agent, e) for e in rows], "older": older}


def events(agent: Agent, limit: int) -> dict[str, Any]:
    """The room's timeline, its last `limit` events oldest first."""
    return {"events": agent.timeline.recent(limit)}


def note(agent: Agent, text: str) -> dict[str, Any]:
    """A note in the timeline (the guided demo announces its steps with it)."""
    text = text.strip()
    if not text or len(text) > NOTE_MAX_CHARS:
        raise UIError(400, "invalid_argument", f"a note has 1 to {NOTE_MAX_CHARS} characters")
    return agent.timeline.add("note", text)


def message_path(agent: Agent, message_id: str) -> dict[str, Any]:
    """How a message this device holds travelled: its steps (docs/network-view.md)."""
    if agent.store.get(agent.room, message_id) is None:
        raise UIError(404, "not_found", "this device holds no such message")
    return {"id": message_id, "steps": agent.paths.steps(message_id)}


def _path_dict(link: Link | None) -> dict[str, Any] | None:
    """Which way an open link goes (protocol.links.LinkPath), or None without one."""
    path = link.path if link is not None else None
    return path.to_dict() if path is not None else None
