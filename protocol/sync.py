"""Anti-entropy frames on a peer data channel: live messages, version vectors, catch-up batches
and device keys, built and parsed here with the frame size limit enforced.

Every frame is a JSON object whose "t" names its type:

- `{"t": "msg", "env": {…}}`: a live message;
- `{"t": "vv", "vector": {device: seq}}`: the sender's version vector, a request for what it
  lacks (see `protocol.catchup` for when it is sent); the other side answers with batches;
- `{"t": "vvd", "digest": "…"}`: a digest of the sender's vector (`vector_digest`), sent to
  each linked peer every few seconds and soon after fresh messages; a receiver whose own digest
  differs asks with its vector;
- `{"t": "batch", "envs": [{…}, …], "more": bool}`: at most MAX_BATCH envelopes; "more" is
  False on the last batch of an answer, so the receiver knows the answer is complete;
- `{"t": "keys", "devices": [{"id", "user", "public_key"}, …]}`: at most MAX_BATCH device keys
  the sender knows, so an author who is offline can still be verified.

Parsing validates structure only: envelopes still need their signatures verified, and a key
from a peer is a claim the receiver decides whether to trust.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

from .envelope import DEVICE_ID, Envelope
from .errors import FrameTooLarge, InvalidEnvelope
from .frames import encode_frame, parse_frame
from .keys import device_id_for, load_public_key
from .limits import MAX_BATCH, MAX_FRAME_BYTES, ROOM_TAG_BYTES
from .names import is_normalized_username
from .vector import DIGEST_BYTES, VersionVector

FRAME_TYPES = ("msg", "vv", "vvd", "batch", "keys")
"""The values of "t" a sync frame may have."""


@dataclass(frozen=True, slots=True)
class MsgFrame:
    """A live message, sent to every peer as soon as it is authored or first received."""

    t: ClassVar[str] = "msg"

    env: Envelope

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> MsgFrame:
        """The frame from its decoded JSON object; InvalidEnvelope naming what is wrong."""
        _check_keys(obj, _FIELDS["msg"], "'msg' frame")
        return cls(Envelope.from_dict(obj["env"]))

    def to_dict(self) -> dict[str, object]:
        """The frame as a JSON-ready dict."""
        return {"t": "msg", "env": self.env.to_dict()}

    def encode(self) -> str:
        """The frame as compact JSON, ready to send."""
        return encode_frame(self.to_dict())


@dataclass(frozen=True, slots=True)
class VectorFrame:
    """The sender's version vector; the receiver answers with the envelopes above it."""

    t: ClassVar[str] = "vv"

    vector: VersionVector

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> VectorFrame:
        """The frame from its decoded JSON object; InvalidEnvelope naming what is wrong."""
        _check_keys(obj, _FIELDS["vv"], "'vv' frame")
        return cls(VersionVector.from_dict(obj["vector"]))

    def to_dict(self) -> dict[str, object]:
        """The frame as a JSON-ready dict."""
        return {"t": "vv", "vector": self.vector.to_dict()}

    def encode(self) -> str:
        """The frame as compact JSON; FrameTooLarge if the vector names too many devices."""
        return encode_frame(self.to_dict())


@dataclass(frozen=True, slots=True)
class DigestFrame:
    """A digest of the sender's version vector: cheap to send often, and a receiver whose own
    digest differs answers with its vector."""

    t: ClassVar[str] = "vvd"

    digest: str

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> DigestFrame:
        """The frame from its decoded JSON object; InvalidEnvelope naming what is wrong."""
        _check_keys(obj, _FIELDS["vvd"], "'vvd' frame")
        return cls(obj["digest"])  # its type is checked on construction

    def __post_init__(self) -> None:
        if type(self.digest) is not str or not _DIGEST.fullmatch(self.digest):
            raise InvalidEnvelope(
                f"'vvd' frame: 'digest' must be {_DIGEST_CHARS} characters of base64url")

    def to_dict(self) -> dict[str, object]:
        """The frame as a JSON-ready dict."""
        return {"t": "vvd", "digest": self.digest}

    def encode(self) -> str:
        """The frame as compact JSON, ready to send."""
        return encode_frame(self.to_dict())


@dataclass(frozen=True, slots=True)
class BatchFrame:
    """Envelopes the receiver lacks, at most MAX_BATCH; `more` is False on an answer's last."""

    t: ClassVar[str] = "batch"

    envs: tuple[Envelope, ...]
    more: bool

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> BatchFrame:
        """The frame from its decoded JSON object; InvalidEnvelope naming what is wrong."""
        _check_keys(obj, _FIELDS["batch"], "'batch' frame")
        return _parse_batch(obj)

    def __post_init__(self) -> None:
        if len(self.envs) > MAX_BATCH:
            raise ValueError(f"a batch holds at most {MAX_BATCH} envelopes, got {len(self.envs)}")

    def to_dict(self) -> dict[str, object]:
        """The frame as a JSON-ready dict."""
        return {"t": "batch", "envs": [env.to_dict() for env in self.envs], "more": self.more}

    def encode(self) -> str:
        """The frame as compact JSON; FrameTooLarge if the envelopes do not fit (see
        `batches_for`, which packs them so they always do)."""
        return encode_frame(self.to_dict())


