"""The merge rules of a room's message log, in memory; the agents' SQLite log mirrors them."""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Iterable

from .envelope import Envelope, display_sorted
from .errors import Conflict, InvalidEnvelope
from .limits import MAX_BATCH
from .names import is_normalized_room
from .vector import VersionVector


class MessageLog:
    """The envelopes of one room, keyed by id, with the same order and merge result on every peer.

    Envelopes given to it must already be verified; the log only enforces the id rules: one
    envelope per id, the first one wins, and ids are only unique within a room, so the log
    holds a single room (given here, or taken from the first envelope added). `conflicts` counts
    the envelopes refused because their id was taken by different content, `wrong_room` those
    `merge` skipped because they belong to another room.
    """

    def __init__(self, room: str | None = None) -> None:
        if room is not None and not is_normalized_room(room):
            raise ValueError(f"room {room!r} is not a room name in normal form")
        self._room = room
        self._by_device: dict[str, dict[int, Envelope]] = {}
        self._seqs: dict[str, list[int]] = {}
        self._contiguous: dict[str, int] = {}
        self._ordered: list[Envelope] = []
        self._ordered_is_sorted = True
        self._max_lamport = 0
        self._count = 0
        self.conflicts = 0
        self.wrong_room = 0

    @property
    def room(self) -> str | None:
        """The room this log holds, None until it is known."""
        return self._room

    @property
    def max_lamport(self) -> int:
        """The highest Lamport time held, 0 when empty; pass it to `next_lamport`."""
        return self._max_lamport

    def add(self, env: Envelope) -> bool:
        """Store an envelope; True if it was new, False if the same envelope was already held.

        Raises Conflict if a different envelope holds its id (the first one is kept) and
        InvalidEnvelope if it belongs to another room.
        """
        if self._room is None:
            self._room = env.room
        elif env.room != self._room:
            raise InvalidEnvelope(
                f"envelope {env.id} is for room {env.room!r}, this log holds room {self._room!r}"
            )
        held = self._by_device.setdefault(env.device, {})
        existing = held.get(env.seq)
        if existing is not None:
            if existing.same_content(env):
                return False
            self.conflicts += 1
            raise Conflict(
                f"envelope {env.id} differs from the one already held under that id; "
                "the first one is kept"
            )
        held[env.seq] = env
        self._count += 1
        seqs = self._seqs.setdefault(env.device, [])
        insort(seqs, env.seq)
        contiguous = self._contiguous.get(env.device, 0)
        while contiguous + 1 in held:
            contiguous += 1
        self._contiguous[env.device] = contiguous
        self._ordered.append(env)
        self._ordered_is_sorted = False
        self._max_lamport = max(self._max_lamport, env.lamport)
        return True

    def merge(self, envs: Iterable[Envelope]) -> int:
        """Add many envelopes and return how many were new.

        Conflicts and other rooms' envelopes are skipped and counted in `conflicts` and
        `wrong_room`, so one bad envelope does not stop a batch.
        """
        added = 0
        for env in envs:
            try:
                added += self.add(env)
            except Conflict:
                continue
            except InvalidEnvelope:
                self.wrong_room += 1
        return added

    def ordered(self) -> list[Envelope]:
        """All envelopes in display order (lamport, device, seq), as a new list."""
        if not self._ordered_is_sorted:
            self._ordered = display_sorted(self._ordered)
            self._ordered_is_sorted = True
        return list(self._ordered)

    def vector(self) -> VersionVector:
        """This log's version vector: per device, the highest seq held with none missing below."""
        return VersionVector(self._contiguous)

    def missing_for(
        self,
        peer: VersionVector,
        limit: int = MAX_BATCH,
        *,
        after: tuple[str, int] | None = None,
        max_bytes: int | None = None,
    ) -> list[Envelope]:
        """Return the next batch of envelopes a peer with vector `peer` may lack.

        Those are the envelopes with seq above `peer.get(device)`, in (device, seq) order, at most
        `limit` of them. The peer may already hold some (above a gap of its own), so a sync walks
        batch after batch, passing as `after` the (device, seq) of the last envelope sent, until
        a batch comes back empty; asked afresh each time instead, two peers missing the same seq
        would trade the same first batch forever. With `max_bytes`, the batch as a compact JSON
        array stays within that many bytes, though it always holds at least one envelope.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        batch: list[Envelope] = []
        size = 2  # the brackets of a JSON array
        for device in sorted(self._seqs):
            if after is not None and device < after[0]:
                continue
            floor = peer.get(device)
            if after is not None and device == after[0]:
                floor = max(floor, after[1])
            seqs = self._seqs[device]
            held = self._by_device[device]
            for index in range(bisect_right(seqs, floor), len(seqs)):
                env = held[seqs[index]]
                if max_bytes is not None:
                    cost = len(env.to_json().encode("utf-8")) + (1 if batch else 0)
                    if batch and size + cost > max_bytes:
                        return batch
                    size += cost
                batch.append(env)
                if len(batch) >= limit:
                    return batch
        return batch

    def gaps(self, limit: int = MAX_BATCH) -> dict[str, list[int]]:
        """Return, per device with a gap, the seqs missing below its highest held seq.

        A gap means a lost message and triggers anti-entropy. At most `limit` seqs are listed
        per device, lowest first, so a seq far ahead of the rest cannot exhaust memory.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        result: dict[str, list[int]] = {}
        for device in sorted(self._seqs):
            seqs = self._seqs[device]
            expected = self._contiguous.get(device, 0) + 1
            if expected > seqs[-1]:
                continue
            missing: list[int] = []
            for index in range(bisect_right(seqs, expected), len(seqs)):
                seq = seqs[index]
                missing.extend(range(expected, min(seq, expected + limit - len(missing))))
                if len(missing) >= limit:
                    break
                expected = seq + 1
            result[device] = missing
        return result

    def get(self, envelope_id: str) -> Envelope | None:
        """Return the envelope held under `device:seq`, or None."""
        device, _, seq = envelope_id.partition(":")
        if not (seq.isascii() and seq.isdigit() and len(seq) <= 16):
            return None
        return self._by_device.get(device, {}).get(int(seq))

    def __len__(self) -> int:
        return self._count

    def __contains__(self, envelope_id: object) -> bool:
        return isinstance(envelope_id, str) and self.get(envelope_id) is not None
