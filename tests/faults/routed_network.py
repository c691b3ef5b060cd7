"""A routed test network with a firewall: each peer on a host of its own, so a rule between two
addresses can cut exactly one pair of peers off from each other.

The test's thread moves into a fresh network namespace, the **hub**, which routes between the
hosts and holds the server's address (10.77.0.1 on its `lo`). Each **host** is a namespace of its
own, held open by a `sleep` process, joined to the hub by a veth pair on a /24 of its own (host
n is 10.77.n.2, its gateway 10.77.n.1). An agent on a host gathers that one address for ICE, as
on a real machine. `block(a, b)` adds iptables DROP rules to the hub's FORWARD chain: no packet
passes between the two hosts either way, whatever the protocol or port.

Nothing leaves: the hub has no link to the world, and every namespace goes away with the last
process inside it. Needs root (CI runs as root), iproute2, util-linux's `unshare` and `nsenter`,
and iptables (`.ci/run` installs it).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from launcher import track
from tests.helpers import read_line_matching, stop_process

CLONE_NEWNET = 0x40000000
SERVER_ADDRESS = "10.77.0.1"
TOOLS = ("ip", "iptables", "unshare", "nsenter", "sysctl")

_libc = ctypes.CDLL(None, use_errno=True)


def unavailable_reason() -> str | None:
    """Why a routed network cannot be made here, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "making network namespaces needs root (CI runs as root)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing tools: {', '.join(missing)} (apt-get install iptables iproute2)"
    return None


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns failed: {os.strerror(errno)}")


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")


@dataclass
class Host:
    """A network namespace of its own with one address, held open by `holder`."""

    index: int
    holder: subprocess.Popen[str]

    @property
    def address(self) -> str:
        return f"10.77.{self.index}.2"

    @property
    def netns(self) -> str:
        return f"/proc/{self.holder.pid}/ns/net"

    def command(self, argv: list[str]) -> list[str]:
        """`argv` run inside this host (nsenter execs it: the pid is the program's own)."""
        return ["nsenter", f"--net={self.netns}", "--", *argv]

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        """Run the block with the calling thread in this host's namespace (to reach a UI
        that listens on the host's 127.0.0.1), then move it back."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(self.netns, os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(target)
            os.close(home)


class RoutedNetwork:
    """The hub (the calling thread's namespace until `close()`) and the hosts routed by it."""

    def __init__(self) -> None:
        self.hosts: list[Host] = []
        self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        if _libc.unshare(CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            os.close(self._home)
            raise OSError(errno, f"unshare(CLONE_NEWNET) failed: {os.strerror(errno)}")
        try:
            _run("ip", "link", "set", "lo", "up")
            _run("ip", "addr", "add", f"{SERVER_ADDRESS}/32", "dev", "lo")
            _run("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        except (RuntimeError, OSError, subprocess.SubprocessError):
            self.close()
            raise

    def add_host(self) -> Host:
        """A new host joined to the hub, with its address and a default route through it."""
        index = len(self.hosts) + 1
        holder = track(subprocess.Popen(
            ["unshare", "--net", "sh", "-c", "echo ready && exec sleep infinity"],
            stdout=subprocess.PIPE, text=True))
        host = Host(index, holder)
        self.hosts.append(host)
        read_line_matching(holder, "ready", timeout=30)
        hub_side = f"h{index}"
        _run("ip", "link", "add", hub_side, "type", "veth", "peer", "name", "eth0",
             "netns", str(holder.pid))
        _run("ip", "addr", "add", f"10.77.{index}.1/24", "dev", hub_side)
        _run("ip", "link", "set", hub_side, "up")
        _run(*host.command(["sh", "-c",
                            f"ip link set lo up && ip addr add {host.address}/24 dev eth0 && "
                            f"ip link set eth0 up && ip route add default via 10.77.{index}.1"]))
        return host

    def block(self, a: Host, b: Host) -> None:
        """A firewall between two hosts: the hub drops every packet from one to the other."""
        for source, dest in ((a, b), (b, a)):
            _run("iptables", "-A", "FORWARD", "-s", source.address, "-d", dest.address,
                 "-j", "DROP")

    def dropped(self) -> int:
        """How many packets the firewall rules dropped so far."""
        out = subprocess.run(["iptables", "-L", "FORWARD", "-v", "-n", "-x"],
                             capture_output=True, text=True, check=True, timeout=30).stdout
        return sum(int(line.split()[0]) for line in out.splitlines()
                   if line.split()[2:3] == ["DROP"])

    def close(self) -> None:
        """Stop the hosts' holders by pid and move the thread back where it came from."""
        for host in self.hosts:
            stop_process(host.holder)
        self.hosts = []
        if self._home >= 0:
            try:
                _setns(self._home)
            finally:
                os.close(self._home)
                self._home = -1
