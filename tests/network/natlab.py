"""A small internet in network namespaces: two private networks behind one NAT router, and a
public network holding the TURN server (coturn) and the signaling server.

    a (10.1.0.2) ──┐                      ┌── pub (198.51.100.1): coturn :3478, signaling
                   ├── nat (masquerades ──┤
    b (10.2.0.2) ──┘   onto 198.51.100.2) ┘

The router masquerades what leaves towards the public side, and drops whatever one private
side sends the other (`block_direct`), so a and b can only meet through the TURN relay. The
public side has no route into the private networks, as on the internet. Every address lives in
namespaces made here (TEST-NET-2 and 10/8); none has a route to the machine's own network.

Namespaces are named `gb<token>-<role>` with a random token, so parallel runs never meet; veth
ends are made directly inside their namespaces, so no interface name ever appears in the
machine's own namespace. `close()` deletes them all. Needs root, `ip` and `iptables`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from launcher import track

CLONE_NEWNET = 0x40000000
PUBLIC = "198.51.100.1"
NAT_PUBLIC = "198.51.100.2"
PRIVATE = {"a": "10.1.0.2", "b": "10.2.0.2"}
GATEWAY = {"a": "10.1.0.1", "b": "10.2.0.1"}
ROLES = ("pub", "nat", "a", "b")

T = TypeVar("T")


def unavailable_reason() -> str | None:
    """Why the lab cannot be built here, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    for tool, package in (("ip", "iproute2"), ("iptables", "iptables")):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (apt-get install {package})"
    return None


def _run(*args: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stderr.strip()}")


class NatLab:
    """The four namespaces above, built on construction; `close()` removes them."""

    def __init__(self) -> None:
        self.token = secrets.token_hex(3)
        self.names = {role: f"gb{self.token}-{role}" for role in ROLES}
        self._made: list[str] = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def ns(self, role: str) -> str:
        return self.names[role]

    def _build(self) -> None:
        for role in ROLES:
            _run("ip", "netns", "add", self.names[role])
            self._made.append(self.names[role])
            # IPv4 only: the lab's addresses are all IPv4, and link-local IPv6 would only add
            # candidates that lead nowhere.
            self.sh(role, "ip link set lo up && sysctl -qw net.ipv6.conf.all.disable_ipv6=1 "
                          "net.ipv6.conf.default.disable_ipv6=1")
        pub, nat = self.names["pub"], self.names["nat"]
        _run("ip", "-n", nat, "link", "add", "wan1", "type", "veth", "peer", "name", "wan0",
             "netns", pub)
        self.sh("pub", f"ip addr add {PUBLIC}/24 dev wan0 && ip link set wan0 up")
        self.sh("nat", f"ip addr add {NAT_PUBLIC}/24 dev wan1 && ip link set wan1 up")
        for side in ("a", "b"):
            _run("ip", "-n", nat, "link", "add", f"to-{side}", "type", "veth", "peer", "name",
                 "eth0", "netns", self.names[side])
            self.sh("nat", f"ip addr add {GATEWAY[side]}/24 dev to-{side} && "
                           f"ip link set to-{side} up")
            self.sh(side, f"ip addr add {PRIVATE[side]}/24 dev eth0 && ip link set eth0 up && "
                          f"ip route add default via {GATEWAY[side]}")
        self.sh("nat", "sysctl -qw net.ipv4.ip_forward=1 && "
                       "iptables -t nat -A POSTROUTING -o wan1 -j MASQUERADE")
        self.block_direct(True)

    def block_direct(self, blocked: bool) -> None:
        """Drop (or pass again) whatever one private side sends the other through the router."""
        op = "-I" if blocked else "-D"
        self.sh("nat", f"iptables {op} FORWARD -i to-a -o to-b -j DROP && "
                       f"iptables {op} FORWARD -i to-b -o to-a -j DROP")

    def sh(self, role: str, command: str) -> str:
        """Run a shell command inside a namespace; its output, or RuntimeError on failure."""
        done = subprocess.run(["ip", "netns", "exec", self.names[role], "sh", "-c", command],
                              capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"[{role}] {command} failed: {done.stderr.strip()}")
        return done.stdout

    def popen(self, role: str, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[str]:
        """Start a process inside a namespace (stop it by pid: `ip netns exec` execs it)."""
        return track(subprocess.Popen(["ip", "netns", "exec", self.names[role], *args],
                                      text=True, **kwargs))

    def call_in(self, role: str, fn: Callable[[], T]) -> T:
        """Run `fn` on a thread moved into the namespace (HTTP to a UI bound on its loopback)."""
        result: list[T] = []
        errors: list[BaseException] = []

        def body() -> None:
            try:
                with inside(self.names[role]):
                    result.append(fn())
            except BaseException as exc:  # handed to the caller
                errors.append(exc)

        thread = threading.Thread(target=body)
        thread.start()
        thread.join()
        if errors:
            raise errors[0]
        return result[0]

    def close(self) -> None:
        """Delete every namespace made (their interfaces go with them)."""
        for name in reversed(self._made):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30)
        self._made.clear()


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """Move the calling thread into the named namespace for the block (Linux keeps the network
    namespace per thread); sockets made meanwhile stay in it."""
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into {name} failed: {os.strerror(errno)}")
        try:
            yield
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:
                errno = ctypes.get_errno()
                raise OSError(errno, f"setns back failed: {os.strerror(errno)}")
    finally:
        os.close(target)
        os.close(home)
