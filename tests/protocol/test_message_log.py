from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from protocol import (
    MAX_BATCH,
    MAX_SEQ,
    Conflict,
    DeviceKey,
    Envelope,
    InvalidEnvelope,
    MessageLog,
    VersionVector,
    display_sorted,
)

EnvelopeFactory = Callable[..., Envelope]  # the `make_envelope` fixture


@pytest.fixture(scope="module")
def keys() -> list[DeviceKey]:
    """Two keys, the first with the lower device id, so (device, seq) order is known."""
    pair = [DeviceKey.generate(), DeviceKey.generate()]
    return sorted(pair, key=lambda key: key.device_id)


def chain(
    make: EnvelopeFactory, key: DeviceKey, seqs: list[int], room: str = "lobby"
) -> list[Envelope]:
    return [make(key, seq=seq, lamport=seq, room=room, text=f"message {seq}") for seq in seqs]


def test_new_envelope_is_added(make_envelope: EnvelopeFactory) -> None:
    log = MessageLog()
    env = make_envelope()
    assert log.add(env) is True
    assert len(log) == 1
    assert env.id in log
    assert log.get(env.id) == env


def test_identical_envelope_is_not_added_twice(make_envelope: EnvelopeFactory) -> None:
    log = MessageLog()
    env = make_envelope()
    log.add(env)
    assert log.add(Envelope.from_json(env.to_json())) is False
    assert len(log) == 1


def test_same_id_with_different_content_conflicts_and_first_one_wins(
    make_envelope: EnvelopeFactory,
) -> None:
    log = MessageLog()
    first = make_envelope(text="first")
    log.add(first)
    with pytest.raises(Conflict) as info:
        log.add(make_envelope(text="second"))
    assert info.value.code == "conflict"
    assert log.get(first.id) == first
    assert log.conflicts == 1


def test_merge_counts_new_envelopes_and_skips_conflicts(
    make_envelope: EnvelopeFactory, keys: list[DeviceKey]
) -> None:
    log = MessageLog()
    batch = chain(make_envelope, keys[0], [1, 2, 3])
    rival = make_envelope(keys[0], seq=2, lamport=2, text="rival")
    assert log.merge([batch[0], batch[1], rival, batch[1], batch[2]]) == 3
    assert log.conflicts == 1
    assert log.ordered() == batch


def test_log_holds_one_room_given_by_its_first_envelope(make_envelope: EnvelopeFactory) -> None:
    log = MessageLog()
    log.add(make_envelope(room="lobby"))
    assert log.room == "lobby"
    with pytest.raises(InvalidEnvelope, match="room"):
        log.add(make_envelope(room="kitchen", seq=2))


def test_log_for_a_named_room_refuses_other_rooms(make_envelope: EnvelopeFactory) -> None:
    log = MessageLog("kitchen")
    with pytest.raises(InvalidEnvelope, match="room"):
        log.add(make_envelope(room="lobby"))
    assert len(log) == 0


def test_log_room_must_be_in_normal_form() -> None:
    with pytest.raises(ValueError):
        MessageLog("Lobby")


def test_merge_skips_and_counts_envelopes_of_other_rooms(make_envelope: EnvelopeFactory) -> None:
    log = MessageLog("lobby")
    assert log.merge([make_envelope(room="kitchen"), make_envelope(room="lobby")]) == 1
    assert log.wrong_room == 1


def test_ordered_is_the_display_order(
    make_envelope: EnvelopeFactory, keys: list[DeviceKey]
) -> None:
    envs = [
        make_envelope(keys[1], seq=1, lamport=2),
        make_envelope(keys[0], seq=1, lamport=2),
        make_envelope(keys[0], seq=2, lamport=1),
        make_envelope(keys[1], seq=2, lamport=9),
    ]
    log = MessageLog()
    log.merge(envs)
    assert log.ordered() == display_sorted(envs)
    assert [env.order_key[0] for env in log.ordered()] == [1, 2, 2, 9]


def test_ordered_returns_a_copy(make_envelope: EnvelopeFactory) -> None:
    log = MessageLog()
    log.add(make_envelope())
    log.ordered().clear()
    assert len(log.ordered()) == 1


def test_max_lamport_is_the_highest_held(make_envelope: EnvelopeFactory) -> None:
    log = MessageLog()
    assert log.max_lamport == 0
    log.merge([make_envelope(seq=1, lamport=7), make_envelope(seq=2, lamport=3)])
    assert log.max_lamport == 7


def test_vector_counts_contiguous_seqs_per_device(
    make_envelope: EnvelopeFactory, keys: list[DeviceKey]
) -> None:
    log = MessageLog()
    log.merge(chain(make_envelope, keys[0], [1, 2, 4]) + chain(make_envelope, keys[1], [2, 3]))
    assert log.vector() == VersionVector({keys[0].device_id: 2})


def test_vector_advances_when_a_gap_is_filled(
    make_envelope: EnvelopeFactory, keys: list[DeviceKey]
) -> None:
    log = MessageLog()
    log.merge(chain(make_envelope, keys[0], [1, 3, 4]))
    log.add(chain(make_envelope, keys[0], [2])[0])
    assert log.vector().get(keys[0].device_id) == 4


