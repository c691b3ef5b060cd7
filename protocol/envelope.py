"""The signed chat message: validation of untrusted envelopes, signing, verifying, display order."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

from .canonical import ENVELOPE_DOMAIN, canonical_bytes
from .errors import BadSignature, InvalidEnvelope, LamportAhead
from .frames import parse_frame
from .keys import (
    SIGNATURE_BYTES,
    DeviceKey,
    b64decode,
    b64encode,
    check_signatures,
    public_key_and_device,
)
from .limits import (
    LAMPORT_LEAD_MS,
    MAX_LAMPORT,
    MAX_SEQ,
    MAX_TEXT_BYTES,
    MAX_TEXT_CHARS,
    MAX_TS,
)
from .names import is_normalized_room, is_normalized_username

if TYPE_CHECKING:
    from concurrent.futures import Executor

FIELDS = ("room", "author", "device", "seq", "lamport", "ts", "text", "sig")
"""The keys of an envelope on the wire, exactly these and no others."""

DEVICE_ID = re.compile(r"[0-9a-f]{32}")

# C0 controls except TAB and LF, and DEL. NUL is among them.
_FORBIDDEN_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

# Characters with the Unicode White_Space property: JavaScript's /^\p{White_Space}*$/u matches
# the same set, so every peer agrees on which texts are blank.
WHITESPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)

_SIG_CHARS = 86  # unpadded base64url of 64 bytes


@dataclass(frozen=True, slots=True)
class Envelope:
    """One chat message as signed by its device; constructing one validates every field.

    Its id is `device:seq`, unique within a room. Validity here is structural only: a receiver
    must also `verify()` it against the roster's key for `device` and check that key belongs to
    `author` before storing, showing or forwarding it.
    """

    room: str
    author: str
    device: str
    seq: int
    lamport: int
    ts: int
    text: str
    sig: str

    def __post_init__(self) -> None:
        _check_fields(
            self.room, self.author, self.device, self.seq, self.lamport, self.ts, self.text
        )
        _check_sig(self.sig)

    @property
    def id(self) -> str:
        """The envelope's id, `device:seq`; the key that makes duplicates impossible."""
        return f"{self.device}:{self.seq}"

    @property
    def order_key(self) -> tuple[int, str, int]:
        """The display order used everywhere: (lamport, device, seq)."""
        return (self.lamport, self.device, self.seq)

    @classmethod
    def create(
        cls,
        key: DeviceKey,
        *,
        room: str,
        author: str,
        seq: int,
        lamport: int,
        ts: int,
        text: str,
    ) -> Envelope:
        """Sign a new envelope from this device, its `device` set to the key's id.

        Fields are validated before signing (InvalidEnvelope), so nothing invalid is ever signed.
        """
        device = key.device_id
        _check_fields(room, author, device, seq, lamport, ts, text)
        sig = key.sign(_signed_bytes(room, author, device, seq, lamport, ts, text))
        return cls(room, author, device, seq, lamport, ts, text, b64encode(sig))

    def signed_bytes(self) -> bytes:
        """The canonical bytes the signature covers: every field but `sig`, in wire order."""
        return _signed_bytes(
            self.room, self.author, self.device, self.seq, self.lamport, self.ts, self.text
        )

    @classmethod
    def from_dict(cls, obj: object) -> Envelope:
        """Build an envelope from untrusted parsed JSON, or raise InvalidEnvelope naming the field.

        Exactly the eight keys, exact JSON types (no bool for int) and every limit are enforced.
        """
        if not isinstance(obj, dict):
            raise InvalidEnvelope("envelope must be a JSON object")
        if obj.keys() != set(FIELDS):
            missing = [name for name in FIELDS if name not in obj]
            extra = sorted(_short(key) for key in obj if key not in FIELDS)
            problems = []
            if missing:
                problems.append("missing " + ", ".join(repr(name) for name in missing))
            if extra:
                problems.append("unexpected " + ", ".join(extra[:5]))
            raise InvalidEnvelope("envelope has the wrong keys: " + "; ".join(problems))
        return cls(**{name: obj[name] for name in FIELDS})

    def to_dict(self) -> dict[str, object]:
        """The envelope as a JSON-ready dict with the wire keys in wire order."""
        return {
            "room": self.room,
            "author": self.author,
            "device": self.device,
            "seq": self.seq,
            "lamport": self.lamport,
            "ts": self.ts,
            "text": self.text,
            "sig": self.sig,
        }

    def to_json(self) -> str:
        """Compact JSON with non-ASCII text kept as is; any valid envelope fits in one frame."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Envelope:
        """Parse an envelope from an untrusted frame, with the size checked before parsing.

        Raises FrameTooLarge over MAX_FRAME_BYTES, InvalidEnvelope for bad JSON or a bad envelope.
        """
        return cls.from_dict(parse_frame(text))

    def verify(self, public_key_b64: str) -> None:
        """Raise BadSignature unless the key is this envelope's device key and signed it."""
        problem = verify_envelopes([(self, public_key_b64)])[0]
        if problem is not None:
            raise problem

    def same_content(self, other: Envelope) -> bool:
        """Tell whether `other` is the very same envelope, every field equal, signature included."""
        return self == other


