"""The fault suite's checker: given what was acknowledged and every log after healing, count
what went wrong. Pure code: the logs come in as lists of message ids in display order."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Counts:
    """The four numbers the suite requires to be 0."""

    lost: int
    duplicated: int
    order: int
    divergence: int

    def ok(self) -> bool:
        return self.lost == self.duplicated == self.order == self.divergence == 0

    def line(self) -> str:
        return (f"lost={self.lost} duplicated={self.duplicated} order={self.order} "
                f"divergence={self.divergence}")


OrderKey = tuple[int, str, int]
"""(lamport, device, seq): a message's place in the display order; its id is device:seq."""


def message_id(key: OrderKey) -> str:
    return f"{key[1]}:{key[2]}"


def order_violations(log: Iterable[OrderKey]) -> int:
    """Authors whose messages in this log are not exactly seq 1, 2, 3, … in the log's order:
    a gap (a seq missing) or a reordering (a seq before a lower one) counts once per author."""
    seqs: dict[str, list[int]] = {}
    for _, device, seq in log:
        seqs.setdefault(device, []).append(seq)
    return sum(1 for run in seqs.values() if run != list(range(1, len(run) + 1)))


def check(acknowledged: Iterable[str], logs: Mapping[str, list[OrderKey]]) -> Counts:
    """Count, over every log (agents and server) after healing, each given in its own order:

    - lost: acknowledged ids missing from at least one log;
    - duplicated: ids held more than once by one log, summed over logs;
    - order: (log, author) pairs with a gap or a reordering of the author's seqs;
    - divergence: logs that differ from the union of all logs in display order.
    """
    held = [{message_id(k) for k in log} for log in logs.values()]
    lost = sum(1 for m in set(acknowledged) if any(m not in ids for ids in held))
    duplicated = sum(n - 1 for log in logs.values()
                     for n in Counter(message_id(k) for k in log).values() if n > 1)
    order = sum(order_violations(log) for log in logs.values())
    reference = sorted({k for log in logs.values() for k in log})
    divergence = sum(1 for log in logs.values() if list(log) != reference)
    return Counts(lost, duplicated, order, divergence)
