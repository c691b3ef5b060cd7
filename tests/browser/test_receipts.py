"""Receipts in the browser peer, as in the agent (tests/peer_agent/test_room_core.py): after
a batch is stored, the sender gets a receipt naming only the messages it authored, the only
ones its delivery marks show; a sync batch relayed from other authors gets none. The page's
own module (static/chat/browser-receiving.js) runs in Chromium; its peer is a recorder of the
frames it would send."""

from __future__ import annotations

from typing import Any

from tests.browser.conftest import OpenPage
from tests.browser.stack import Server

BOB, CAROL = "b" * 32, "c" * 32


def test_a_receipt_names_only_the_senders_own_messages(open_page: OpenPage,
                                                       server: Server) -> None:
    page = open_page()
    page.goto(server.url + "/")
    sent: list[Any] = page.evaluate(
        """async ([bob, carol]) => {
          const { Receiving } = await import('/static/chat/browser-receiving.js');
          const sent = [];
          const recorder = {
            mesh: { send: (device, text) => sent.push([device, JSON.parse(text)]) },
            sync: { noteFresh: () => {} },
            roomServer: { flushAfterGrace: () => {} },
            store: { hasGaps: () => false },
          };
          const receiving = new Receiving(recorder);
          const env = (device, seq) => ({ device, seq });
          const peer = { user: 'bob', device: bob };
          const batch = [env(bob, 1), env(carol, 1), env(bob, 2)];
          await receiving.afterStored(batch, batch, peer, false, 0);
          await receiving.afterStored([env(carol, 2)], [env(carol, 2)], peer, false, 0);
          return sent;
        }""", [BOB, CAROL])
    assert sent == [[BOB, {"t": "ack", "ids": [f"{BOB}:1", f"{BOB}:2"]}]]
