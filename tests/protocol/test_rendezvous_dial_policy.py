"""What an agent dials at a member's say-so (protocol.rendezvous.dial_refusal): only what it
could itself have published, never link-local, metadata or the signaling server's address."""

from __future__ import annotations

import pytest

from protocol.rendezvous import dial_refusal, publish_refusal, split_address

LOOPBACK_AGENT = "127.0.0.1:40000"
LAN_AGENT = "10.0.0.2:40000"
SERVER = ("127.0.0.1", 5000)


@pytest.mark.parametrize("address", [
    "127.0.0.1:41000", "127.0.0.1:1024", "127.0.0.1:65535", "127.5.6.7:50000",
])
def test_an_agent_on_loopback_dials_loopback_peers(address: str) -> None:
    assert dial_refusal(address, LOOPBACK_AGENT, SERVER) is None


@pytest.mark.parametrize(("address", "reason"), [
    ("169.254.169.254:8080", "link-local"),
    ("[fe80::1]:4000", "link-local"),
    ("[fd00:ec2::254]:4000", "metadata"),
    ("0.0.0.0:4000", "unspecified"),
    ("224.0.0.1:4000", "multicast"),
    ("internal.example:4000", "host name"),
    ("[::ffff:127.0.0.1]:4000", "IPv4-mapped"),
    ("10.0.0.1:4000", "dials only loopback"),
    ("127.0.0.1:22", "ports below 1024"),
    ("127.0.0.1:5000", "signaling server"),
    ("[::1]:4000", "IPv4"),
])
def test_an_agent_on_loopback_refuses_the_rest(address: str, reason: str) -> None:
    refusal = dial_refusal(address, LOOPBACK_AGENT, SERVER)
    assert refusal is not None and reason in refusal, refusal


def test_an_agent_on_a_network_never_dials_loopback_or_the_servers_host() -> None:
    server = ("10.0.0.5", 443)
    assert dial_refusal("10.0.0.6:40001", LAN_AGENT, server) is None
    assert "loopback" in str(dial_refusal("127.0.0.1:40001", LAN_AGENT, server))
    assert "signaling server" in str(dial_refusal("10.0.0.5:40001", LAN_AGENT, server))


def test_an_agent_without_an_address_of_its_own_dials_nothing() -> None:
    assert dial_refusal("127.0.0.1:41000", None, SERVER) is not None


@pytest.mark.parametrize("address", ["192.0.2.7:4433", "[2001:db8::1]:7000", "127.0.0.1:1"])
def test_the_server_lists_ip_addresses_an_agent_might_dial(address: str) -> None:
    assert publish_refusal(address) is None


@pytest.mark.parametrize("address", ["::1:4000", "[127.0.0.1]:4000", "host:", "1.2.3.4:0"])
def test_only_ip_port_and_bracketed_ipv6_split(address: str) -> None:
    assert split_address(address) is None
