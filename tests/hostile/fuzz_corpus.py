"""Hypothesis strategies for what a peer or a client can put in front of a parser: any text,
any bytes, any JSON, and valid frames with one field replaced by anything. The Python property
tests draw from them directly; `corpus()` fixes a deterministic sample of them for the
JavaScript port to be fed the very same inputs in Chromium."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from protocol import DeviceKey, Envelope, VersionVector
from protocol.links import LinkReport, LinksFrame
from protocol.relay import SignalFrame
from protocol.rendezvous import Challenge, Hello
from protocol.sync import BatchFrame, KeysFrame, KnownDevice, MsgFrame, VectorFrame

KEY = DeviceKey.from_private_bytes(hashlib.sha256(b"fuzz corpus").digest())
ENVELOPE = Envelope.create(KEY, room="lobby", author="fuzz", seq=3, lamport=7,
                           ts=1_700_000_000_000, text="héllo ✓")
NONCE = "A" * 43
SIG = "B" * 86

VALID_FRAMES: list[dict[str, Any]] = [
    json.loads(frame.encode()) for frame in (
        MsgFrame(ENVELOPE),
        VectorFrame(VersionVector({KEY.device_id: 3})),
        BatchFrame((ENVELOPE,), more=True),
        KeysFrame((KnownDevice(KEY.device_id, "fuzz", KEY.public_key_b64),)),
        LinksFrame((LinkReport(KEY.device_id, "connected", 0.5),)),
        SignalFrame("abcdefgh", KEY.device_id, "offer", {"sdp": "v=0", "fp_sig": SIG}),
        Challenge("lobby", KEY.device_id, NONCE),
        Hello("fuzz", KEY.device_id, "127.0.0.1:40000", NONCE, SIG),
    )
]

JSON_SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40))
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=5),
    max_leaves=20,
)


@st.composite
def mutated_frames(draw: st.DrawFn) -> Any:
    """A valid frame (or its envelope) with one key's value replaced, removed or added."""
    frame = json.loads(json.dumps(draw(st.sampled_from(VALID_FRAMES))))
    target = frame["env"] if "env" in frame and draw(st.booleans()) else frame
    key = draw(st.sampled_from(sorted(target)) | st.text(max_size=8))
    action = draw(st.sampled_from(["replace", "remove"]))
    if action == "remove":
        target.pop(key, None)
    else:
        target[key] = draw(JSON_VALUES)
    return frame


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


TEXTS = st.one_of(
    st.text(max_size=200),
    JSON_VALUES.map(dumps),
    mutated_frames().map(dumps),
    st.sampled_from(VALID_FRAMES).map(dumps),
    st.integers(min_value=1, max_value=40).map(lambda n: "[" * n + "]" * n),
    st.sampled_from(["NaN", '{"t":"msg","t":"vv"}', "[1e999]", '"\\ud800"', "", " ", "{"]),
)
"""Text as it arrives in a frame, a packet or a request body."""

FRAMES = st.one_of(TEXTS, st.binary(max_size=200))
"""A data-channel or rendezvous frame: text, or bytes on the wire."""

NAMES = st.one_of(st.text(max_size=80), st.sampled_from(
    ["Alice", "ＡＬＩＣＥ", " alice ", "ß", "ǰ", "a" * 33, "-a", "a b", "\u0000", "İ", "ﬃ"]))

TOKENS = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["9007199254740991.d.1", "9007199254740992.d.1", "1." + "d" * 33 + ".1",
                     "².d.1", "01.d.1", "1..1", "1.d.1.1", "-1.d.1", "99999999999999999999.d.1"]),
    st.tuples(st.integers(-5, 2**64), st.text(max_size=40), st.integers(-5, 2**64)).map(
        lambda t: f"{t[0]}.{t[1]}.{t[2]}"),
)
"""Page tokens `lamport.device.seq`, as a query string can carry anything."""


def corpus(strategy: st.SearchStrategy[Any], count: int = 200) -> list[Any]:
    """`count` examples of `strategy`, the same on every run (derandomized)."""
    drawn: list[Any] = []

    @settings(max_examples=count, derandomize=True, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value: Any) -> None:
        drawn.append(value)

    collect()
    return drawn


def fuzz(strategy: st.SearchStrategy[Any]) -> Callable[[Callable[[Any], None]],
                                                      Callable[[], None]]:
    """A property test over `strategy` with the suite's modest example count, the same
    examples on every run (derandomized, no example database)."""

    def decorate(check: Callable[[Any], None]) -> Callable[[], None]:
        test: Callable[[], None] = settings(max_examples=200, deadline=None, database=None,
                                           derandomize=True)(
            given(strategy)(check))
        return test

    return decorate
