"""The room core's checks of received envelopes (`room_core.py`), apart from what it decides
with them: an envelope is taken only if it is for this room, its device's key is known and
belongs to its author, its signature verifies, and its Lamport time is within the horizon
(`verify`). One identical to an envelope the log holds, or to one verified a moment ago (the
same message often comes live, in a peer's sync batch and from the server's history at once),
was verified already and is taken without checking its signature again (`verify_all`); a
different envelope under a held id is verified like any other. No I/O: the log is read through
`LogView`, time is passed in."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Protocol

from protocol import (
    Envelope,
    ProtocolError,
    VersionVector,
    check_lamport_horizon,
    verify_envelopes,
)

from .room_effects import Peer, RefreshKeys, Refuse, RoomEffect

__all__ = ["RECENTLY_VERIFIED", "EnvelopeChecks", "LogView", "PendingChecks", "UnknownAuthor",
           "UnknownDevice"]

RECENTLY_VERIFIED = 4096
"""How many verified envelopes the core remembers, so that one arriving by several paths at
once (live, in sync batches, from the server) has its signature checked once."""


class LogView(Protocol):
    """What the core reads of the local log (`peer_agent.log.LocalLog` is one)."""

    def key_for(self, device: str) -> tuple[str, str] | None: ...
    def holds_each(self, envs: Sequence[Envelope]) -> list[bool]: ...
    def vector(self, room: str) -> VersionVector: ...
    def gaps(self, room: str) -> Mapping[str, Sequence[int]]: ...


class UnknownDevice(ProtocolError):
    """An envelope's device has no key this device knows (yet)."""

    code = "unknown_device"


class UnknownAuthor(ProtocolError):
    """An envelope's device is known, as another user's than its author's (an impostor)."""

    code = "unknown_author"


@dataclass
class PendingChecks:
    """A batch halfway through `RoomCore.verify_all`: what was decided (`outcomes`), and the
    (envelope, key) `pairs` whose signatures are still to check, at the positions `placed`."""

    outcomes: list[Envelope | ProtocolError]
    pairs: list[tuple[Envelope, str]] = field(default_factory=list)
    placed: list[int] = field(default_factory=list)


class EnvelopeChecks:
    """The checks of one room's received envelopes, remembering the last ones verified."""

    def __init__(self, room: str, log: LogView, verify_pool: Executor | None = None) -> None:
        self.room = room
        self.log = log
        # Threads that check a batch's signatures beside ours (protocol.verify_envelopes).
        self.verify_pool = verify_pool
        # The last envelopes `verify_all` verified, by id, oldest first (RECENTLY_VERIFIED).
        self._verified: dict[str, Envelope] = {}

    def verify(self, raw: Envelope | object, now_ms: int) -> Envelope:
        """The envelope, if it may be stored: for this room, signed by a known key of its
        author's, within the Lamport horizon. Raises ProtocolError (UnknownDevice when the key
        is not known yet) saying why not."""
        env = raw if isinstance(raw, Envelope) else Envelope.from_dict(raw)
        env.verify(self._author_key(env, {}))
        check_lamport_horizon(env, now_ms)
        return env

    def verify_all(self, raws: Iterable[Envelope | object], origin: Peer | None, now_ms: int,
                   effects: list[RoomEffect]) -> list[Envelope]:
        """The envelopes that pass `verify`, in order; each one refused adds its effects.

        One equal (signature included) to one verified recently or held in the log is taken
        as it is: the log keeps only verified envelopes. The rest are checked together: the
        log asked once what it holds and once per device for its key, the signatures spread
        over the cores (`verify_envelopes`). A caller may check the signatures apart, going
        on meanwhile: `to_check`, then `settle` with `verify_envelopes(pending.pairs)`."""
        pending = self.to_check(raws)
        return self.settle(pending, verify_envelopes(pending.pairs, self.verify_pool), origin,
                           now_ms, effects)

    def to_check(self, raws: Iterable[Envelope | object]) -> PendingChecks:
        """The first half of `verify_all`: everything but the signatures, which are listed
        (`pairs`) for the caller to check."""
        outcomes: list[Envelope | ProtocolError] = []
        for raw in raws:
            try:
                outcomes.append(raw if isinstance(raw, Envelope) else Envelope.from_dict(raw))
            except ProtocolError as exc:
                outcomes.append(exc)
        recent = {i for i, env in enumerate(outcomes) if isinstance(env, Envelope)
                  and env.room == self.room and self._verified.get(env.id) == env}
        asking = [(i, env) for i, env in enumerate(outcomes) if isinstance(env, Envelope)
                  and env.room == self.room and i not in recent]
        held = self.log.holds_each([env for _, env in asking]) if asking else []
        taken = recent | {i for (i, _), holds in zip(asking, held, strict=True) if holds}
        keys: dict[str, tuple[str, str] | None] = {}
        pending = PendingChecks(outcomes)
        for i, env in enumerate(outcomes):
            if not isinstance(env, Envelope) or i in taken:
                continue
            try:
                pending.pairs.append((env, self._author_key(env, keys)))
                pending.placed.append(i)
            except ProtocolError as exc:
                outcomes[i] = exc
        return pending

    def settle(self, pending: PendingChecks, problems: Sequence[ProtocolError | None],
               origin: Peer | None, now_ms: int, effects: list[RoomEffect]) -> list[Envelope]:
        """The second half of `verify_all`, given what `verify_envelopes(pending.pairs)`
        found: the envelopes taken, in order; each one refused adds its effects."""
        outcomes = self._settled(pending, problems, [origin] * len(pending.outcomes), now_ms,
                                 effects)
        return [outcome for outcome in outcomes if isinstance(outcome, Envelope)]

    def _settled(self, pending: PendingChecks, problems: Sequence[ProtocolError | None],
                 origins: Sequence[Peer | None], now_ms: int,
                 effects: list[RoomEffect]) -> list[Envelope | ProtocolError]:
        """`settle` for envelopes from several `origins` (one per envelope): every outcome."""
        outcomes = pending.outcomes
        for i, (env, _), problem in zip(pending.placed, pending.pairs, problems, strict=True):
            try:
                if problem is not None:
                    raise problem
                check_lamport_horizon(env, now_ms)
                self._remember_verified(env)
            except ProtocolError as exc:
                outcomes[i] = exc
        asked = False
        for outcome, origin in zip(outcomes, origins, strict=True):
            if isinstance(outcome, Envelope):
                continue
            if isinstance(outcome, UnknownDevice) and not asked:
                effects.append(RefreshKeys())
                asked = True
            effects.append(Refuse(origin, outcome.code, str(outcome), what="message"))
        return outcomes

    def _author_key(self, env: Envelope, keys: dict[str, tuple[str, str] | None]) -> str:
        """The public key to check `env` with, read once per device into `keys`: raises
        ProtocolError unless it is for this room and its device is known as its author's."""
        if env.room != self.room:
            raise ProtocolError(f"message for room {env.room!r}, not {self.room!r}")
        if env.device not in keys:
            keys[env.device] = self.log.key_for(env.device)
        known = keys[env.device]
        if known is None:
            raise UnknownDevice(f"unknown device {env.device}; keys are being refreshed")
        user, public_key = known
        if user != env.author:
            raise UnknownAuthor(f"device {env.device} belongs to {user!r}, not {env.author!r}")
        return public_key

    def _remember_verified(self, env: Envelope) -> None:
        self._verified.pop(env.id, None)
        self._verified[env.id] = env
        if len(self._verified) > RECENTLY_VERIFIED:
            del self._verified[next(iter(self._verified))]
