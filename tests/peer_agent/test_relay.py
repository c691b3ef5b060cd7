"""Signal relaying between peers: direct when possible, one hop otherwise, copies dropped."""

from __future__ import annotations

from peer_agent.relay import SignalRelay
from protocol.relay import Sender, parse_signal_frame

ME, ALICE, BOB, CAROL = "0" * 32, "a" * 32, "b" * 32, "c" * 32


class Paths:
    """Direct paths to some devices; records what was sent on them."""

    def __init__(self, *devices: str) -> None:
        self.devices = list(devices)
        self.sent: list[tuple[str, str]] = []

    def send(self, device: str, text: str) -> bool:
        if device not in self.devices:
            return False
        self.sent.append((device, text))
        return True


def relay(paths: Paths) -> SignalRelay:
    return SignalRelay(ME, send_direct=paths.send, neighbours=lambda: paths.devices)


def test_a_signal_for_a_neighbour_goes_to_it_alone() -> None:
    paths = Paths(ALICE, BOB)
    assert relay(paths).send(BOB, "offer", {"sdp": "x"})
    assert [device for device, _ in paths.sent] == [BOB]
    frame = parse_signal_frame(paths.sent[0][1])
    assert frame.to == BOB and frame.sender is None


def test_a_signal_for_someone_else_goes_to_every_neighbour() -> None:
    paths = Paths(ALICE, BOB)
    assert relay(paths).send(CAROL, "answer", {"sdp": "x"})
    assert sorted(device for device, _ in paths.sent) == [ALICE, BOB]
    assert not relay(Paths()).send(CAROL, "answer", {}), "no neighbour: nothing sent"


def test_a_neighbour_forwards_once_naming_the_sender() -> None:
    author = Paths(ME)
    relay(author).send(CAROL, "offer", {"sdp": "x"})
    frame = parse_signal_frame(author.sent[0][1])
    middle = Paths(CAROL, ALICE)
    assert relay(middle).receive(Sender("alice", ALICE), frame) is None
    assert len(middle.sent) == 1 and middle.sent[0][0] == CAROL
    forwarded = parse_signal_frame(middle.sent[0][1])
    assert forwarded.sender == Sender("alice", ALICE)
    # A forwarded frame is never forwarded again: one hop.
    third = Paths(CAROL)
    assert relay(third).receive(Sender("bob", BOB), forwarded) is None
    assert third.sent == []


def test_the_receiver_drops_copies_that_came_by_several_relays() -> None:
    author = Paths(ME)
    relay(author).send(ME, "offer", {})  # to itself: a stand-in for a frame addressed to us
    frame = parse_signal_frame(author.sent[0][1]).forwarded(Sender("alice", ALICE))
    receiver = relay(Paths())
    got = receiver.receive(Sender("bob", BOB), frame)
    assert got is not None and got.sender == Sender("alice", ALICE)
    assert receiver.receive(Sender("carol", CAROL), frame) is None


def test_a_frame_its_author_sent_to_us_names_the_path_it_came_on() -> None:
    paths = Paths(ME)
    relay(paths).send(ME, "hello", {"rendezvous": ""})
    frame = parse_signal_frame(paths.sent[0][1])
    got = relay(Paths()).receive(Sender("alice", ALICE), frame)
    assert got is not None and got.sender == Sender("alice", ALICE) and got.kind == "hello"