def test_missing_for_sends_what_the_peer_lacks_in_device_then_seq_order(
    make_envelope: EnvelopeFactory, keys: list[DeviceKey]
) -> None:
    first, second = chain(make_envelope, keys[0], [1, 2, 3]), chain(make_envelope, keys[1], [1, 2])
    log = MessageLog()
    log.merge(second + first)
    peer = VersionVector({keys[0].device_id: 1})
    assert log.missing_for(peer) == [first[1], first[2], second[0], second[1]]


def test_missing_for_a_peer_with_everything_is_empty(
    make_envelope: EnvelopeFactory, keys: list[DeviceKey]
) -> None:
    log = MessageLog()
    log.merge(chain(make_envelope, keys[0], [1, 2]))
    assert log.missing_for(log.vector()) == []


def test_missing_for_returns_at_most_limit(
    make_envelope: EnvelopeFactory, keys: list[DeviceKey]
) -> None:
    envs = chain(make_envelope, keys[0], list(range(1, 8)))
    log = MessageLog()
    log.merge(envs)
    assert log.missing_for(VersionVector(), limit=3) == envs[:3]


def test_missing_for_defaults_to_batches_of_max_batch(
    make_envelope: EnvelopeFactory, keys: list[DeviceKey]
) -> None:
    log = MessageLog()
    log.merge(chain(make_envelope, keys[0], list(range(1, MAX_BATCH + 6))))
    assert len(log.missing_for(VersionVector())) == MAX_BATCH


def test_missing_for_continues_after_the_last_envelope_sent(
    make_envelope: EnvelopeFactory, keys: list[DeviceKey]
) -> None:
    envs = chain(make_envelope, keys[0], [1, 2, 3]) + chain(make_envelope, keys[1], [1, 2])
    log = MessageLog()
    log.merge(envs)
    batches: list[list[Envelope]] = []
    after: tuple[str, int] | None = None
    while batch := log.missing_for(VersionVector(), limit=2, after=after):
        batches.append(batch)
        after = (batch[-1].device, batch[-1].seq)
    assert batches == [envs[0:2], envs[2:4], envs[4:5]]


def test_walking_with_after_gets_past_envelopes_the_peer_already_holds(
    make_envelope: EnvelopeFactory, keys: list[DeviceKey]
) -> None:
    # Neither side has seq 1, so the peer's vector stays at 0 and, asked afresh each time,
    # missing_for would offer seqs 2 and 3 (which the peer holds) forever and never seq 4.
    envs = chain(make_envelope, keys[0], [2, 3, 4])
    ours, theirs = MessageLog(), MessageLog()
    ours.merge(envs)
    theirs.merge(envs[:2])
    assert ours.missing_for(theirs.vector(), limit=2) == envs[:2]
    rest = ours.missing_for(theirs.vector(), limit=2, after=(envs[1].device, envs[1].seq))
    assert rest == [envs[2]]


def test_missing_for_keeps_a_batch_within_max_bytes(
    make_envelope: EnvelopeFactory, keys: list[DeviceKey]
) -> None:
    envs = chain(make_envelope, keys[0], [1, 2, 3, 4])
    log = MessageLog()
    log.merge(envs)
    two = len(
        json.dumps([env.to_dict() for env in envs[:2]], ensure_ascii=False, separators=(",", ":"))
    )
    assert log.missing_for(VersionVector(), max_bytes=two) == envs[:2]
    assert log.missing_for(VersionVector(), max_bytes=two - 1) == envs[:1]


def test_missing_for_sends_one_envelope_even_if_it_exceeds_max_bytes(
    make_envelope: EnvelopeFactory,
) -> None:
    log = MessageLog()
    log.add(make_envelope())
    assert len(log.missing_for(VersionVector(), max_bytes=10)) == 1


def test_missing_for_refuses_a_limit_below_one(make_envelope: EnvelopeFactory) -> None:
    with pytest.raises(ValueError):
        MessageLog().missing_for(VersionVector(), limit=0)


def test_gaps_list_the_seqs_missing_below_the_highest(
    make_envelope: EnvelopeFactory, keys: list[DeviceKey]
) -> None:
    log = MessageLog()
    log.merge(chain(make_envelope, keys[0], [1, 2, 4, 7]) + chain(make_envelope, keys[1], [3]))
    assert log.gaps() == {keys[0].device_id: [3, 5, 6], keys[1].device_id: [1, 2]}


def test_log_without_gaps_reports_none(
    make_envelope: EnvelopeFactory, keys: list[DeviceKey]
) -> None:
    log = MessageLog()
    log.merge(chain(make_envelope, keys[0], [1, 2, 3]))
    assert log.gaps() == {}


def test_gaps_are_capped_so_a_seq_far_ahead_cannot_exhaust_memory(
    make_envelope: EnvelopeFactory,
) -> None:
    log = MessageLog()
    log.add(make_envelope(seq=MAX_SEQ))
    (missing,) = log.gaps(limit=5).values()
    assert missing == [1, 2, 3, 4, 5]
    (missing,) = log.gaps().values()
    assert len(missing) == MAX_BATCH


def test_gaps_refuse_a_limit_below_one() -> None:
    with pytest.raises(ValueError):
        MessageLog().gaps(limit=0)


def test_contains_and_get_refuse_malformed_ids(make_envelope: EnvelopeFactory) -> None:
    log = MessageLog()
    env = make_envelope()
    log.add(env)
    assert f"{env.device}:²" not in log
    assert "nonsense" not in log
    assert 42 not in log
    assert log.get(f"{env.device}:x") is None
