"""Sync frames on a peer data channel: they round-trip, junk is refused with a reason, batches
always fit a frame, and two logs converge by trading vectors and batches as JSON text."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import (
    MAX_BATCH,
    MAX_FRAME_BYTES,
    MAX_LAMPORT,
    MAX_SEQ,
    MAX_TEXT_BYTES,
    MAX_TEXT_CHARS,
    MAX_TS,
    DeviceKey,
    Envelope,
    FrameTooLarge,
    InvalidEnvelope,
    MessageLog,
    VersionVector,
    display_sorted,
)
from protocol.limits import ROOM_TAG_BYTES
from protocol.sync import (
    BatchFrame,
    Frame,
    KeysFrame,
    KnownDevice,
    MsgFrame,
    VectorFrame,
    batches_for,
    encode,
    keys_frames_for,
    parse_sync_frame,
)

EnvelopeFactory = Callable[..., Envelope]  # the `make_envelope` fixture

# The largest envelope the limits allow: names of 4-byte letters, every integer at its maximum,
# and a text that JSON inflates the most (4-byte characters plus newlines, escaped as "\n").
WIDE_LETTER = "\U00020000"  # a CJK ideograph: a letter, 4 bytes of UTF-8, stable under NFKC
WIDEST_TEXT = "\U0001f600" * 2666 + "\n" * 1334


def widest_envelope(key: DeviceKey, seq: int = MAX_SEQ) -> Envelope:
    return Envelope.create(
        key,
        room=WIDE_LETTER * 64,
        author=WIDE_LETTER * 32,
        seq=seq,
        lamport=MAX_LAMPORT,
        ts=MAX_TS,
        text=WIDEST_TEXT,
    )


def known(key: DeviceKey, user: str = "alice") -> KnownDevice:
    return KnownDevice(key.device_id, user, key.public_key_b64)


def frame_json(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


# --- round trips ------------------------------------------------------------------------------


def test_message_frame_round_trips(make_envelope: EnvelopeFactory) -> None:
    frame = MsgFrame(make_envelope(text="grüße\nund tschüss"))
    assert parse_sync_frame(encode(frame)) == frame


def test_vector_frame_round_trips(alice_key: DeviceKey, bob_key: DeviceKey) -> None:
    frame = VectorFrame(VersionVector({alice_key.device_id: 3, bob_key.device_id: MAX_SEQ}))
    assert parse_sync_frame(encode(frame)) == frame


def test_empty_vector_frame_round_trips() -> None:
    assert encode(VectorFrame(VersionVector())) == '{"t":"vv","vector":{}}'
    assert parse_sync_frame('{"t":"vv","vector":{}}') == VectorFrame(VersionVector())


@pytest.mark.parametrize("more", [True, False])
def test_batch_frame_round_trips(make_envelope: EnvelopeFactory, more: bool) -> None:
    envs = tuple(make_envelope(seq=seq, lamport=seq, text=f"n°{seq}") for seq in range(1, 6))
    frame = BatchFrame(envs, more)
    assert parse_sync_frame(encode(frame)) == frame


def test_empty_batch_frame_round_trips() -> None:
    assert parse_sync_frame(encode(BatchFrame((), more=False))) == BatchFrame((), more=False)


def test_keys_frame_round_trips(alice_key: DeviceKey, bob_key: DeviceKey) -> None:
    frame = KeysFrame((known(alice_key, "alice"), known(bob_key, "bob")))
    assert parse_sync_frame(encode(frame)) == frame


def test_frames_parse_from_utf8_bytes_too(make_envelope: EnvelopeFactory) -> None:
    frame = MsgFrame(make_envelope(text="ünïcödé"))
    assert parse_sync_frame(encode(frame).encode("utf-8")) == frame


def test_encoded_frames_are_compact_json_with_the_type_first(
    make_envelope: EnvelopeFactory,
) -> None:
    env = make_envelope()
    assert MsgFrame(env).encode() == '{"t":"msg","env":' + env.to_json() + "}"
    assert BatchFrame((env,), more=True).encode() == (
        '{"t":"batch","envs":[' + env.to_json() + '],"more":true}'
    )


# --- junk is refused ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[]", "sync frame must be a JSON object"),
        ('"msg"', "sync frame must be a JSON object"),
        ("{}", "unknown sync frame type None"),
        ('{"t":"hello"}',
         "unknown sync frame type 'hello': expected one of msg, vv, vvd, batch, keys"),
        ('{"t":1}', "unknown sync frame type 1"),
        ('{"t":"vv"}', "'vv' frame has the wrong keys: missing 'vector'"),
        ('{"t":"vv","vector":{},"x":1}', "'vv' frame has the wrong keys: unexpected 'x'"),
        ('{"t":"vv","vector":[]}', "version vector must be a JSON object"),
        ('{"t":"vv","vector":{"abc":1}}', "version vector keys must be device ids"),
        ('{"t":"batch","envs":{},"more":false}', "'envs' must be a JSON array of envelopes"),
        ('{"t":"batch","envs":"[]","more":false}', "'envs' must be a JSON array of envelopes"),
        ('{"t":"batch","envs":[],"more":0}', "'more' must be true or false"),
        ('{"t":"batch","envs":[]}', "'batch' frame has the wrong keys: missing 'more'"),
        ('{"t":"batch","envs":[{}],"more":false}', "'batch' frame: envelope 0: envelope has"),
        ('{"t":"msg","env":null}', "envelope must be a JSON object"),
        ('{"t":"keys","devices":{}}', "'devices' must be a JSON array of device keys"),
        ('{"t":"keys","devices":[1]}', "'keys' frame: device 0 must be a JSON object"),
        ('{"t":"keys","devices":[{"id":"x"}]}', "device 0 has the wrong keys: missing 'public"),
        ('{"t":"vv","vector":{},"t":"vv"}', "'t' appears more than once"),
        ("{", "frame is not valid JSON"),
    ],
)
def test_malformed_frame_is_refused_with_its_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidEnvelope) as info:
        parse_sync_frame(text)
    assert reason in str(info.value)
    assert info.value.code == "invalid_envelope"


def test_invalid_envelope_in_a_batch_is_named_by_its_position(
    make_envelope: EnvelopeFactory,
) -> None:
    good = make_envelope().to_dict()
    bad = dict(good, seq=0)
    text = frame_json({"t": "batch", "envs": [good, good, bad], "more": False})
    with pytest.raises(InvalidEnvelope, match=r"envelope 2: envelope field 'seq' must be"):
        parse_sync_frame(text)


def test_batch_with_more_than_max_batch_envelopes_is_refused(
    make_envelope: EnvelopeFactory,
) -> None:
    # Tiny stand-ins: the count is checked before any envelope is looked at.
    text = frame_json({"t": "batch", "envs": [0] * (MAX_BATCH + 1), "more": False})
    assert len(text) <= MAX_FRAME_BYTES
    with pytest.raises(InvalidEnvelope, match=f"too many envelopes: at most {MAX_BATCH}, got 101"):
        parse_sync_frame(text)


def test_oversized_frame_is_refused_before_parsing() -> None:
    text = frame_json({"t": "msg", "env": {"text": "x" * MAX_FRAME_BYTES}})
    with pytest.raises(FrameTooLarge, match=f"at most {MAX_FRAME_BYTES} bytes"):
        parse_sync_frame(text)
    with pytest.raises(FrameTooLarge):
        parse_sync_frame(text.encode("utf-8"))


def test_keys_frame_with_a_key_of_another_device_is_refused(
    alice_key: DeviceKey, bob_key: DeviceKey
) -> None:
    forged = {"id": alice_key.device_id, "user": "alice", "public_key": bob_key.public_key_b64}
    text = frame_json({"t": "keys", "devices": [forged]})
    with pytest.raises(InvalidEnvelope, match=f"belongs to device {bob_key.device_id}"):
        parse_sync_frame(text)


def test_keys_frame_listing_a_device_twice_is_refused(alice_key: DeviceKey) -> None:
    entry = known(alice_key).to_dict()
    with pytest.raises(InvalidEnvelope, match="listed more than once"):
        parse_sync_frame(frame_json({"t": "keys", "devices": [entry, entry]}))


def test_keys_frame_with_a_malformed_key_or_user_is_refused(alice_key: DeviceKey) -> None:
    entry = known(alice_key).to_dict()
    for field, value in [("public_key", "not a key"), ("user", "Alice"), ("id", "A" * 32)]:
        text = frame_json({"t": "keys", "devices": [dict(entry, **{field: value})]})
        with pytest.raises(InvalidEnvelope, match="device 0"):
            parse_sync_frame(text)


def test_keys_frame_with_more_than_max_batch_devices_is_refused() -> None:
    text = frame_json({"t": "keys", "devices": [0] * (MAX_BATCH + 1)})
    with pytest.raises(InvalidEnvelope, match="too many devices"):
        parse_sync_frame(text)


def test_frames_over_max_batch_cannot_be_built(make_envelope: EnvelopeFactory) -> None:
    env = make_envelope()
    with pytest.raises(ValueError, match="at most 100 envelopes"):
        BatchFrame((env,) * (MAX_BATCH + 1), more=False)


def test_a_vector_naming_too_many_devices_does_not_fit_a_frame() -> None:
    # A known limit: a vector frame holds about 300 to 440 devices, far below
    # MAX_VECTOR_DEVICES, so encoding says so instead of sending an unreadable frame.
    vector = VersionVector({f"{n:032x}": MAX_SEQ for n in range(400)})
    with pytest.raises(FrameTooLarge):
        encode(VectorFrame(vector))


# --- batches always fit -------------------------------------------------------------------------


def test_the_largest_valid_envelope_fits_in_one_frame(alice_key: DeviceKey) -> None:
    env = widest_envelope(alice_key)
    assert len(env.text) == MAX_TEXT_CHARS
    assert len(env.text.encode("utf-8")) <= MAX_TEXT_BYTES
    for text in (encode(MsgFrame(env)), *batches_for([env], more_after=False)):
        assert len(text.encode("utf-8")) <= MAX_FRAME_BYTES - 2000
        assert parse_sync_frame(text) in (MsgFrame(env), BatchFrame((env,), more=False))


def test_batches_for_packs_many_varied_envelopes_into_frames_that_fit(
    alice_key: DeviceKey, bob_key: DeviceKey
) -> None:
    texts = ["hi", "x" * MAX_TEXT_CHARS, "é" * MAX_TEXT_CHARS, '"\\' * 2000, "ok " * 30]
    envs: list[Envelope] = []
    for n in range(500):
        key = (alice_key, bob_key)[n % 2]
        if n % 97 == 0:
            envs.append(widest_envelope(key, seq=n + 1))
            continue
        text = texts[n % len(texts)] if n % 3 else f"message {n}"
        envs.append(
            Envelope.create(
                key, room="lobby", author="alice", seq=n + 1, lamport=n, ts=n, text=text
            )
        )

    frames = batches_for(envs, more_after=True)

    parsed = [parse_sync_frame(text) for text in frames]
    assert all(isinstance(frame, BatchFrame) for frame in parsed)
    batches = [frame for frame in parsed if isinstance(frame, BatchFrame)]
    assert [env for batch in batches for env in batch.envs] == envs
    # Each envelope is encoded once and joined into its frame: the very text of the frame.
    assert frames == [encode(BatchFrame(batch.envs, batch.more)) for batch in batches]
    assert all(len(text.encode("utf-8")) <= MAX_FRAME_BYTES for text in frames)
    assert all(1 <= len(batch.envs) <= MAX_BATCH for batch in batches)
    assert all(batch.more for batch in batches)
    # Greedy: the first envelope of each frame would not have fitted in the frame before it.
    for text, following in zip(frames, batches[1:], strict=False):
        previous = parse_sync_frame(text)
        assert isinstance(previous, BatchFrame)
        grown = BatchFrame(previous.envs + following.envs[:1], more=True).to_dict()
        assert len(previous.envs) == MAX_BATCH or len(frame_json(grown).encode()) > (
            MAX_FRAME_BYTES
        )


def test_batches_for_fills_each_frame_with_as_many_small_envelopes_as_fit(
    alice_key: DeviceKey,
) -> None:
    # The smallest envelopes take about 200 bytes, so about 80 fit in a frame: for batches the
    # byte limit always binds before MAX_BATCH does.
    envs = [
        Envelope.create(alice_key, room="a", author="b", seq=seq, lamport=1, ts=0, text="x")
        for seq in range(1, 251)
    ]
    texts = batches_for(envs, more_after=False)
    frames = [parse_sync_frame(text) for text in texts]
    sizes = [len(frame.envs) for frame in frames if isinstance(frame, BatchFrame)]
    assert sum(sizes) == 250 and len(sizes) == 4
    # Each leaves ROOM_TAG_BYTES free for its room tag (protocol.channel.tag_room).
    assert all(MAX_FRAME_BYTES - ROOM_TAG_BYTES - 300 < len(text.encode())
               <= MAX_FRAME_BYTES - ROOM_TAG_BYTES for text in texts[:-1])
    assert [frame.more for frame in frames if isinstance(frame, BatchFrame)] == [
        True, True, True, False
    ]


def test_batches_for_nothing_is_one_empty_batch_saying_whether_more_follows() -> None:
    assert batches_for([], more_after=False) == ['{"t":"batch","envs":[],"more":false}']
    assert batches_for([], more_after=True) == ['{"t":"batch","envs":[],"more":true}']


def test_keys_frames_for_packs_keys_into_frames_that_fit() -> None:
    keys = [
        DeviceKey.from_private_bytes(hashlib.sha256(f"device {n}".encode()).digest())
        for n in range(250)
    ]
    devices = [known(key, WIDE_LETTER * 32 if n % 2 else f"user{n}") for n, key in enumerate(keys)]
    frames = keys_frames_for(devices)
    parsed = [parse_sync_frame(text) for text in frames]
    assert [d for frame in parsed if isinstance(frame, KeysFrame) for d in frame.devices] == devices
    assert all(len(text.encode("utf-8")) <= MAX_FRAME_BYTES for text in frames)


def test_keys_frames_for_holds_at_most_max_batch_keys_per_frame() -> None:
    keys = [
        DeviceKey.from_private_bytes(hashlib.sha256(f"device {n}".encode()).digest())
        for n in range(250)
    ]
    frames = [parse_sync_frame(text) for text in keys_frames_for([known(k) for k in keys])]
    assert [len(frame.devices) for frame in frames if isinstance(frame, KeysFrame)] == [
        100, 100, 50
    ]


def test_keys_frames_for_no_keys_is_no_frame() -> None:
    assert keys_frames_for([]) == []


# --- two logs converge through frames -----------------------------------------------------------

KEYS = [
    DeviceKey.from_private_bytes(hashlib.sha256(f"sync device {n}".encode()).digest())
    for n in range(3)
]
AUTHORS = ["alice", "bob", "carol"]


@cache
def envelope(device: int, seq: int, long: bool) -> Envelope:
    """One signed envelope per id (so two replicas never conflict); long ones force several
    frames per batch."""
    text = f"{AUTHORS[device]} says {seq} " + ("ß" * 3000 if long else "")
    return Envelope.create(
        KEYS[device],
        room="lobby",
        author=AUTHORS[device],
        seq=seq,
        lamport=(seq * 7 + device * 3) % 11 + 1,
        ts=seq,
        text=text,
    )


class Replica:
    """A MessageLog on one end of a channel, speaking only in encoded frames."""

    def __init__(self) -> None:
        self.log = MessageLog("lobby")
        self.batches_received = 0

    def hello(self) -> str:
        return encode(VectorFrame(self.log.vector()))

    def receive(self, text: str, limit: int) -> list[str]:
        """Handle one frame and return the frames to send back."""
        frame: Frame = parse_sync_frame(text)
        if isinstance(frame, VectorFrame):
            return self.answer(frame.vector, limit)
        if isinstance(frame, MsgFrame):
            self.log.add(frame.env)
            return [self.hello()] if self.log.gaps() else []
        assert isinstance(frame, BatchFrame)
        self.batches_received += 1
        self.log.merge(frame.envs)
        return []

    def answer(self, peer: VersionVector, limit: int) -> list[str]:
        frames: list[str] = []
        after: tuple[str, int] | None = None
        while batch := self.log.missing_for(peer, limit, after=after):
            frames += batches_for(batch, more_after=True)
            after = (batch[-1].device, batch[-1].seq)
        return frames + batches_for([], more_after=False)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_two_logs_converge_by_trading_vectors_and_batches(data: st.DataObject) -> None:
    left, right = Replica(), Replica()
    ids: list[tuple[int, int]] = []
    for device in range(len(KEYS)):
        for seq in sorted(data.draw(st.sets(st.integers(1, 14), max_size=10), label="seqs")):
            ids.append((device, seq))
    # Each envelope is held by the left log, the right one, both (+) or neither (-); some of
    # the left's are also sent live to the right, and a live frame may be lost.
    union: dict[str, Envelope] = {}
    live: list[str] = []
    for device, seq in ids:
        env = envelope(device, seq, data.draw(st.booleans(), label="long"))
        who = data.draw(st.sampled_from("LR+-L"), label="holder")
        if who in "L+":
            left.log.add(env)
        if who in "R+":
            right.log.add(env)
        if who != "-":
            union[env.id] = env
        if who == "L" and data.draw(st.booleans(), label="live"):
            live.append(encode(MsgFrame(env)))
    limit = data.draw(st.integers(1, MAX_BATCH), label="limit")

    # Frames travel in order on each direction; the channel opens with both vectors.
    to_left: list[str] = [right.hello()]
    to_right: list[str] = [left.hello(), *live]
    for _ in range(1000):
        if not (to_left or to_right):
            break
        if to_right:
            to_left += right.receive(to_right.pop(0), limit)
        if to_left:
            to_right += left.receive(to_left.pop(0), limit)
    assert not (to_left or to_right), "the exchange did not settle"

    expected = display_sorted(union.values())
    assert left.log.ordered() == right.log.ordered() == expected
    assert left.log.vector() == right.log.vector()
    assert left.log.gaps() == right.log.gaps()
    assert left.batches_received >= 1 and right.batches_received >= 1