@dataclass(frozen=True, slots=True)
class KnownDevice:
    """A device key as a peer reports it: the id is checked against the key, the user is not.

    Constructing one raises InvalidEnvelope if the id is malformed or is not the key's id, the
    key is not an Ed25519 public key, or the user name is not in normal form.
    """

    id: str
    user: str
    public_key: str

    def __post_init__(self) -> None:
        if type(self.id) is not str or not DEVICE_ID.fullmatch(self.id):
            raise InvalidEnvelope("device key 'id' must be 32 lowercase hexadecimal digits")
        if not is_normalized_username(self.user):
            raise InvalidEnvelope(
                f"device key {self.id}: 'user' must be a user name in normal form"
            )
        if type(self.public_key) is not str:
            raise InvalidEnvelope(f"device key {self.id}: 'public_key' must be a string")
        try:
            raw = load_public_key(self.public_key).public_bytes_raw()
        except InvalidEnvelope as exc:
            raise InvalidEnvelope(f"device key {self.id}: {exc}") from exc
        if device_id_for(raw) != self.id:
            raise InvalidEnvelope(
                f"device key {self.id}: the public key belongs to device {device_id_for(raw)}"
            )

    def to_dict(self) -> dict[str, object]:
        """The device key as a JSON-ready dict."""
        return {"id": self.id, "user": self.user, "public_key": self.public_key}


@dataclass(frozen=True, slots=True)
class KeysFrame:
    """Device keys the sender knows, at most MAX_BATCH, each device once."""

    t: ClassVar[str] = "keys"

    devices: tuple[KnownDevice, ...]

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> KeysFrame:
        """The frame from its decoded JSON object; InvalidEnvelope naming what is wrong."""
        _check_keys(obj, _FIELDS["keys"], "'keys' frame")
        return _parse_keys(obj)

    def __post_init__(self) -> None:
        if len(self.devices) > MAX_BATCH:
            raise ValueError(
                f"a keys frame holds at most {MAX_BATCH} devices, got {len(self.devices)}"
            )

    def to_dict(self) -> dict[str, object]:
        """The frame as a JSON-ready dict."""
        return {"t": "keys", "devices": [device.to_dict() for device in self.devices]}

    def encode(self) -> str:
        """The frame as compact JSON; FrameTooLarge if the keys do not fit (see
        `keys_frames_for`, which packs them so they always do)."""
        return encode_frame(self.to_dict())


Frame: TypeAlias = MsgFrame | VectorFrame | DigestFrame | BatchFrame | KeysFrame

_DIGEST_CHARS = (DIGEST_BYTES * 8 + 5) // 6
_DIGEST = re.compile(f"[A-Za-z0-9_-]{{{_DIGEST_CHARS}}}")
_FIELDS = {
    "msg": frozenset({"t", "env"}),
    "vv": frozenset({"t", "vector"}),
    "vvd": frozenset({"t", "digest"}),
    "batch": frozenset({"t", "envs", "more"}),
    "keys": frozenset({"t", "devices"}),
}
_DEVICE_FIELDS = frozenset({"id", "user", "public_key"})
SYNC_FRAMES: dict[str, type[Frame]] = {
    cls.t: cls for cls in (MsgFrame, VectorFrame, DigestFrame, BatchFrame, KeysFrame)}


def parse_sync_frame(data: str | bytes) -> Frame:
    """Parse one sync frame from untrusted input, validating every field and envelope.

    Raises FrameTooLarge over MAX_FRAME_BYTES and InvalidEnvelope for anything malformed: bad
    JSON, an unknown "t", missing or extra keys, wrong types, more than MAX_BATCH envelopes or
    keys, or an invalid envelope (named by its position). Signatures are not checked here.
    (An agent parses every channel frame with `protocol.channel.parse_channel_frame`.)
    """
    obj = parse_frame(data)
    if not isinstance(obj, dict):
        raise InvalidEnvelope("sync frame must be a JSON object")
    kind = obj.get("t")
    if not isinstance(kind, str) or kind not in _FIELDS:
        raise InvalidEnvelope(
            f"unknown sync frame type {_short(kind)}: expected one of {', '.join(FRAME_TYPES)}"
        )
    return SYNC_FRAMES[kind].parse(obj)


def encode(frame: Frame) -> str:
    """Serialise a sync frame as compact JSON; raises FrameTooLarge if it exceeds MAX_FRAME_BYTES.

    A message frame always fits, and so do batch and keys frames packed by `batches_for` and
    `keys_frames_for`; a vector naming more than about 300 devices does not fit.
    """
    return frame.encode()


