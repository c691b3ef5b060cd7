from __future__ import annotations

import pytest

from protocol import MAX_SEQ, MAX_VECTOR_DEVICES, InvalidEnvelope, VersionVector, vector_of

A = "a" * 32
B = "b" * 32


def device(n: int) -> str:
    return f"{n:032x}"


def test_absent_device_counts_as_zero() -> None:
    assert VersionVector().get(A) == 0


def test_contiguous_seqs_give_the_highest() -> None:
    assert vector_of([(A, 1), (A, 2), (A, 3)]).get(A) == 3


def test_a_gap_stops_the_count() -> None:
    assert vector_of([(A, 1), (A, 2), (A, 4)]).get(A) == 2


def test_seqs_without_the_first_give_zero() -> None:
    vector = vector_of([(A, 2), (A, 3)])
    assert vector.get(A) == 0
    assert A not in vector


def test_order_and_repeats_do_not_matter() -> None:
    assert vector_of([(A, 3), (A, 1), (A, 2), (A, 1)]) == VersionVector({A: 3})


def test_each_device_counts_on_its_own() -> None:
    vector = vector_of([(A, 1), (B, 1), (B, 2), (A, 3)])
    assert vector.to_dict() == {A: 1, B: 2}


def test_zero_entries_are_dropped_so_equal_knowledge_compares_equal() -> None:
    assert VersionVector({A: 0}) == VersionVector()
    assert VersionVector({A: 0}).to_dict() == {}


def test_vectors_with_different_entries_differ() -> None:
    assert VersionVector({A: 1}) != VersionVector({A: 2})
    assert VersionVector({A: 1}) != VersionVector({B: 1})


def test_equal_vectors_hash_alike() -> None:
    assert hash(VersionVector({A: 1, B: 2})) == hash(VersionVector({B: 2, A: 1}))


def test_vector_is_immutable() -> None:
    with pytest.raises(AttributeError):
        VersionVector()._seqs = {}


def test_mapping_views_list_devices_in_sorted_order() -> None:
    vector = VersionVector({B: 2, A: 1})
    assert list(vector) == [A, B]
    assert list(vector.items()) == [(A, 1), (B, 2)]
    assert len(vector) == 2


def test_dict_round_trips() -> None:
    vector = VersionVector({A: 5, B: MAX_SEQ})
    assert VersionVector.from_dict(vector.to_dict()) == vector


@pytest.mark.parametrize("obj", [None, [], "x", [[A, 1]]])
def test_vector_that_is_not_an_object_is_rejected(obj: object) -> None:
    with pytest.raises(InvalidEnvelope, match="JSON object"):
        VersionVector.from_dict(obj)


@pytest.mark.parametrize("key", ["A" * 32, "a" * 31, "a" * 33, "z" * 32, 7])
def test_vector_key_that_is_not_a_device_id_is_rejected(key: object) -> None:
    with pytest.raises(InvalidEnvelope, match="device ids"):
        VersionVector.from_dict({key: 1})


@pytest.mark.parametrize("seq", [-1, MAX_SEQ + 1, True, 1.0, "1", None])
def test_vector_entry_out_of_range_or_not_an_integer_is_rejected(seq: object) -> None:
    with pytest.raises(InvalidEnvelope, match="integer from 0"):
        VersionVector.from_dict({A: seq})


def test_vector_entry_at_its_bounds_is_accepted() -> None:
    assert VersionVector.from_dict({A: 0, B: MAX_SEQ}).get(B) == MAX_SEQ


def test_vector_with_the_maximum_number_of_devices_is_accepted() -> None:
    obj = {device(n): 1 for n in range(MAX_VECTOR_DEVICES)}
    assert len(VersionVector.from_dict(obj)) == MAX_VECTOR_DEVICES


def test_vector_with_one_device_too_many_is_rejected() -> None:
    obj = {device(n): 1 for n in range(MAX_VECTOR_DEVICES + 1)}
    with pytest.raises(InvalidEnvelope, match="too many devices"):
        VersionVector.from_dict(obj)
