"""The room scenarios (tests/scenarios/room.json) against the Python room core: frames in, the
core's effects carried out on a real local log as the agent carries them out, what was sent,
stored, shown and refused compared with what the scenario expects. The browser peer runs the
same file (tests/browser/test_room_scenarios.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from peer_agent.log import LocalLog
from peer_agent.room_core import (
    Broadcast,
    Event,
    Peer,
    RefreshKeys,
    Refuse,
    RememberKeys,
    RoomCore,
    RoomEffect,
    Send,
    SendKeys,
    SendMissing,
    Show,
    Store,
)
from protocol import MAX_BATCH, ProtocolError, VersionVector
from protocol.catchup import CatchUp
from protocol.channel import parse_room_frame
from protocol.sync import batches_for, keys_frames_for
from tests.scenarios.scenario import ME, ROOM, SCENARIOS, Concrete, concrete, key_of, outcome


class Runner:
    """One device in ROOM: a room core on a real log, its effects carried out as
    `peer_agent.agent.Agent._run` carries them out, with the mesh and the UI recorded."""

    def __init__(self, log: LocalLog, made: Concrete) -> None:
        self.log = log
        self.core = RoomCore(ROOM, key_of("me").device_id, log, CatchUp())
        for d in made.known():
            log.remember_key(d.device, d.name, d.public_key, "server")
        self.sent: list[tuple[str, str]] = []
        self.shown: list[str] = []
        self.refused: list[str] = []
        self.asked_for_keys = 0

    def step(self, step: dict[str, Any], now_ms: int) -> None:
        now = time.monotonic()
        peer = Peer(step.get("user", ""), step.get("link_up") or step.get("from", ""))
        if "link_up" in step:
            self.run(self.core.link_up(peer, now))
        elif "post" in step:
            env = self.log.author_message(key_of(ME), ROOM, ME, step["post"], now_ms)
            self.run(self.core.posted(env))
        else:
            self.frame(peer, step["text"], now, now_ms)
        # The agent's catch-up loop runs whenever a step may have made something due.
        self.run(self.core.tick(now, server_up=False))

    def frame(self, peer: Peer, text: str, now: float, now_ms: int) -> None:
        # How the device (peer_agent/device.py `_on_frame`) hands a frame to its room: parsed
        # once, refused as not_in_room when it names a room this device is not in.
        try:
            room, frame = parse_room_frame(text)
        except ProtocolError as exc:
            self.run(self.core.refused(peer, exc))
            return
        if room != self.core.room:
            self.refused.append("not_in_room")
            return
        self.run(self.core.frame(peer, frame, now, now_ms))

    def run(self, effects: list[RoomEffect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                self.sent.append((effect.device, effect.frame.encode()))
            elif isinstance(effect, SendKeys):
                self.sent += [(effect.device, t) for t in keys_frames_for(self.log.known_keys())]
            elif isinstance(effect, Broadcast):
                self.sent.append(("*", effect.frame.encode()))
            elif isinstance(effect, SendMissing):
                self.send_missing(effect.device, effect.vector)
            elif isinstance(effect, Store):
                source = "server" if effect.peer is None else f"peer:{effect.peer.device}"
                fresh = self.log.add_many(effect.envelopes, source)
                self.run(self.core.stored(effect, fresh, time.monotonic()))
            elif isinstance(effect, Show):
                self.shown.append(effect.envelope.id)
            elif isinstance(effect, Refuse):
                self.refused.append(effect.code)
            elif isinstance(effect, Event) and effect.kind == "refused":
                self.refused.append(str(effect.fields["reason"]).split(":", 1)[0])
            elif isinstance(effect, RefreshKeys):
                self.asked_for_keys += 1
            elif isinstance(effect, RememberKeys):
                for k in effect.devices:
                    self.log.remember_key(k.id, k.user, k.public_key, effect.source)

    def send_missing(self, device: str, vector: VersionVector) -> None:
        """As `Agent._send_missing`: the log walked in batches, the last saying more: false."""
        after: tuple[str, int] | None = None
        while True:
            batch = self.log.missing_for(ROOM, vector, limit=MAX_BATCH, after=after)
            self.sent += [(device, t) for t in batches_for(batch, more_after=bool(batch))]
            if not batch:
                return
            after = (batch[-1].device, batch[-1].seq)

    def seen(self) -> dict[str, Any]:
        held = [env.id for env in self.log.page(ROOM, None, 500)]
        return {"sent": self.sent, "stored": held, "shown": self.shown, "display": held,
                "refused": self.refused, "asked_for_keys": self.asked_for_keys}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["name"] for s in SCENARIOS])
def test_the_room_core_does_what_the_scenario_says(scenario: dict[str, Any],
                                                    tmp_path: Path) -> None:
    now_ms = int(time.time() * 1000)
    made = concrete(scenario, now_ms)
    log = LocalLog(tmp_path / "log.sqlite3")
    try:
        runner = Runner(log, made)
        for step in made.steps:
            runner.step(step, now_ms)
        assert outcome(runner.seen(), made.names) == scenario["expect"]
    finally:
        log.close()