def verify_envelopes(pairs: Sequence[tuple[Envelope, str]],
                     pool: Executor | None = None) -> list[BadSignature | None]:
    """`Envelope.verify` for many envelopes at once, each with its public key: for each, None
    if it verified, else the BadSignature `verify` raises. With a thread `pool` the signature
    checks of a large batch run on every core (`check_signatures`); the answers come in the
    order asked."""
    problems: list[BadSignature | None] = [None] * len(pairs)
    checks: list[tuple[str, bytes, bytes]] = []
    checked: list[int] = []
    for i, (env, public_key_b64) in enumerate(pairs):
        try:
            _, key_device = public_key_and_device(public_key_b64)
        except InvalidEnvelope as exc:
            problems[i] = BadSignature(f"cannot check envelope {env.id}: {exc}")
            continue
        if key_device != env.device:
            problems[i] = BadSignature(
                f"envelope {env.id} claims device {env.device}, "
                f"but the key given belongs to device {key_device}"
            )
            continue
        checks.append((public_key_b64, b64decode(env.sig), env.signed_bytes()))
        checked.append(i)
    for i, problem in zip(checked, check_signatures(checks, pool), strict=True):
        if problem is not None:
            env = pairs[i][0]
            bad = BadSignature(f"envelope {env.id} has a bad signature: {problem}")
            bad.__cause__ = problem
            problems[i] = bad
    return problems


def display_sorted(envelopes: Iterable[Envelope]) -> list[Envelope]:
    """Return the envelopes in the display order every peer and the server share."""
    return sorted(envelopes, key=_order_key)


def next_lamport(seen_max: int) -> int:
    """Return the Lamport time for a new message: one past the highest seen (0 if none seen).

    Raises ValueError when `seen_max` is negative or already MAX_LAMPORT, where no valid
    envelope can follow.
    """
    if isinstance(seen_max, bool) or not 0 <= seen_max < MAX_LAMPORT:
        raise ValueError(f"seen_max must be an integer from 0 to {MAX_LAMPORT - 1}")
    return seen_max + 1


def lamport_horizon(now_ms: int) -> int:
    """The highest Lamport time a receiver whose clock reads `now_ms` accepts: its clock in
    milliseconds since the epoch plus LAMPORT_LEAD_MS, never above MAX_LAMPORT.

    Lamport times of honest peers count messages, far below the clock in milliseconds, so the
    horizon never touches them. It stops one validly signed envelope from pushing the room's
    clock to MAX_LAMPORT, after which `next_lamport` could give nobody a time: the furthest an
    envelope can push it is a day past now, and the clock reaches 2^53 ms in the year 287,396.
    """
    if isinstance(now_ms, bool) or not isinstance(now_ms, int):
        raise TypeError("now_ms must be an integer number of milliseconds")
    return min(MAX_LAMPORT, max(0, now_ms) + LAMPORT_LEAD_MS)


def check_lamport_horizon(envelope: Envelope, now_ms: int) -> None:
    """Raise LamportAhead if the envelope's Lamport time lies past `lamport_horizon(now_ms)`.

    Every receiver (peer or server) applies it, with its own clock, before storing an envelope.
    The refusal is not final: the horizon moves with the clock, so an envelope refused now is
    accepted when anti-entropy offers it again later, and logs still converge.
    """
    horizon = lamport_horizon(now_ms)
    if envelope.lamport > horizon:
        raise LamportAhead(
            f"envelope {envelope.id} has Lamport time {envelope.lamport}, past this receiver's "
            f"horizon {horizon} (its clock in ms plus {LAMPORT_LEAD_MS}); refused for now"
        )


def _order_key(envelope: Envelope) -> tuple[int, str, int]:
    return envelope.order_key


def _signed_bytes(
    room: str, author: str, device: str, seq: int, lamport: int, ts: int, text: str
) -> bytes:
    return canonical_bytes(ENVELOPE_DOMAIN, [room, author, device, seq, lamport, ts, text])


def _check_fields(
    room: object,
    author: object,
    device: object,
    seq: object,
    lamport: object,
    ts: object,
    text: object,
) -> None:
    if not is_normalized_room(room):
        _fail("room", "must be a room name in normal form (see normalize_room)")
    if not is_normalized_username(author):
        _fail("author", "must be a user name in normal form (see normalize_username)")
    if type(device) is not str or not DEVICE_ID.fullmatch(device):
        _fail("device", "must be 32 lowercase hexadecimal digits")
    _check_int("seq", seq, 1, MAX_SEQ)
    _check_int("lamport", lamport, 1, MAX_LAMPORT)
    _check_int("ts", ts, 0, MAX_TS)
    _check_text(text)


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        _fail(name, f"must be an integer from {low} to {high}")


def _check_text(text: object) -> None:
    if type(text) is not str:
        _fail("text", "must be a string")
    if not text:
        _fail("text", "must not be empty")
    if len(text) > MAX_TEXT_CHARS:
        _fail("text", f"is too long: at most {MAX_TEXT_CHARS} characters, got {len(text)}")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        _fail("text", "must be valid Unicode (it contains a lone surrogate)")
    if size > MAX_TEXT_BYTES:
        _fail("text", f"is too long: at most {MAX_TEXT_BYTES} bytes of UTF-8, got {size}")
    control = _FORBIDDEN_CONTROL.search(text)
    if control:
        _fail("text", f"must not contain control character U+{ord(control.group()):04X}")
    if all(ch in WHITESPACE for ch in text):
        _fail("text", "must not be only whitespace")


def _check_sig(sig: object) -> None:
    problem = f"must be unpadded base64url of {SIGNATURE_BYTES} bytes"
    if type(sig) is not str or len(sig) != _SIG_CHARS:
        _fail("sig", problem)
    try:
        raw = b64decode(sig)
    except ValueError:
        _fail("sig", problem)
    if len(raw) != SIGNATURE_BYTES:
        _fail("sig", problem)


def _fail(field: str, problem: str) -> NoReturn:
    raise InvalidEnvelope(f"envelope field {field!r} {problem}")


def _short(key: object, limit: int = 40) -> str:
    text = repr(key)
    return text if len(text) <= limit else text[:limit] + "…"
