"""Page tokens `lamport.device.seq` used by the history page and the agent UI."""

import pytest

from protocol import MAX_LAMPORT
from protocol.paging import order_token, parse_order_token

DEVICE = "0123456789abcdef0123456789abcdef"


def test_a_token_round_trips() -> None:
    assert parse_order_token(order_token((7, DEVICE, 3))) == (7, DEVICE, 3)


@pytest.mark.parametrize("raw", [
    None, "", "1.2", "a.b.c", f"1.{DEVICE}.x", f"².{DEVICE}.1", f"-1.{DEVICE}.1",
    f"{MAX_LAMPORT + 1}.{DEVICE}.1", f"1.{'f' * 33}.1", f"{'9' * 30}.{DEVICE}.1",
])
def test_a_malformed_token_reads_as_none(raw: str | None) -> None:
    assert parse_order_token(raw) is None
