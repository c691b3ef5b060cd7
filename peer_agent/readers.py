"""The rooms the device's open chat pages are reading, and the read markers kept for them.

A page says on its WebSocket which room it shows while it is in view (ui.py, a `reading`
frame). A message from someone else in a room some page reads is seen as it comes: the device
does not count it unread, so no room list goes to the pages for it (counting it, then the page
marking it read, cost a POST, a write of the read marker, two room-list pushes and two redraws
of the list for every message; static/chat/browser-device.js's `beingRead` is the browser
peer's rule).

The room's read marker in the log still follows what was seen, so that a restart does not
count those messages: it is written when the room stops being read by every page (a page
closed, switched room or was hidden), while it is read at most every READ_MARK_INTERVAL seconds
as messages come (the first after a quiet spell at the end of its loop turn), when the room is
left, and when the device closes.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from .ui import Coalesced

READ_MARK_INTERVAL = 3.0
"""Seconds between two writes of the read markers of rooms being read, at most, while their
messages come: what a crash can leave counted unread that a person saw."""


class Readers:
    """Which room each open page reads (`read`), and the markers of the rooms whose messages
    were seen as they came (`seen`), written through `mark_read(room)`."""

    def __init__(self, mark_read: Callable[[str], None],
                 interval: float = READ_MARK_INTERVAL) -> None:
        self._mark_read = mark_read
        self._pages: dict[Hashable, str] = {}  # page -> the room it reads
        self._unmarked: set[str] = set()  # rooms read with messages seen since their marker
        self._soon = Coalesced(self._mark_unmarked, interval)
        self._closed = False

    def being_read(self, room: str) -> bool:
        """Whether some open page reads `room` now."""
        return room in self._pages.values()

    def read(self, page: Hashable, room: str | None) -> None:
        """`page` reads `room` from now on (None: no room, the page is hidden or closed). The
        room it read before, if no page reads it any more, gets its marker now."""
        if self._closed:
            return
        before = self._pages.pop(page, None)
        if room is not None:
            self._pages[page] = room
        if before is not None and not self.being_read(before):
            self._mark(before)

    def seen(self, room: str) -> None:
        """A message from someone else was shown in `room`, which a page reads: its marker is
        written soon, with those of the other rooms seen meanwhile."""
        if self._closed:
            return
        self._unmarked.add(room)
        self._soon.request()

    def forget(self, room: str) -> None:
        """`room` is being left: its marker is written now, and no page reads it any more."""
        self._pages = {page: r for page, r in self._pages.items() if r != room}
        self._mark(room)

    def close(self) -> None:
        """Write every marker still due; pages read nothing from now on."""
        self._soon.cancel()
        self._mark_unmarked()
        self._pages.clear()
        self._closed = True

    def _mark(self, room: str) -> None:
        """Write `room`'s marker if messages were seen in it since it was last written."""
        if room in self._unmarked:
            self._unmarked.discard(room)
            self._mark_read(room)

    def _mark_unmarked(self) -> None:
        unmarked, self._unmarked = self._unmarked, set()
        for room in sorted(unmarked):
            self._mark_read(room)
