"""Version vectors: for each device, the highest seq up to which a log holds every envelope."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping

from .canonical import VECTOR_DIGEST_DOMAIN, canonical_bytes
from .envelope import DEVICE_ID
from .errors import InvalidEnvelope
from .keys import b64encode
from .limits import MAX_SEQ, MAX_VECTOR_DEVICES


class VersionVector:
    """An immutable map `device -> highest contiguous seq` (1, 2, … with no gap) of one room.

    Absent devices count as 0 and zero entries are dropped, so equal knowledge compares equal.
    """

    __slots__ = ("_seqs",)

    _seqs: dict[str, int]

    def __init__(self, seqs: Mapping[str, int] | None = None) -> None:
        entries = seqs.items() if seqs is not None else ()
        object.__setattr__(self, "_seqs", _checked(entries, len(seqs or ())))

    def get(self, device: str) -> int:
        """Return the highest contiguous seq held for `device`, 0 when none is held."""
        return self._seqs.get(device, 0)

    def to_dict(self) -> dict[str, int]:
        """The vector as a JSON-ready dict, devices in sorted order, zero entries left out."""
        return {device: self._seqs[device] for device in sorted(self._seqs)}

    @classmethod
    def from_dict(cls, obj: object) -> VersionVector:
        """Build a vector from untrusted parsed JSON, raising InvalidEnvelope if it is malformed.

        At most MAX_VECTOR_DEVICES entries; keys are device ids, values integers 0..MAX_SEQ.
        """
        if not isinstance(obj, dict):
            raise InvalidEnvelope("version vector must be a JSON object")
        return cls(obj)

    def items(self) -> Iterator[tuple[str, int]]:
        """Iterate over `(device, seq)` pairs with seq > 0, devices in sorted order."""
        return iter(self.to_dict().items())

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._seqs))

    def __len__(self) -> int:
        return len(self._seqs)

    def __contains__(self, device: object) -> bool:
        return device in self._seqs

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VersionVector):
            return NotImplemented
        return self._seqs == other._seqs

    def __hash__(self) -> int:
        return hash(frozenset(self._seqs.items()))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("VersionVector is immutable")

    def __repr__(self) -> str:
        return f"VersionVector({self.to_dict()!r})"


DIGEST_BYTES = 16
"""A vector digest is the first 16 bytes of a SHA-256 (22 characters of base64url)."""


def vector_digest(vector: VersionVector) -> str:
    """A short fingerprint of a vector, so linked peers can compare logs without sending them.

    SHA-256 over `canonical_bytes(VECTOR_DIGEST_DOMAIN, [device, seq, device, seq, …])`, devices
    in sorted order, cut to DIGEST_BYTES and written as unpadded base64url. Equal vectors give
    equal digests; different ones, with overwhelming odds, different digests.
    """
    fields: list[str | int] = []
    for device, seq in vector.items():
        fields += [device, seq]
    digest = hashlib.sha256(canonical_bytes(VECTOR_DIGEST_DOMAIN, fields)).digest()
    return b64encode(digest[:DIGEST_BYTES])


def holds_more(theirs: VersionVector, ours: VersionVector) -> bool:
    """Whether `theirs` holds some envelope `ours` lacks (an entry above ours)."""
    return any(seq > ours.get(device) for device, seq in theirs.items())


def vector_of(ids: Iterable[tuple[str, int]]) -> VersionVector:
    """Compute the version vector of `(device, seq)` ids: per device, the highest seq reached
    counting from 1 without a gap, so seqs {1, 2, 4} give 2 and seqs without 1 give 0."""
    held: dict[str, set[int]] = {}
    for device, seq in ids:
        held.setdefault(device, set()).add(seq)
    highest: dict[str, int] = {}
    for device, seqs in held.items():
        seq = 0
        while seq + 1 in seqs:
            seq += 1
        highest[device] = seq
    return VersionVector(highest)


def _checked(entries: Iterable[tuple[object, object]], count: int) -> dict[str, int]:
    if count > MAX_VECTOR_DEVICES:
        raise InvalidEnvelope(
            f"version vector names too many devices: at most {MAX_VECTOR_DEVICES}, got {count}"
        )
    checked: dict[str, int] = {}
    for device, seq in entries:
        if type(device) is not str or not DEVICE_ID.fullmatch(device):
            raise InvalidEnvelope(
                "version vector keys must be device ids (32 lowercase hexadecimal digits)"
            )
        if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
            raise InvalidEnvelope(
                f"version vector entry for device {device} must be an integer from 0 to {MAX_SEQ}"
            )
        if seq:
            checked[device] = seq
    return checked
