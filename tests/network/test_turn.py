"""TURN for real: two peers behind a NAT that drops traffic between them (tests/network/
natlab.py) meet only through coturn, with credentials the server minted from the shared secret.

Also measures, in the same run and on the same machines, the time to open a link and the
one-way time of a 100-byte message over the relay and over the direct path (the router's block
lifted), and writes them to artifacts/turn-vs-direct.json."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import requests
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from playwright.sync_api import expect, sync_playwright

from launcher import AgentProcess, ServerProcess
from signaling.turn import TurnSettings, turn_ice_server
from tests.browser.conftest import CHROMIUM_ARGS, DESKTOP, chromium_path, screenshot
from tests.helpers import ROOT, poll, require
from tests.network.conftest import Coturn
from tests.network.natlab import PUBLIC, NatLab, inside
from tests.network.pair import open_pair

PASSWORD = "password-" + "x" * 8
RESULTS = ROOT / "artifacts" / "turn-vs-direct.json"


def credentials(coturn: Coturn, user: str, now: float | None = None) -> list[dict[str, Any]]:
    return [turn_ice_server(coturn.settings, user, time.time() if now is None else now)]


async def gathered_types(lab: NatLab, servers: list[dict[str, Any]]) -> set[str]:
    """The candidate types a peer in namespace "a" gathers with these ICE servers."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[RTCIceServer(**s) for s in servers]))
    try:
        pc.createDataChannel("probe")
        with inside(lab.ns("a")):
            await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        return {line.split(" typ ")[1].split()[0] for line in sdp.splitlines()
                if line.startswith("a=candidate:")}
    finally:
        await pc.close()


def test_coturn_relays_only_for_credentials_minted_from_its_secret(
        lab: NatLab, coturn: Coturn) -> None:
    async def body() -> None:
        assert await gathered_types(lab, credentials(coturn, "alice")) == {"host", "relay"}
        expired = credentials(coturn, "alice", now=time.time() - 2 * coturn.settings.ttl)
        assert await gathered_types(lab, expired) == {"host"}
        forged = TurnSettings(coturn.settings.urls, "not-the-secret", 600)
        assert await gathered_types(
            lab, [turn_ice_server(forged, "alice", time.time())]) == {"host"}

    asyncio.run(body())


def test_peers_behind_the_nat_cannot_link_without_turn(lab: NatLab, coturn: Coturn) -> None:
    async def body() -> None:
        with pytest.raises(TimeoutError):
            await open_pair(lab, [], [], timeout=6)

    asyncio.run(body())


def test_relay_and_direct_links_are_timed_in_the_same_run(lab: NatLab, coturn: Coturn) -> None:
    async def body() -> dict[str, Any]:
        results: dict[str, Any] = {}
        relayed = await open_pair(lab, credentials(coturn, "alice"), credentials(coturn, "bob"))
        try:
            path_a, path_b = relayed.paths()
            assert path_a is not None and path_b is not None
            assert path_a.kind == path_b.kind == "relay"
            assert path_a.local_address.startswith(f"{PUBLIC}:")
            results["relay"] = {"connect_ms": relayed.connect_ms,
                                "one_way_ms": await relayed.one_way_ms()}
        finally:
            await relayed.close()
        lab.block_direct(False)
        try:
            direct = await open_pair(lab, [], [])
            try:
                path_a, _ = direct.paths()
                assert path_a is not None and path_a.kind == "host"
                results["direct"] = {"connect_ms": direct.connect_ms,
                                     "one_way_ms": await direct.one_way_ms()}
            finally:
                await direct.close()
        finally:
            lab.block_direct(True)
        return results

    results = asyncio.run(body())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results))


class NsServer(ServerProcess):
    """The signaling server started inside one of the lab's namespaces; stopped by pid
    (`ip netns exec` execs it)."""

    def __init__(self, lab: NatLab, role: str, workdir: Path, env: dict[str, str]) -> None:
        super().__init__(workdir, env=env, host=PUBLIC)
        self.lab, self.role = lab, role

    def command(self) -> list[str]:
        return ["ip", "netns", "exec", self.lab.names[self.role], *super().command()]


