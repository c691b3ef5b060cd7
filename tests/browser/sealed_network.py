"""A sealed test network: the test process's main thread moves into a network namespace of
its own, so that every server, agent and browser the browser tests start lives there.

Inside, the namespace holds `lo` and a veth pair (10.213.7.1/24 on v0) carrying a default
route. Chromium gathers host candidates only on the interface of the default route, and aiortc
gathers the veth's address, so browsers and agents connect with their ordinary candidates and
no pinning. The route leads nowhere: the namespace has no link to the outside world, so no
packet can leave it (see shared notes, "A sealed test network").

Linux keeps a network namespace per thread: `unshare(CLONE_NEWNET)` moves only the calling
thread, and every process or thread it starts afterwards is born inside. `leave()` moves the
thread back, so the rest of the suite runs in the machine's own namespace again. Needs root
(CAP_SYS_ADMIN), which CI has.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys

CLONE_NEWNET = 0x40000000
NAMESPACE_ADDRESS = "10.213.7.1"

_SETUP = (
    "ip link set lo up && "
    "ip link add v0 type veth peer name v1 && "
    f"ip addr add {NAMESPACE_ADDRESS}/24 dev v0 && "
    "ip link set v0 up && ip link set v1 up && "
    "ip route add default dev v0"
)


def unavailable_reason() -> str | None:
    """Why a sealed network cannot be made here, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "making a network namespace needs root (CI runs as root)"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    return None


class SealedNetwork:
    """The calling thread's stay in a fresh network namespace; `leave()` ends it."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        if self._libc.unshare(CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            os.close(self._home)
            raise OSError(errno, f"unshare(CLONE_NEWNET) failed: {os.strerror(errno)}")
        try:
            subprocess.run(["sh", "-c", _SETUP], check=True, capture_output=True, text=True,
                           timeout=30)
        except (subprocess.SubprocessError, OSError):
            self.leave()
            raise

    def interfaces(self) -> str:
        """`ip -brief address` inside the namespace, for checks and failure messages."""
        return subprocess.run(["ip", "-brief", "address"], capture_output=True, text=True,
                              check=True, timeout=30).stdout

    def leave(self) -> None:
        """Move the thread back to the namespace it came from (the namespace made here goes
        away with the last process inside it)."""
        if self._home < 0:
            return
        try:
            if self._libc.setns(self._home, CLONE_NEWNET) != 0:
                errno = ctypes.get_errno()
                raise OSError(errno, f"setns back failed: {os.strerror(errno)}")
        finally:
            os.close(self._home)
            self._home = -1
