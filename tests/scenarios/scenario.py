"""The room scenarios (room.json) made concrete, and what a run saw put in their terms.

`concrete(scenario, now_ms)` signs the envelopes and encodes the frames, so that the Python
room core and the browser peer are given the same bytes; `outcome(seen, names)` turns what a
runner saw (device ids, frame texts) into the scenario's words (names, frame types), for
comparing with `expect`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol import DeviceKey, Envelope
from protocol.channel import tag_room
from protocol.envelope import lamport_horizon
from protocol.frames import encode_frame

FILE = Path(__file__).with_name("room.json")
DATA: dict[str, Any] = json.loads(FILE.read_text())
ROOM: str = DATA["room"]
SCENARIOS: list[dict[str, Any]] = DATA["scenarios"]
# Past the horizon by a minute: the receiver's clock may run a little behind the test's.
PAST_HORIZON_MS = 60_000
# Frames that are the agent's (its network view), not the room core's: left out of `sent`.
NOT_THE_ROOMS = {"links"}
ME = "me"
"""The device the scenarios run on; what it posts is `me:<seq>`."""


def key_of(name: str) -> DeviceKey:
    """The device key of a named device: made from its name, so its id is fixed."""
    return DeviceKey.from_private_bytes(
        hashlib.sha256(b"gibberish scenario device " + name.encode()).digest())


@dataclass
class Device:
    name: str
    device: str
    public_key: str
    known: bool


@dataclass
class Concrete:
    """A scenario ready to run: the devices with their keys, and each step's inputs."""

    name: str
    devices: dict[str, Device]
    # {"link_up": device id, "user": name}, {"from": device id, "user": name, "text": frame}
    # or {"post": text}
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def names(self) -> dict[str, str]:
        """Device ids to names; the device the scenario runs on is `ME` when it is Python's
        (a browser names its own, made by WebCrypto)."""
        return {key_of(ME).device_id: ME, **{d.device: d.name for d in self.devices.values()}}

    def known(self) -> list[Device]:
        return [d for d in self.devices.values() if d.known]


def devices() -> dict[str, Device]:
    found = {}
    for name, spec in DATA["devices"].items():
        key = key_of(name)
        found[name] = Device(name, key.device_id, key.public_key_b64, bool(spec["known"]))
    return found


def envelope(spec: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """The envelope `spec` describes, as the JSON object a frame carries."""
    lamport = spec["lamport"]
    if lamport == "past_horizon":
        lamport = lamport_horizon(now_ms) + PAST_HORIZON_MS
    env = Envelope.create(key_of(spec["by"]), room=spec.get("room", ROOM),
                          author=spec.get("as", spec["by"]),
                          seq=spec["seq"], lamport=lamport, ts=now_ms, text=spec["text"])
    obj = env.to_dict()
    if spec.get("forged"):
        obj["text"] = obj["text"] + " (altered)"
    return obj


def frame_text(spec: dict[str, Any], room: str, now_ms: int) -> str:
    """A channel frame as a peer sends it: tagged with its room, envelopes signed."""
    frame = dict(spec)
    if "env" in frame:
        frame["env"] = envelope(frame["env"], now_ms)
    if "envs" in frame:
        frame["envs"] = [envelope(e, now_ms) for e in frame["envs"]]
    if "vector" in frame:
        frame["vector"] = {key_of(name).device_id: seq for name, seq in frame["vector"].items()}
    return tag_room(encode_frame(frame), room)


def concrete(scenario: dict[str, Any], now_ms: int) -> Concrete:
    found = devices()
    made = Concrete(scenario["name"], found)
    for step in scenario["steps"]:
        if "link_up" in step:
            who = found[step["link_up"]]
            made.steps.append({"link_up": who.device, "user": who.name})
        elif "post" in step:
            made.steps.append({"post": step["post"]})
        else:
            who = found[step["from"]]
            made.steps.append({"from": who.device, "user": who.name,
                               "text": frame_text(step["frame"], step.get("room", ROOM), now_ms)})
    return made


def _named(message_id: str, names: dict[str, str]) -> str:
    device, _, seq = message_id.partition(":")
    return f"{names.get(device, device)}:{seq}"


def outcome(seen: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """What a runner saw, in the scenario's terms. `seen` has `sent` ([device id, frame text]
    in order), `stored`, `shown` and `display` (message ids), `refused` (codes in order) and
    `asked_for_keys` (how many times)."""
    sent = []
    for device, text in seen["sent"]:
        frame = json.loads(text)
        if frame["t"] in NOT_THE_ROOMS:
            continue
        entry: dict[str, Any] = {"to": names.get(device, device), "t": frame["t"]}
        if frame["t"] == "ack":
            entry["ids"] = [_named(i, names) for i in frame["ids"]]
        elif frame["t"] == "msg":
            entry["ids"] = [_named(f"{frame['env']['device']}:{frame['env']['seq']}", names)]
        elif frame["t"] == "batch":
            entry["ids"] = [_named(f"{e['device']}:{e['seq']}", names) for e in frame["envs"]]
        sent.append(entry)
    return {
        "sent": sent,
        "stored": sorted(_named(i, names) for i in seen["stored"]),
        "shown": [_named(i, names) for i in seen["shown"]],
        "display": [_named(i, names) for i in seen["display"]],
        "refused": list(seen["refused"]),
        "asked_for_keys": bool(seen["asked_for_keys"]),
    }
