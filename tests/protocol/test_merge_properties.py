"""Properties the whole mesh relies on: merging is order-free, signatures bind every field,
and anti-entropy in small batches converges."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import (
    BadSignature,
    DeviceKey,
    Envelope,
    InvalidEnvelope,
    MessageLog,
    b64decode,
    b64encode,
    display_sorted,
    vector_of,
)
from protocol.envelope import FIELDS

KEYS = [
    DeviceKey.from_private_bytes(hashlib.sha256(f"property device {n}".encode()).digest())
    for n in range(3)
]
AUTHORS = ["alice", "bob", "carol"]


@cache
def honest(device: int, seq: int, lamport: int) -> Envelope:
    """One signed envelope; cached, since examples reuse the same few many times."""
    return Envelope.create(
        KEYS[device],
        room="lobby",
        author=AUTHORS[device],
        seq=seq,
        lamport=lamport,
        ts=1_700_000_000_000 + seq,
        text=f"message {seq} from {AUTHORS[device]}",
    )


@st.composite
def honest_envelopes(draw: st.DrawFn) -> list[Envelope]:
    """Envelopes of up to three devices, each with distinct random seqs and random lamports."""
    envelopes = []
    for device in range(len(KEYS)):
        seqs = draw(st.sets(st.integers(1, 12), max_size=8))
        for seq in sorted(seqs):
            envelopes.append(honest(device, seq, draw(st.integers(1, 20))))
    return envelopes


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_merging_in_any_order_with_duplicates_gives_the_same_log(data: st.DataObject) -> None:
    envelopes = data.draw(honest_envelopes())
    expected = display_sorted(envelopes)
    expected_vector = vector_of((env.device, env.seq) for env in envelopes)
    for _ in range(3):
        copies = data.draw(st.lists(st.sampled_from(envelopes), max_size=10)) if envelopes else []
        stream = data.draw(st.permutations(envelopes + copies))
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=4)))
        log = MessageLog()
        added = 0
        for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
            added += log.merge(stream[start:end])
        assert added == len(envelopes)
        assert log.ordered() == expected
        assert log.vector() == expected_vector
        assert log.conflicts == 0


def _tampered_values(data: st.DataObject, field: str, value: object) -> object:
    if field == "sig":
        assert isinstance(value, str)
        raw = bytearray(b64decode(value))
        bit = data.draw(st.integers(0, len(raw) * 8 - 1), label="flipped bit")
        raw[bit // 8] ^= 1 << (bit % 8)
        return b64encode(bytes(raw))
    if isinstance(value, int):
        return data.draw(st.integers(-1, 2**53).filter(lambda other: other != value))
    if field == "device":
        return data.draw(st.text("0123456789abcdef", min_size=32, max_size=32))
    if field in ("room", "author"):
        names = st.sampled_from(["lobby", "kitchen", *AUTHORS, "mallory"]) | st.text(max_size=8)
        return data.draw(names.filter(lambda other: other != value))
    return data.draw(st.text(max_size=20).filter(lambda other: other != value))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_changing_any_single_field_breaks_the_envelope(data: st.DataObject) -> None:
    envelopes = data.draw(honest_envelopes().filter(bool))
    genuine = data.draw(st.sampled_from(envelopes))
    field = data.draw(st.sampled_from(FIELDS))
    obj = genuine.to_dict()
    obj[field] = _tampered_values(data, field, obj[field])
    if obj[field] == genuine.to_dict()[field]:
        return  # the drawn device id happened to equal the genuine one
    key = KEYS[AUTHORS.index(genuine.author)]
    try:
        tampered = Envelope.from_dict(obj)
    except InvalidEnvelope:
        return
    try:
        tampered.verify(key.public_key_b64)
    except BadSignature:
        return
    raise AssertionError(f"changing {field} to {obj[field]!r} went unnoticed")


@dataclass
class SyncSession:
    """One direction of a sync: the receiver's vector when the channel opened, and how far the
    sender has walked."""

    sender: MessageLog
    receiver: MessageLog
    after: tuple[str, int] | None = None
    done: bool = False

    def __post_init__(self) -> None:
        self.vector = self.receiver.vector()

    def send_one_batch(self, limit: int) -> None:
        batch = self.sender.missing_for(self.vector, limit, after=self.after)
        self.receiver.merge(batch)
        if batch:
            self.after = (batch[-1].device, batch[-1].seq)
        else:
            self.done = True


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_anti_entropy_in_small_batches_converges(data: st.DataObject) -> None:
    envelopes = data.draw(honest_envelopes())
    # Each envelope is held by the left log, the right one, both (+) or neither (-).
    holders = data.draw(
        st.lists(st.sampled_from("LR+-"), min_size=len(envelopes), max_size=len(envelopes))
    )
    left, right = MessageLog(), MessageLog()
    left.merge(env for env, who in zip(envelopes, holders, strict=True) if who in "L+")
    right.merge(env for env, who in zip(envelopes, holders, strict=True) if who in "R+")
    union = {env.id: env for env in left.ordered() + right.ordered()}
    limit = data.draw(st.integers(1, 3))

    sessions = [SyncSession(left, right), SyncSession(right, left)]
    for _ in range(len(envelopes) + 2):
        for session in sessions:
            if not session.done:
                session.send_one_batch(limit)
    assert all(session.done for session in sessions), "anti-entropy did not finish"

    assert left.ordered() == right.ordered() == display_sorted(union.values())
    assert left.vector() == right.vector()
    assert left.gaps() == right.gaps()