def batches_for(envelopes: Sequence[Envelope], more_after: bool) -> list[str]:
    """Pack envelopes, in the order given, into as few encoded batch frames as fit.

    Each frame holds at most MAX_BATCH envelopes and at most MAX_FRAME_BYTES; frames fill
    greedily, so each holds as many envelopes as fit. Every frame but the last says more=True;
    the last says `more_after`. No envelopes give one empty batch, which tells the peer there
    is nothing (more) for it.
    """
    # Each envelope is encoded once: a frame is its envelopes' JSON joined into the frame's,
    # the very text `BatchFrame.encode` gives (a sync answer is mostly this work).
    texts = [env.to_json() for env in envelopes]
    sizes = [_utf8_size(text) for text in texts]
    overhead = _utf8_size(encode(BatchFrame((), more=False))) + ROOM_TAG_BYTES
    groups = _pack(sizes, overhead)
    frames: list[str] = []
    for index, (start, end) in enumerate(groups):
        more = True if index < len(groups) - 1 else more_after
        frame = ('{"t":"batch","envs":[' + ",".join(texts[start:end]) + '],"more":'
                 + ("true" if more else "false") + "}")
        if overhead + sum(sizes[start:end]) + max(0, end - start - 1) > MAX_FRAME_BYTES:
            raise FrameTooLarge(f"frame is too large: at most {MAX_FRAME_BYTES} bytes allowed "
                                f"with its room tag, got {_utf8_size(frame) + ROOM_TAG_BYTES}")
        frames.append(frame)
    return frames


def keys_frames_for(devices: Sequence[KnownDevice]) -> list[str]:
    """Pack device keys, in the order given, into as few encoded keys frames as fit (none for
    no keys); each holds at most MAX_BATCH keys and at most MAX_FRAME_BYTES."""
    if not devices:
        return []
    sizes = [_utf8_size(encode_frame(device.to_dict())) for device in devices]
    groups = _pack(sizes, _utf8_size(encode(KeysFrame(()))) + ROOM_TAG_BYTES)
    return [encode(KeysFrame(tuple(devices[start:end]))) for start, end in groups]


def _pack(sizes: list[int], overhead: int) -> list[tuple[int, int]]:
    """Split items of the given JSON sizes into [start, end) runs that fit one frame each.

    A frame's size is `overhead` (the frame with an empty list) plus the items and the commas
    between them. An item too large for a frame alone still gets a frame, whose encoding
    then raises FrameTooLarge.
    """
    groups: list[tuple[int, int]] = []
    start, size = 0, overhead
    for index, item in enumerate(sizes):
        count = index - start
        cost = item + (1 if count else 0)
        if count and (count >= MAX_BATCH or size + cost > MAX_FRAME_BYTES):
            groups.append((start, index))
            start, size, cost = index, overhead, item
        size += cost
    groups.append((start, len(sizes)))
    return groups


def _parse_batch(obj: dict[str, object]) -> BatchFrame:
    envs = obj["envs"]
    if not isinstance(envs, list):
        raise InvalidEnvelope("'batch' frame: 'envs' must be a JSON array of envelopes")
    if len(envs) > MAX_BATCH:
        raise InvalidEnvelope(
            f"'batch' frame: too many envelopes: at most {MAX_BATCH}, got {len(envs)}"
        )
    more = obj["more"]
    if type(more) is not bool:
        raise InvalidEnvelope("'batch' frame: 'more' must be true or false")
    parsed: list[Envelope] = []
    for index, item in enumerate(envs):
        try:
            parsed.append(Envelope.from_dict(item))
        except InvalidEnvelope as exc:
            raise InvalidEnvelope(f"'batch' frame: envelope {index}: {exc}") from exc
    return BatchFrame(tuple(parsed), more)


def _parse_keys(obj: dict[str, object]) -> KeysFrame:
    devices = obj["devices"]
    if not isinstance(devices, list):
        raise InvalidEnvelope("'keys' frame: 'devices' must be a JSON array of device keys")
    if len(devices) > MAX_BATCH:
        raise InvalidEnvelope(
            f"'keys' frame: too many devices: at most {MAX_BATCH}, got {len(devices)}"
        )
    parsed: list[KnownDevice] = []
    seen: set[str] = set()
    for index, item in enumerate(devices):
        where = f"'keys' frame: device {index}"
        if not isinstance(item, dict):
            raise InvalidEnvelope(f"{where} must be a JSON object")
        _check_keys(item, _DEVICE_FIELDS, where)
        try:
            device = KnownDevice(item["id"], item["user"], item["public_key"])
        except InvalidEnvelope as exc:
            raise InvalidEnvelope(f"{where}: {exc}") from exc
        if device.id in seen:
            raise InvalidEnvelope(f"{where}: device {device.id} is listed more than once")
        seen.add(device.id)
        parsed.append(device)
    return KeysFrame(tuple(parsed))


def _check_keys(obj: dict[str, object], expected: frozenset[str], what: str) -> None:
    if obj.keys() == expected:
        return
    missing = sorted(name for name in expected if name not in obj)
    extra = sorted(_short(key) for key in obj if key not in expected)
    problems = []
    if missing:
        problems.append("missing " + ", ".join(repr(name) for name in missing))
    if extra:
        problems.append("unexpected " + ", ".join(extra[:5]))
    raise InvalidEnvelope(f"{what} has the wrong keys: " + "; ".join(problems))


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8"))


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