class NsAgent(AgentProcess):
    """An agent started inside one of the lab's namespaces, ICE on every interface there; its
    UI, bound on the namespace's loopback, is called from a thread moved into it."""

    def __init__(self, lab: NatLab, role: str, server: NsServer, name: str, room: str,
                 data_dir: Path) -> None:
        super().__init__(server, name, room, data_dir, PASSWORD, ice_host=None)
        self.lab, self.role = lab, role

    def command(self) -> list[str]:
        return ["ip", "netns", "exec", self.lab.names[self.role], *super().command()]

    def get(self, path: str, params: dict[str, str] | None = None,
            timeout: float = 10.0) -> Any:
        return self.lab.call_in(self.role, partial(super().get, path, params, timeout))


NsProcess = NsServer | NsAgent


@pytest.fixture(scope="module")
def turn_room(lab: NatLab, coturn: Coturn,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[NsProcess]]:
    """The signaling server on the public side, minting TURN credentials from coturn's
    secret, and alice and bob each on a private side, in one room."""
    tmp_path = tmp_path_factory.mktemp("turn-room")
    started: list[NsProcess] = []
    try:
        server = NsServer(lab, "pub", tmp_path / "server", {
            "TURN_URLS": ",".join(coturn.settings.urls),
            "TURN_SECRET": coturn.settings.secret, "TURN_TTL": "600"})
        started.append(server)
        server.start()
        room = f"turn-{secrets.token_hex(3)}"
        for role, name in (("a", "alice"), ("b", "bob")):
            agent = NsAgent(lab, role, server, name, room, tmp_path / name)
            started.append(agent)
            agent.start()
        yield started
    finally:
        for running in reversed(started):
            running.stop()


def test_two_agents_behind_the_nat_link_through_turn_and_say_relay(
        lab: NatLab, turn_room: list[NsProcess]) -> None:
    _, alice, bob = turn_room

    def state(agent: NsProcess) -> dict[str, Any]:
        reply = lab.call_in(agent.role, lambda: requests.get(agent.url + "/api/state",
                                                             timeout=10))
        reply.raise_for_status()
        result: dict[str, Any] = reply.json()
        return result

    def linked(agent: NsProcess) -> dict[str, Any] | None:
        peers = state(agent)["peers"]
        return peers[0] if peers and peers[0]["state"] == "connected" else None

    for agent in (alice, bob):
        peer = poll(lambda agent=agent: linked(agent), timeout=40,
                    message=f"{agent.role} linked\n{agent.log()}")
        assert peer["path"]["kind"] == "relay", peer
        assert peer["path"]["local"] == "relay"
        assert peer["path"]["local_address"].startswith(f"{PUBLIC}:")

    reply = lab.call_in("a", lambda: requests.post(alice.url + "/api/messages",
                                                   json={"text": "through the relay"},
                                                   timeout=10))
    assert reply.status_code == 201, reply.text

    def texts(agent: NsProcess) -> list[str]:
        page = lab.call_in(agent.role, lambda: requests.get(agent.url + "/api/messages",
                                                            timeout=10)).json()
        return [m["text"] for m in page["messages"]]

    poll(lambda: "through the relay" in texts(bob), timeout=15, message="bob has it")


def test_the_network_view_says_the_link_goes_through_the_turn_relay(
        lab: NatLab, turn_room: list[NsProcess], tmp_path: Path) -> None:
    """alice's own chat UI, in Chromium run inside her namespace (Playwright drives it over a
    pipe, so only the page's HTTP travels in the namespace)."""
    executable = chromium_path()
    require(None if executable else "Debian's chromium is not installed",
            "the view needs Debian's chromium (apt-get install chromium)")
    assert executable is not None
    _, alice, _ = turn_room
    wrapper = tmp_path / "chromium-in-a"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {lab.ns("a")} {executable} "$@"\n')
    wrapper.chmod(0o755)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(wrapper), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=DESKTOP)  # type: ignore[arg-type]
            page.goto(alice.url + "/")
            edge = page.locator("svg#network-graph g.edge[data-kind=peer]")
            expect(edge).to_have_attribute("data-path", "relay", timeout=60_000)
            expect(edge).to_have_attribute("data-state", "connected")
            expect(edge.locator(".path")).to_have_text("TURN relay")
            expect(edge.locator("title")).to_contain_text("relayed by the TURN server")
            expect(page.locator("#members .member[data-device]")).to_have_attribute(
                "data-path", "relay")
            expect(page.locator("#members .member[data-device] .link-state")).to_contain_text(
                "P2P via TURN relay")
            expect(page.locator("#network-summary")).to_contain_text(
                "1 of 1 peer linked (1 through the TURN relay)")
            screenshot(page, "network-view-turn-relay")
        finally:
            browser.close()
